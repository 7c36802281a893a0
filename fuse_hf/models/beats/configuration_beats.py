"""BEATs configuration: the fields of Microsoft's `BEATsConfig` (microsoft/unilm, ``beats/BEATs.py``), with its
defaults, as a transformers configuration.

Uploaded as Hub remote code next to ``modeling_beats.py``: imports only transformers.
"""

from __future__ import annotations

from transformers import PretrainedConfig

__all__ = ["OFFICIAL_DEFAULTS", "BEATsConfig"]

# The defaults of the official `BEATsConfig`; a checkpoint's 'cfg' dict is read on top of these.
OFFICIAL_DEFAULTS = {
    "input_patch_size": -1,
    "embed_dim": 512,
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_wise_gradient_decay_ratio": 1.0,
    "layer_norm_first": False,
    "deep_norm": False,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "relative_position_embedding": False,
    "num_buckets": 320,
    "max_distance": 1280,
    "gru_rel_pos": False,
    "finetuned_model": False,
    "predictor_dropout": 0.1,
    "predictor_class": 527,
}


class BEATsConfig(PretrainedConfig):
    r"""Configuration of a [`BEATsModel`]: every field of the official `BEATsConfig`, with the official default.

    The sizes are checked when a model is built from the configuration (the official default
    ``input_patch_size=-1`` is a placeholder, so ``BEATsConfig()`` alone describes no model).

    Args:
        input_patch_size (`int`, defaults to -1): side of the square fbank patches (frames x mel bins). Every
            released checkpoint uses 16.
        embed_dim (`int`, defaults to 512): patch embedding width.
        conv_bias (`bool`, defaults to False): bias in the patch embedding convolution.
        encoder_layers (`int`, defaults to 12), encoder_embed_dim (`int`, defaults to 768),
        encoder_ffn_embed_dim (`int`, defaults to 3072), encoder_attention_heads (`int`, defaults to 12):
            Transformer size. A linear layer maps `embed_dim` to `encoder_embed_dim` when they differ.
        activation_fn (`str`, defaults to `"gelu"`): one of relu, gelu, gelu_fast, gelu_accurate, tanh, linear, glu.
        layer_wise_gradient_decay_ratio (`float`, defaults to 1.0): gradient factor applied before each layer.
        layer_norm_first (`bool`, defaults to False): pre-LN layers (and the encoder LayerNorm at the end).
        deep_norm (`bool`, defaults to False): post-LN layers with DeepNorm residual scaling. Not with
            `layer_norm_first`.
        dropout, attention_dropout, activation_dropout, encoder_layerdrop, dropout_input (`float`): training only.
        conv_pos (`int`, defaults to 128), conv_pos_groups (`int`, defaults to 16): kernel size and groups of the
            convolutional positional embedding.
        relative_position_embedding (`bool`, defaults to False), num_buckets (`int`, defaults to 320),
        max_distance (`int`, defaults to 1280), gru_rel_pos (`bool`, defaults to False): bucketed relative
            position bias, optionally gated by the query.
        finetuned_model (`bool`, defaults to False): adds the classification head.
        predictor_dropout (`float`, defaults to 0.1), predictor_class (`int`, defaults to 527): head dropout and
            number of classes (AudioSet: 527).

    Example:

    ```py
    >>> from fuse_hf.models.beats import BEATsConfig, BEATsModel
    >>> config = BEATsConfig(input_patch_size=16, deep_norm=True, relative_position_embedding=True,
    ...                      gru_rel_pos=True, max_distance=800)  # the shape of BEATs_iter3
    >>> model = BEATsModel(config)
    ```
    """

    model_type = "beats"
    # The names transformers' utilities look for.
    attribute_map = {
        "hidden_size": "encoder_embed_dim",
        "num_hidden_layers": "encoder_layers",
        "num_attention_heads": "encoder_attention_heads",
    }

    def __init__(
        self,
        input_patch_size: int = -1,
        embed_dim: int = 512,
        conv_bias: bool = False,
        encoder_layers: int = 12,
        encoder_embed_dim: int = 768,
        encoder_ffn_embed_dim: int = 3072,
        encoder_attention_heads: int = 12,
        activation_fn: str = "gelu",
        layer_wise_gradient_decay_ratio: float = 1.0,
        layer_norm_first: bool = False,
        deep_norm: bool = False,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        encoder_layerdrop: float = 0.0,
        dropout_input: float = 0.0,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        relative_position_embedding: bool = False,
        num_buckets: int = 320,
        max_distance: int = 1280,
        gru_rel_pos: bool = False,
        finetuned_model: bool = False,
        predictor_dropout: float = 0.1,
        predictor_class: int = 527,
        **kwargs,
    ) -> None:
        self.input_patch_size = input_patch_size
        self.embed_dim = embed_dim
        self.conv_bias = conv_bias
        self.encoder_layers = encoder_layers
        self.encoder_embed_dim = encoder_embed_dim
        self.encoder_ffn_embed_dim = encoder_ffn_embed_dim
        self.encoder_attention_heads = encoder_attention_heads
        self.activation_fn = activation_fn
        self.layer_wise_gradient_decay_ratio = layer_wise_gradient_decay_ratio
        self.layer_norm_first = layer_norm_first
        self.deep_norm = deep_norm
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.encoder_layerdrop = encoder_layerdrop
        self.dropout_input = dropout_input
        self.conv_pos = conv_pos
        self.conv_pos_groups = conv_pos_groups
        self.relative_position_embedding = relative_position_embedding
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.gru_rel_pos = gru_rel_pos
        self.finetuned_model = finetuned_model
        self.predictor_dropout = predictor_dropout
        self.predictor_class = predictor_class
        super().__init__(**kwargs)
