"""BEATs (Chen et al., "BEATs: Audio Pre-Training with Acoustic Tokenizers", ICML 2023) as a transformers model.

An exact re-implementation of Microsoft's reference code (microsoft/unilm, ``beats/``): the same state-dict keys,
so an official checkpoint's ``'model'`` dict loads with ``strict=True`` (see :mod:`fuse_hf.convert_beats`), and
the same arithmetic, so the features match the official ones to float32 round-off, padded positions included
(tests/fixtures/beats_golden.safetensors, computed with Microsoft's code, checks it).

Pipeline, for 16 kHz waveforms in [-1, 1]:

1. the normalised Kaldi filterbank, `(frames, 128)` (:mod:`.feature_extraction_beats`; the model computes it
   from `input_values`, or reads it as `input_features` from [`BEATsFeatureExtractor`]);
2. 16x16 patches of the filterbank, embedded by a strided convolution; tokens are ordered time-major: token
   ``t * 8 + f`` is time row ``t`` (16 frames = 160 ms hop) and frequency band ``f``;
3. a post-LN (``deep_norm``) or pre-LN Transformer encoder with a convolutional positional embedding and a
   gated, bucketed relative position bias;
4. for fine-tuned checkpoints, a linear head whose sigmoid scores are averaged over the non-padded tokens.

Uploaded as Hub remote code with its two siblings: imports only torch and transformers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_beats import BEATsConfig
from .feature_extraction_beats import (
    FBANK_MEAN,
    FBANK_STD,
    FRAME_LENGTH,
    FRAME_SHIFT,
    NUM_MEL_BINS,
    SAMPLE_RATE,
    fbank,
    min_num_samples,
    normalize_fbank,
    num_frames,
)

__all__ = [
    "BEATsModel",
    "BEATsModelOutput",
    "BEATsPreTrainedModel",
    "downsample_padding_mask",
    "patch_aligned_padding_mask",
]

_ACTIVATIONS = ("relu", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear", "glu")
_PADDING_MODES = ("official", "patch")

# The reference attention subtracts the row maximum of q.k / alpha and multiplies back by alpha, a guard against
# fp16 overflow; it is kept because it changes float32 round-off, which an exact port must reproduce.
_ATTENTION_ALPHA = 32.0

# ------------------------------------------------------------------------------------------------ padding masks


def downsample_padding_mask(padding_mask: torch.Tensor, num_positions: int) -> torch.Tensor:
    """Maps a padding mask onto fewer positions exactly as the official ``forward_padding_mask`` does.

    The trailing ``length % num_positions`` entries are dropped, the rest split into `num_positions` equal,
    contiguous groups, and a position is padded when its whole group is. The groups follow the flat order of
    the positions, not the audio they were computed from: for tokens (time-major, 8 frequency bands per
    160 ms row) each band of a row gets its own slice of the frames, so the last, partly filled row of a padded
    item keeps some tokens unmasked. That is the reference behaviour and is reproduced on purpose; see
    :func:`patch_aligned_padding_mask` for a mask that follows the patch rows.

    Args:
        padding_mask: `(batch, length)` bool, True = padded.
        num_positions: the number of positions of the coarser sequence (frames or tokens), > 0.

    Returns:
        `(batch, num_positions)` bool.
    """
    extra = padding_mask.shape[1] % num_positions
    if extra > 0:
        padding_mask = padding_mask[:, :-extra]
    return padding_mask.reshape(padding_mask.shape[0], num_positions, -1).all(dim=-1)


def patch_aligned_padding_mask(
    padding_mask: torch.Tensor, input_patch_size: int = 16, num_mel_bins: int = NUM_MEL_BINS
) -> torch.Tensor:
    """Token padding mask that follows the patch grid: a token is padded when its patch row needs a frame that
    is not entirely made of real samples.

    With this mask, every item of a right-padded batch gets the features it gets alone, at its unpadded tokens
    (the official mask, :func:`downsample_padding_mask`, leaves part of the last, partial row unmasked).

    Args:
        padding_mask: `(batch, samples)` bool, True = padded; each row must be a run of False then a run of True.
        input_patch_size: patch size in frames and mel bins.
        num_mel_bins: mel bins of the filterbank.

    Returns:
        `(batch, tokens)` bool, ``tokens = (frames // p) * (num_mel_bins // p)``.

    Raises:
        ValueError: a row of the mask is not right padding.
    """
    num_samples = padding_mask.shape[1]
    lengths = (~padding_mask).sum(dim=1)
    positions = torch.arange(num_samples, device=padding_mask.device)
    if not torch.equal(padding_mask, positions[None, :] >= lengths[:, None]):
        raise ValueError(
            "padding_mask: 'patch' padding needs right padding (each row False for the real samples, then True "
            "to the end). Reorder the samples or use padding_mode='official'."
        )
    rows = num_frames(num_samples) // input_patch_size
    # Frames fully inside the real samples; a row is usable when all of its frames are.
    real_frames = torch.div(lengths - FRAME_LENGTH, FRAME_SHIFT, rounding_mode="floor") + 1
    real_frames = torch.where(lengths >= FRAME_LENGTH, real_frames, torch.zeros_like(real_frames))
    row_end = (torch.arange(rows, device=padding_mask.device) + 1) * input_patch_size
    row_padded = row_end[None, :] > real_frames[:, None]  # (batch, rows)
    return row_padded.repeat_interleave(num_mel_bins // input_patch_size, dim=1)


# ------------------------------------------------------------------------------------------------ building blocks


class _GradMultiply(torch.autograd.Function):
    """Identity forward, gradient times `scale` backward (layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def _gelu(x: torch.Tensor) -> torch.Tensor:
    # Computed in float32 whatever the model's dtype, as the reference does.
    return F.gelu(x.float()).type_as(x)


def _gelu_accurate(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def _activation(name: str):
    return {
        "relu": F.relu,
        "gelu": _gelu,
        "gelu_fast": _gelu_accurate,
        "gelu_accurate": _gelu_accurate,
        "tanh": torch.tanh,
        "linear": lambda x: x,
        "glu": lambda x: x,  # the gate lives in `_GLULinear`
    }[name]


class _GLULinear(nn.Module):
    """`fc1` of the "glu" activation: a linear layer to twice the width, the second half a swish gate."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.linear = nn.Linear(input_dim, output_dim * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        gate = x[..., self.output_dim :]
        return x[..., : self.output_dim] * (gate * torch.sigmoid(gate))


class _WeightNormConv1d(nn.Module):
    """Grouped `Conv1d` with the legacy weight-norm parametrisation of ``torch.nn.utils.weight_norm(dim=2)``.

    The two parameters are stored under the legacy names (`weight_g` `(1, 1, kernel)`, `weight_v`
    `(out, in / groups, kernel)`), which are the keys of the official checkpoints; the weight is
    ``weight_v * weight_g / ||weight_v||`` with the norm over the output and input channels, one per tap.
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.groups = groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel_size))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))

    @property
    def weight(self) -> torch.Tensor:
        norm = torch.linalg.vector_norm(self.weight_v, dim=(0, 1), keepdim=True)
        return self.weight_v * (self.weight_g / norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(batch, channels, time)` -> `(batch, channels, time + 1)` for even kernels."""
        return F.conv1d(x, self.weight, self.bias, padding=self.padding, groups=self.groups)


class _SamePad(nn.Module):
    """Drops the extra output frame an even kernel with ``padding = kernel // 2`` produces."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : -self.remove] if self.remove > 0 else x


def _relative_position_bucket(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5-style bidirectional buckets: exact up to `num_buckets / 4`, then logarithmic up to `max_distance`."""
    num_buckets = num_buckets // 2
    buckets = (relative_position > 0).to(torch.long) * num_buckets
    distance = torch.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log(0) is -inf here; those entries are small and never selected.
    large = max_exact + (
        torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, distance, large)


class _MultiheadAttention(nn.Module):
    """Self-attention of the reference code, batch-first, with the gated relative position bias."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float,
        has_relative_attention_bias: bool,
        num_buckets: int,
        max_distance: int,
        gru_rel_pos: bool,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.dropout_module = nn.Dropout(dropout)
        self.has_relative_attention_bias = has_relative_attention_bias
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            # 8 = two gates of 4 summed features each, as in the reference (WavLM's gated relative position bias).
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def compute_bias(self, length: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Relative position bias from this layer's bucket table.

        Args:
            length: number of tokens.
            positions: optional `(batch, length)` long positions of the tokens in their full sequence (for
                pre-training, where the encoder sees a subset of the tokens); default ``0 .. length - 1``.

        Returns:
            `(heads, length, length)`, or `(batch, heads, length, length)` with `positions`.
        """
        weight = self.relative_attention_bias.weight
        if positions is None:
            position = torch.arange(length, dtype=torch.long, device=weight.device)
            relative = position[None, :] - position[:, None]
        else:
            relative = positions[:, None, :] - positions[:, :, None]
        buckets = _relative_position_bucket(relative, self.num_buckets, self.max_distance)
        bias = self.relative_attention_bias(buckets)  # (..., length, length, heads)
        # Heads before the two length axes, by positive dims: torch's TorchScript ONNX exporter writes movedim's
        # negative ones into an invalid Transpose.
        lead = bias.dim() - 3
        return bias.permute(*range(lead), lead + 2, lead, lead + 1)

    def forward(
        self,
        x: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        position_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(batch, tokens, embed)` -> `(batch, tokens, embed)`.

        Args:
            key_padding_mask: `(batch, tokens)` bool, True = padded key.
            position_bias: `(heads, tokens, tokens)`, `(batch, heads, tokens, tokens)` or None.
        """
        batch, length, _ = x.shape
        # Same operation order as the reference: q * scaling / alpha, logits - row max, times alpha.
        q = self.q_proj(x) * self.scaling
        q = q * (1 / _ATTENTION_ALPHA)
        k = self.k_proj(x)
        v = self.v_proj(x)
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))

        attn = torch.matmul(q, k.transpose(-1, -2))  # (batch, heads, tokens, tokens)
        attn = (attn - attn.amax(dim=-1, keepdim=True)) * _ATTENTION_ALPHA
        if key_padding_mask is not None:
            attn = attn.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        if position_bias is not None:
            if self.gru_rel_pos:
                query = q * _ATTENTION_ALPHA / self.scaling
                gates = torch.sigmoid(self.grep_linear(query).view(batch, self.num_heads, length, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)
                position_bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias
            attn = attn + position_bias
        probs = self.dropout_module(F.softmax(attn, dim=-1))
        out = torch.matmul(probs, v).transpose(1, 2).reshape(batch, length, self.embed_dim)
        return self.out_proj(out)


class _EncoderLayer(nn.Module):
    """One Transformer layer: post-LN with DeepNorm residual scaling, or pre-LN (`layer_norm_first`)."""

    def __init__(
        self,
        embed_dim: int,
        ffn_embed_dim: int,
        num_heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        activation_fn: str,
        layer_norm_first: bool,
        deep_norm: bool,
        has_relative_attention_bias: bool,
        num_buckets: int,
        max_distance: int,
        gru_rel_pos: bool,
        num_layers: int,
    ) -> None:
        super().__init__()
        self.activation_name = activation_fn
        self.activation_fn = _activation(activation_fn)
        self.self_attn = _MultiheadAttention(
            embed_dim, num_heads, attention_dropout, has_relative_attention_bias, num_buckets, max_distance, gru_rel_pos
        )
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(activation_dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        if activation_fn == "glu":
            self.fc1 = _GLULinear(embed_dim, ffn_embed_dim)
        else:
            self.fc1 = nn.Linear(embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        # DeepNorm (Wang et al., 2022) up-weights the residual branch by (2N)^(1/4) in post-LN layers.
        self.deep_norm_alpha = math.pow(2 * num_layers, 1 / 4) if deep_norm else 1.0

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x) if self.activation_name == "glu" else self.activation_fn(self.fc1(x))
        return self.dropout3(self.fc2(self.dropout2(x)))

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None, position_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """`(batch, tokens, embed)` -> `(batch, tokens, embed)`."""
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), padding_mask, position_bias))
            return x + self._feed_forward(self.final_layer_norm(x))
        x = x * self.deep_norm_alpha + self.dropout1(self.self_attn(x, padding_mask, position_bias))
        x = self.self_attn_layer_norm(x)
        x = x * self.deep_norm_alpha + self._feed_forward(x)
        return self.final_layer_norm(x)


class _TransformerEncoder(nn.Module):
    """Convolutional positional embedding + Transformer layers + one LayerNorm (before or after the layers)."""

    def __init__(
        self,
        embed_dim: int,
        ffn_embed_dim: int,
        num_layers: int,
        num_heads: int,
        activation_fn: str,
        layer_norm_first: bool,
        deep_norm: bool,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        layerdrop: float,
        conv_pos: int,
        conv_pos_groups: int,
        relative_position_embedding: bool,
        num_buckets: int,
        max_distance: int,
        gru_rel_pos: bool,
        layer_wise_gradient_decay_ratio: float,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.layerdrop = layerdrop
        self.layer_norm_first = layer_norm_first
        self.layer_wise_gradient_decay_ratio = layer_wise_gradient_decay_ratio
        self.relative_position_embedding = relative_position_embedding
        # Index 0 of a Sequential, as in the reference: the checkpoint keys are `encoder.pos_conv.0.*`.
        self.pos_conv = nn.Sequential(
            _WeightNormConv1d(embed_dim, conv_pos, conv_pos_groups), _SamePad(conv_pos), nn.GELU()
        )
        self.layers = nn.ModuleList(
            [
                _EncoderLayer(
                    embed_dim,
                    ffn_embed_dim,
                    num_heads,
                    dropout,
                    attention_dropout,
                    activation_dropout,
                    activation_fn,
                    layer_norm_first,
                    deep_norm,
                    relative_position_embedding,
                    num_buckets,
                    max_distance,
                    gru_rel_pos,
                    num_layers,
                )
                for _ in range(num_layers)
            ]
        )
        self.layer_norm = nn.LayerNorm(embed_dim)
        self._reset_parameters(conv_pos, embed_dim, deep_norm, num_layers)
        if relative_position_embedding:
            # The reference shares layer 0's bucket table with every layer, and the checkpoints list it under
            # each layer's name. Shared tensors cannot go into safetensors, so every layer keeps its own copy
            # for the keys, only layer 0's is used (as in the reference, whose later layers reuse layer 0's
            # bias), and `state_dict()` writes layer 0's values into the copies.
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias.weight.requires_grad_(False)
            self._register_state_dict_hook(_sync_relative_attention_bias)

    @classmethod
    def from_config(cls, config: BEATsConfig, **overrides) -> _TransformerEncoder:
        """The encoder that `config` describes; `overrides` replace some of its arguments (BEATs pre-training builds
        its label predictor this way, with its own number of layers, no layer drop and no gradient decay)."""
        arguments = dict(
            embed_dim=config.encoder_embed_dim,
            ffn_embed_dim=config.encoder_ffn_embed_dim,
            num_layers=config.encoder_layers,
            num_heads=config.encoder_attention_heads,
            activation_fn=config.activation_fn,
            layer_norm_first=config.layer_norm_first,
            deep_norm=config.deep_norm,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            layerdrop=config.encoder_layerdrop,
            conv_pos=config.conv_pos,
            conv_pos_groups=config.conv_pos_groups,
            relative_position_embedding=config.relative_position_embedding,
            num_buckets=config.num_buckets,
            max_distance=config.max_distance,
            gru_rel_pos=config.gru_rel_pos,
            layer_wise_gradient_decay_ratio=config.layer_wise_gradient_decay_ratio,
        )
        return cls(**{**arguments, **overrides})

    def _reset_parameters(self, conv_pos: int, embed_dim: int, deep_norm: bool, num_layers: int) -> None:
        """The reference initialisation (only matters for training from scratch)."""
        conv = self.pos_conv[0]
        std = math.sqrt(4 / (conv_pos * embed_dim))
        with torch.no_grad():
            weight = torch.randn_like(conv.weight_v) * std
            conv.weight_v.copy_(weight)
            conv.weight_g.copy_(torch.linalg.vector_norm(weight, dim=(0, 1), keepdim=True))
        # BERT initialisation for every linear layer and embedding.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        if deep_norm:
            beta = math.pow(8 * num_layers, -1 / 4)
            for layer in self.layers:
                attn = layer.self_attn
                for linear, gain in (
                    (attn.k_proj, 1.0),
                    (attn.v_proj, beta),
                    (attn.q_proj, 1.0),
                    (attn.out_proj, beta),
                    (layer.fc1, beta),
                    (layer.fc2, beta),
                ):
                    weight = linear.linear.weight if isinstance(linear, _GLULinear) else linear.weight
                    nn.init.xavier_normal_(weight, gain=gain)
        if self.relative_position_embedding:
            with torch.no_grad():
                for layer in self.layers[1:]:
                    layer.self_attn.relative_attention_bias.weight.copy_(
                        self.layers[0].self_attn.relative_attention_bias.weight
                    )

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        keep_index: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """`(batch, tokens, embed)` -> `((batch, tokens, embed), hidden states or None)`; padded tokens are zeroed
        first and never attended.

        Args:
            padding_mask: `(batch, tokens)` bool, True = padded.
            keep_index: pre-training only: `(batch, kept)` long indices of the tokens the layers see (masked
                tokens must already be zeroed in `x`). The positional convolution runs on the full sequence
                and the relative position bias uses the kept tokens' original positions, so that positions
                mean the same as on full inputs. Returns `(batch, kept, embed)`.
            output_hidden_states: also return the input of the first layer (after the positional embedding)
                and the output of every layer, `num_layers + 1` tensors of the output's shape.
        """
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        if keep_index is not None:
            x = x.gather(1, keep_index[..., None].expand(-1, -1, x.shape[-1]))
            if padding_mask is not None:
                padding_mask = padding_mask.gather(1, keep_index)

        position_bias = None
        if self.relative_position_embedding:
            position_bias = self.layers[0].self_attn.compute_bias(x.shape[1], positions=keep_index)
        hidden_states = [x] if output_hidden_states else None
        for layer in self.layers:
            if self.layer_wise_gradient_decay_ratio != 1.0:
                x = _GradMultiply.apply(x, self.layer_wise_gradient_decay_ratio)
            if not (self.training and self.layerdrop > 0 and torch.rand(()) <= self.layerdrop):
                x = layer(x, padding_mask, position_bias)
            if hidden_states is not None:
                hidden_states.append(x)

        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, None if hidden_states is None else tuple(hidden_states)


def _sync_relative_attention_bias(module: _TransformerEncoder, state_dict, prefix: str, local_metadata) -> None:
    """State-dict hook: every layer's copy of the bucket table holds layer 0's values (see `_TransformerEncoder`)."""
    source = f"{prefix}layers.0.self_attn.relative_attention_bias.weight"
    for index in range(1, len(module.layers)):
        key = f"{prefix}layers.{index}.self_attn.relative_attention_bias.weight"
        if key in state_dict and source in state_dict:
            state_dict[key] = state_dict[source].detach().clone()


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class BEATsModelOutput(ModelOutput):
    """Output of [`BEATsModel.forward`].

    Args:
        last_hidden_state: `(batch, tokens, encoder_embed_dim)` token features; token ``t * 8 + f`` is time row
            `t` (160 ms hop) and frequency band `f` for 16x16 patches.
        padding_mask: `(batch, tokens)` bool, True = padded token, or None when no mask was given.
        hidden_states: with `output_hidden_states`, `encoder_layers + 1` tensors of the features' shape: the input
            of the first layer (patch embeddings after the positional convolution), then each layer's output.
        logits: fine-tuned models only: `(batch, predictor_class)` classifier logits averaged over the
            non-padded tokens; None otherwise.
        probabilities: fine-tuned models only: ``sigmoid(logits)``, the official class scores.
    """

    last_hidden_state: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    logits: torch.Tensor | None = None
    probabilities: torch.Tensor | None = None


class BEATsPreTrainedModel(PreTrainedModel):
    """Loading, saving and initialisation shared by BEATs models."""

    config_class = BEATsConfig
    base_model_prefix = "beats"
    main_input_name = "input_values"
    input_modalities = "audio"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to do: the modules draw their weights when they are built, with the reference scheme
        (`_TransformerEncoder._reset_parameters`), in the order fuse-hf always drew them, so that a seed gives the
        same model as before. transformers calls this only for weights a checkpoint lacks, and :meth:`from_pretrained`
        refuses such checkpoints.
        """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, strict: a checkpoint that lacks a weight of the configuration, or has
        one it does not use, is a `ValueError` naming the key (transformers would warn and draw a random weight),
        and so is a folder of fuse-hf 0.1 (diffusers layout), with the command that converts it.
        """
        folder = os.path.join(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        if os.path.isfile(os.path.join(folder, "diffusion_pytorch_model.safetensors")) and not os.path.isfile(
            os.path.join(folder, "model.safetensors")
        ):
            raise ValueError(
                f"{folder}: a BEATs folder in the diffusers layout of fuse-hf 0.1. Convert it once with "
                f"`fuse-hf convert-beats {folder} NEW_FOLDER` (same weights, transformers layout)."
            )
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            keys = sorted(str(key) for key in info.get(kind) or ())
            if keys:
                listed = ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
                raise ValueError(
                    f"{pretrained_model_name_or_path}: the weights do not fit the configuration "
                    f"({kind.replace('_', ' ')}: {listed})."
                )
        return (model, info) if want_info else model


class BEATsModel(BEATsPreTrainedModel):
    r"""BEATs audio encoder, numerically identical to Microsoft's reference implementation.

    The state-dict keys are the official ones, so converted checkpoints (``fuse-hf convert-beats``) load with
    ``BEATsModel.from_pretrained(folder)`` or ``AutoModel.from_pretrained(folder)``. Besides transformers'
    `forward`, the official entry point :meth:`extract_features` works as in Microsoft's code.

    Args:
        config ([`BEATsConfig`]): the model's configuration (the official fields).

    Example:

    ```py
    >>> import torch
    >>> from fuse_hf.models.beats import BEATsConfig, BEATsModel
    >>> config = BEATsConfig(input_patch_size=16, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
    ...                      encoder_attention_heads=4, embed_dim=64, conv_pos_groups=4)
    >>> model = BEATsModel(config).eval()
    >>> wave = torch.zeros(2, 16000)  # 1 s at 16 kHz
    >>> features, mask = model.extract_features(wave)
    >>> features.shape  # 6 time rows x 8 frequency bands
    torch.Size([2, 48, 64])
    ```
    """

    def __init__(self, config: BEATsConfig) -> None:
        super().__init__(config)
        _check_config(config)
        embed_dim, width = config.embed_dim, config.encoder_embed_dim
        self.post_extract_proj = nn.Linear(embed_dim, width) if embed_dim != width else None
        self.patch_embedding = nn.Conv2d(
            1, embed_dim, kernel_size=config.input_patch_size, stride=config.input_patch_size, bias=config.conv_bias
        )
        self.input_dropout = nn.Dropout(config.dropout_input)
        self.encoder = _TransformerEncoder.from_config(config)
        self.layer_norm = nn.LayerNorm(embed_dim)
        if config.finetuned_model:
            self.head_dropout = nn.Dropout(config.predictor_dropout)
            self.predictor = nn.Linear(width, config.predictor_class)
        else:
            self.predictor = None
        self.post_init()

    # -- front end -------------------------------------------------------------------------------------------

    @property
    def num_freq_patches(self) -> int:
        """Tokens per time row: 8 for 16x16 patches of the 128-bin filterbank."""
        return NUM_MEL_BINS // self.config.input_patch_size

    def preprocess(
        self, waveform: torch.Tensor, fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD
    ) -> torch.Tensor:
        """`(batch, samples)` 16 kHz waveform in [-1, 1] -> `(batch, frames, 128)` normalised filterbank, as
        [`BEATsFeatureExtractor`] computes it."""
        return normalize_fbank(fbank(waveform), fbank_mean, fbank_std)

    def embed_patches(self, fbank_features: torch.Tensor) -> torch.Tensor:
        """`(batch, frames, 128)` normalised fbank -> `(batch, tokens, embed_dim)` layer-normalised patch embeddings.

        Frames beyond the last whole patch row are dropped (the convolution's stride).
        """
        weight = self.patch_embedding.weight
        patches = self.patch_embedding(fbank_features.to(dtype=weight.dtype).unsqueeze(1))
        patches = patches.reshape(patches.shape[0], patches.shape[1], -1).transpose(1, 2)
        return self.layer_norm(patches)

    def project(self, patch_embeddings: torch.Tensor) -> torch.Tensor:
        """`(batch, tokens, embed_dim)` -> `(batch, tokens, encoder_embed_dim)`: projection and input dropout."""
        if self.post_extract_proj is not None:
            patch_embeddings = self.post_extract_proj(patch_embeddings)
        return self.input_dropout(patch_embeddings)

    # -- encoder ---------------------------------------------------------------------------------------------

    def encode_fbank(
        self,
        fbank_features: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        padding_mode: str = "official",
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...] | None]:
        """Token features of a normalised filterbank.

        Args:
            fbank_features: `(batch, frames, 128)` normalised filterbank (:meth:`preprocess`).
            padding_mask: `(batch, samples)` bool sample mask of the waveform the filterbank was computed from,
                True = padded, or None.
            padding_mode: see :meth:`encode_tokens`.
            output_hidden_states: also return every layer's hidden states (see [`BEATsModelOutput`]).

        Returns:
            `(features (batch, tokens, encoder_embed_dim), token padding mask (batch, tokens) or None, hidden
            states or None)`.
        """
        features = self.embed_patches(fbank_features)
        if padding_mask is not None:
            if padding_mode == "patch":
                padding_mask = patch_aligned_padding_mask(padding_mask, self.config.input_patch_size)
            else:
                padding_mask = downsample_padding_mask(padding_mask, fbank_features.shape[1])
                padding_mask = downsample_padding_mask(padding_mask, features.shape[1])
        features, hidden_states = self.encoder(
            self.project(features), padding_mask=padding_mask, output_hidden_states=output_hidden_states
        )
        return features, padding_mask, hidden_states

    def encode_tokens(
        self,
        waveform: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        fbank_mean: float = FBANK_MEAN,
        fbank_std: float = FBANK_STD,
        padding_mode: str = "official",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token features of the encoder, for every model (fine-tuned ones included).

        Args:
            waveform: `(batch, samples)` (or `(samples,)`) float, 16 kHz, in [-1, 1]; at least
                :func:`min_num_samples` samples (2800, 175 ms, for 16x16 patches).
            padding_mask: `(batch, samples)` bool, True = padded sample, or None.
            fbank_mean, fbank_std: filterbank normalisation (the official values by default).
            padding_mode: how the sample mask becomes a token mask. ``"official"`` (default) reproduces the
                reference code exactly (:func:`downsample_padding_mask`); ``"patch"`` masks whole patch rows
                (:func:`patch_aligned_padding_mask`), so that each item of a right-padded batch gets the
                features it gets alone.

        Returns:
            `(features, padding_mask)`: `(batch, tokens, encoder_embed_dim)` with ``tokens = (frames // 16) * 8``
            (time-major, 160 ms per row), and the `(batch, tokens)` bool token mask (None if none was given).
            Padded tokens hold what the reference computes for them.
        """
        waveform, padding_mask = self.check_inputs(waveform, padding_mask, padding_mode)
        fbank_features = self.preprocess(waveform, fbank_mean=fbank_mean, fbank_std=fbank_std)
        features, padding_mask, _ = self.encode_fbank(fbank_features, padding_mask, padding_mode)
        return features, padding_mask

    def pool_logits(self, features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier logits `(batch, predictor_class)`, averaged over the non-padded tokens as the reference does."""
        if self.predictor is None:
            raise ValueError(
                "BEATsModel: this model has no classification head (finetuned_model=False). Use a fine-tuned "
                "checkpoint, or encode_tokens() for features."
            )
        logits = self.predictor(self.head_dropout(features))
        if padding_mask is not None and padding_mask.any():
            logits = logits.masked_fill(padding_mask[..., None], 0.0).sum(dim=1)
            return logits / (~padding_mask).sum(dim=1, keepdim=True)
        return logits.mean(dim=1)

    def classify(
        self,
        waveform: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        padding_mode: str = "official",
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Clip-level class scores of a fine-tuned model.

        Returns:
            `(scores, padding_mask)`: `(batch, predictor_class)` sigmoid probabilities (logits if
            `return_logits`), and the `(batch, tokens)` token mask or None.
        """
        features, padding_mask = self.encode_tokens(waveform, padding_mask, padding_mode=padding_mode)
        logits = self.pool_logits(features, padding_mask)
        return (logits if return_logits else torch.sigmoid(logits)), padding_mask

    def extract_features(
        self,
        source: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        fbank_mean: float = FBANK_MEAN,
        fbank_std: float = FBANK_STD,
        padding_mode: str = "official",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The official entry point, with its semantics (Microsoft's ``BEATs.extract_features``).

        Returns `(features (batch, tokens, encoder_embed_dim), padding_mask)` for pre-trained models and, as the
        reference does, `(class probabilities (batch, predictor_class), padding_mask)` for fine-tuned ones. Use
        :meth:`encode_tokens` to always get token features. `source` is the waveform; other arguments as in
        :meth:`encode_tokens`.
        """
        features, padding_mask = self.encode_tokens(source, padding_mask, fbank_mean, fbank_std, padding_mode)
        if self.predictor is None:
            return features, padding_mask
        return torch.sigmoid(self.pool_logits(features, padding_mask)), padding_mask

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        padding_mode: str = "official",
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BEATsModelOutput | tuple:
        r"""Token features and, for fine-tuned models, class logits and probabilities.

        Pass the waveform (`input_values`) or its normalised filterbank (`input_features`, what
        [`BEATsFeatureExtractor`] returns: ``model(**extractor(audio, return_tensors="pt"))``), not both. Padding
        is given per sample, by `padding_mask` (True = padded, Microsoft's convention) or `attention_mask`
        (1 = real sample, transformers'), not both.

        Args:
            input_values: `(batch, samples)` or `(samples,)` float waveform, 16 kHz, in [-1, 1].
            padding_mask: `(batch, samples)` bool, True = padded sample.
            input_features: `(batch, frames, 128)` normalised filterbank, ``frames = 1 + (samples - 400) // 160``.
            attention_mask: `(batch, samples)` int or bool, 1 = real sample.
            padding_mode: how the sample mask becomes a token mask, as in :meth:`encode_tokens`.
            output_hidden_states: also return every layer's hidden states (default: the config's setting).
            return_dict: return a [`BEATsModelOutput`] (default) or a tuple of its non-None fields.

        Returns:
            [`BEATsModelOutput`].

        Raises:
            ValueError: both or neither input, both masks, or inputs whose shapes or dtypes do not fit.
        """
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = self.config.return_dict
        if attention_mask is not None:
            if padding_mask is not None:
                raise ValueError("padding_mask and attention_mask: pass one of them (True = padded, or 1 = real).")
            padding_mask = attention_mask == 0
        if (input_values is None) == (input_features is None):
            raise ValueError("BEATsModel: pass either input_values (the waveform) or input_features (its filterbank).")
        if input_values is not None:
            input_values, padding_mask = self.check_inputs(input_values, padding_mask, padding_mode)
            input_features = self.preprocess(input_values)
        else:
            padding_mask = self.check_features(input_features, padding_mask, padding_mode)
        features, token_mask, hidden_states = self.encode_fbank(
            input_features, padding_mask, padding_mode, output_hidden_states=output_hidden_states
        )
        logits = probabilities = None
        if self.predictor is not None:
            logits = self.pool_logits(features, token_mask)
            probabilities = torch.sigmoid(logits)
        output = BEATsModelOutput(
            last_hidden_state=features,
            padding_mask=token_mask,
            hidden_states=hidden_states,
            logits=logits,
            probabilities=probabilities,
        )
        return output if return_dict else output.to_tuple()

    # -- checks ----------------------------------------------------------------------------------------------

    def check_inputs(
        self, waveform: torch.Tensor, padding_mask: torch.Tensor | None = None, padding_mode: str = "official"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validates a waveform and its sample mask; returns `(waveform (batch, samples), bool mask or None)`.

        Raises:
            ValueError: wrong rank or dtype, too short for one patch, or a mask that does not match.
        """
        if not isinstance(waveform, torch.Tensor):
            raise ValueError(f"waveform: expected a torch.Tensor, got {type(waveform).__name__}. Convert it first.")
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
            if padding_mask is not None and padding_mask.dim() == 1:
                padding_mask = padding_mask.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"waveform: shape {tuple(waveform.shape)}; BEATs takes (batch, samples) mono 16 kHz audio. "
                "Mix down or split channels into the batch."
            )
        if not waveform.is_floating_point():
            raise ValueError(f"waveform: dtype {waveform.dtype}; pass float audio in [-1, 1].")
        needed = min_num_samples(self.config.input_patch_size)
        if waveform.shape[1] < needed:
            raise ValueError(
                f"waveform: {waveform.shape[1]} samples is too short; BEATs needs at least {needed} samples "
                f"({1000 * needed / SAMPLE_RATE:g} ms at 16 kHz) for one patch. Pad the input."
            )
        return waveform, self._check_padding_mask(padding_mask, tuple(waveform.shape), waveform.device, padding_mode)

    def check_features(
        self, input_features: torch.Tensor, padding_mask: torch.Tensor | None = None, padding_mode: str = "official"
    ) -> torch.Tensor | None:
        """Validates a normalised filterbank `(batch, frames, 128)` and its sample mask; returns the bool mask.

        Raises:
            ValueError: wrong shape or dtype, fewer frames than one patch row, or a sample mask whose length does
                not give this many frames.
        """
        if not isinstance(input_features, torch.Tensor):
            raise ValueError(
                f"input_features: expected a torch.Tensor, got {type(input_features).__name__}. Pass "
                "return_tensors='pt' to the feature extractor."
            )
        if input_features.dim() != 3 or input_features.shape[-1] != NUM_MEL_BINS:
            raise ValueError(
                f"input_features: shape {tuple(input_features.shape)}; BEATs takes a (batch, frames, "
                f"{NUM_MEL_BINS}) normalised filterbank (BEATsFeatureExtractor's output)."
            )
        if not input_features.is_floating_point():
            raise ValueError(f"input_features: dtype {input_features.dtype}; pass the float filterbank.")
        patch = self.config.input_patch_size
        if input_features.shape[1] < patch:
            raise ValueError(
                f"input_features: {input_features.shape[1]} frames; BEATs needs at least {patch} (one patch row, "
                f"{min_num_samples(patch)} samples at 16 kHz)."
            )
        if padding_mask is None:
            return self._check_padding_mask(None, (0, 0), input_features.device, padding_mode)
        samples = padding_mask.shape[-1]
        if num_frames(samples) != input_features.shape[1]:
            raise ValueError(
                f"padding_mask: {samples} samples give {num_frames(samples)} frames, the features have "
                f"{input_features.shape[1]}. Pass the sample mask of the audio the features came from."
            )
        shape = (input_features.shape[0], samples)
        return self._check_padding_mask(padding_mask, shape, input_features.device, padding_mode)

    @staticmethod
    def _check_padding_mask(
        padding_mask: torch.Tensor | None, shape: tuple[int, int], device: torch.device, padding_mode: str
    ) -> torch.Tensor | None:
        """The sample mask as a bool tensor on `device`, after checking the padding mode and its shape."""
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode: {padding_mode!r} is not one of {_PADDING_MODES}.")
        if padding_mask is None:
            return None
        if tuple(padding_mask.shape) != shape:
            raise ValueError(
                f"padding_mask: shape {tuple(padding_mask.shape)} differs from the waveform's {shape}. Pass one "
                "bool per sample, True = padded."
            )
        if padding_mask.is_floating_point():
            raise ValueError("padding_mask: got floats; pass a bool tensor, True = padded sample.")
        return padding_mask.to(device=device, dtype=torch.bool)


def _check_config(config: BEATsConfig) -> None:
    """Raises a `ValueError` naming the first field of `config` that describes no BEATs model."""
    if config.input_patch_size <= 0:
        raise ValueError(
            f"input_patch_size: {config.input_patch_size} is not a patch size (the official default -1 is a "
            "placeholder). Every released BEATs checkpoint uses input_patch_size=16."
        )
    if config.encoder_embed_dim % config.encoder_attention_heads:
        raise ValueError(
            f"encoder_attention_heads: {config.encoder_attention_heads} does not divide encoder_embed_dim "
            f"{config.encoder_embed_dim}."
        )
    if config.encoder_embed_dim % config.conv_pos_groups:
        raise ValueError(
            f"conv_pos_groups: {config.conv_pos_groups} does not divide encoder_embed_dim {config.encoder_embed_dim}."
        )
    if config.activation_fn not in _ACTIVATIONS:
        raise ValueError(f"activation_fn: {config.activation_fn!r} is not one of {_ACTIVATIONS}.")
    if config.deep_norm and config.layer_norm_first:
        raise ValueError("deep_norm and layer_norm_first: BEATs supports one or the other, not both.")
