"""BEATs self-supervised objective, iterations 1 and 2 (the linear probe of what the features learned is in
``benchmarks/linear_probe.py``).

Iteration 1 of BEATs (Chen et al., ICML 2023, Sec. 3) needs no teacher: a frozen *random-projection* tokenizer
labels every 16x16 filterbank patch with the nearest of 1024 random unit codewords, 75% of the patches are
masked, and the model predicts the labels of the masked ones with cross-entropy. Iteration 2 is the same
objective with the labels of a tokenizer distilled from the iteration-1 model
(:class:`~fuse_hf.models.beats.BEATsTokenizer`, frozen), passed as ``tokenizer=``.

As in the paper (and MAE), the encoder sees only the visible 25% of the patches, which makes pre-training about
four times cheaper; a light label predictor (a small Transformer) then sees the encoder outputs at their
positions and a learned mask embedding at the masked ones. Two details keep positions meaningful when tokens
are dropped: the convolutional positional embedding runs on the full sequence (masked patches zeroed, so
nothing leaks), and the relative position bias uses the visible tokens' original positions.

Only `BEATsForPretraining.encoder` (a plain :class:`~fuse_hf.models.beats.BEATsModel`) is kept afterwards:
``wrapper.encoder.save_pretrained(folder)`` gives the conditioner the pipeline loads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .beats.modeling_beats import (
    BEATsModel,
    _TransformerEncoder,
    patch_aligned_padding_mask,
)
from .beats.modeling_beats_tokenizer import BEATsTokenizer

__all__ = [
    "BEATsForPretraining",
    "RandomProjectionTokenizer",
    "patchify",
    "random_patch_mask",
]


def patchify(fbank_features: torch.Tensor, patch_size: int = 16) -> torch.Tensor:
    """`(batch, frames, mel)` -> `(batch, tokens, patch_size ** 2)` flattened patches, in the encoder's token order.

    Token ``t * (mel // p) + f`` is the patch of frames ``[p t, p t + p)`` and mel bins ``[p f, p f + p)``, as the
    strided patch convolution orders them; frames beyond the last whole row are dropped.
    """
    batch, frames, mel = fbank_features.shape
    rows, bands = frames // patch_size, mel // patch_size
    x = fbank_features[:, : rows * patch_size, : bands * patch_size]
    x = x.reshape(batch, rows, patch_size, bands, patch_size).permute(0, 1, 3, 2, 4)
    return x.reshape(batch, rows * bands, patch_size * patch_size)


class RandomProjectionTokenizer(nn.Module):
    """Frozen random-projection acoustic tokenizer (BEATs iteration 1, BEST-RQ style).

    A patch is projected by a fixed Gaussian matrix, L2-normalised, and labelled with the nearest of
    `codebook_size` random unit codewords (nearest in Euclidean distance = highest cosine for unit vectors).
    Both are buffers drawn from `seed`, so the labels are a fixed function of the input, saved with the module.

    Args:
        patch_size: side of the fbank patches (16).
        codebook_size: number of labels (1024).
        code_dim: projection width.
        seed: seed of the projection and the codebook.
    """

    def __init__(self, patch_size: int = 16, codebook_size: int = 1024, code_dim: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.patch_size = patch_size
        generator = torch.Generator().manual_seed(seed)
        # Xavier-scaled so that projected values are about unit size whatever the patch size.
        projection = torch.randn(patch_size * patch_size, code_dim, generator=generator) / math.sqrt(patch_size**2)
        codebook = F.normalize(torch.randn(codebook_size, code_dim, generator=generator), dim=-1)
        self.register_buffer("projection", projection)
        self.register_buffer("codebook", codebook)

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    @torch.no_grad()
    def forward(self, fbank_features: torch.Tensor) -> torch.Tensor:
        """`(batch, frames, mel)` normalised fbank -> `(batch, tokens)` long labels in ``[0, codebook_size)``."""
        patches = patchify(fbank_features.float(), self.patch_size)
        codes = F.normalize(patches @ self.projection, dim=-1)
        return (codes @ self.codebook.T).argmax(dim=-1)

    def tokenize(self, fbank_features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The labels, as :meth:`BEATsTokenizer.tokenize` gives them; each patch is labelled alone, so the token
        padding mask changes nothing."""
        return self(fbank_features)


def random_patch_mask(
    batch_size: int,
    num_tokens: int,
    mask_prob: float = 0.75,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
):
    """Masks the same number of random tokens in every row (so the visible tokens form a rectangular batch).

    Returns:
        `(mask, keep_index)`: `(batch, tokens)` bool, True = masked; and `(batch, visible)` long indices of the
        visible tokens in increasing order, ``visible = tokens - round(mask_prob * tokens)`` (at least one).
    """
    num_masked = min(max(int(round(mask_prob * num_tokens)), 0), num_tokens - 1)
    noise = torch.rand(batch_size, num_tokens, generator=generator)
    order = noise.argsort(dim=1)
    keep_index = order[:, num_masked:].sort(dim=1).values
    mask = torch.ones(batch_size, num_tokens, dtype=torch.bool)
    mask.scatter_(1, keep_index, False)
    return mask.to(device), keep_index.to(device)


class BEATsForPretraining(nn.Module):
    """BEATs masked label prediction around a :class:`BEATsModel` encoder (iteration 1, or 2 with `tokenizer`).

    Args:
        encoder: the model to pre-train (its config fixes the patch size and width).
        codebook_size, code_dim, tokenizer_seed: the iteration-1 tokenizer (:class:`RandomProjectionTokenizer`,
            1024 codes by default). With `tokenizer`, `code_dim` and `tokenizer_seed` are unused and
            `codebook_size`, if given, must be the tokenizer's.
        mask_prob: fraction of patches masked (0.75).
        predictor_layers: depth of the label predictor (a Transformer of the encoder's width).
        tokenizer: iteration 2: a distilled :class:`~fuse_hf.models.beats.BEATsTokenizer` whose codes are the
            labels; it is frozen and stays in eval mode, and it is no part of ``encoder`` (the conditioner). The
            label head has one output per code.

    Example:

    ```py
    >>> from fuse_hf.models.beats import BEATsConfig, BEATsModel
    >>> config = BEATsConfig(input_patch_size=16, encoder_layers=4, encoder_embed_dim=384,
    ...                      encoder_ffn_embed_dim=1536, encoder_attention_heads=6, conv_pos_groups=16,
    ...                      deep_norm=True, relative_position_embedding=True, gru_rel_pos=True, max_distance=800)
    >>> encoder = BEATsModel(config)
    >>> wrapper = BEATsForPretraining(encoder)
    >>> out = wrapper(torch.randn(2, 64000) * 0.1)        # 4 s crops at 16 kHz
    >>> out["loss"].backward()
    >>> wrapper.encoder.save_pretrained("conditioner/")  # what the pipeline loads
    ```
    """

    def __init__(
        self,
        encoder: BEATsModel,
        codebook_size: int | None = None,
        code_dim: int = 256,
        mask_prob: float = 0.75,
        predictor_layers: int = 2,
        tokenizer_seed: int = 0,
        tokenizer: BEATsTokenizer | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob: {mask_prob} must be in (0, 1).")
        config = encoder.config
        self.encoder = encoder
        self.mask_prob = mask_prob
        if tokenizer is None:
            codebook_size = 1024 if codebook_size is None else codebook_size
            tokenizer = RandomProjectionTokenizer(config.input_patch_size, codebook_size, code_dim, tokenizer_seed)
        else:
            if codebook_size is not None and codebook_size != tokenizer.codebook_size:
                raise ValueError(
                    f"codebook_size: {codebook_size}, but the tokenizer has {tokenizer.codebook_size} codes. Leave "
                    "codebook_size out: the label head follows the tokenizer."
                )
            if tokenizer.patch_size != config.input_patch_size:
                raise ValueError(
                    f"tokenizer: patches of {tokenizer.patch_size}, the encoder's are {config.input_patch_size}: "
                    "the labels must be of the encoder's tokens."
                )
            tokenizer = tokenizer.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.mask_embedding = nn.Parameter(torch.randn(config.encoder_embed_dim) * 0.02)
        self.label_predictor = _TransformerEncoder.from_config(
            config, num_layers=predictor_layers, layerdrop=0.0, layer_wise_gradient_decay_ratio=1.0
        )
        self.label_head = nn.Linear(config.encoder_embed_dim, tokenizer.codebook_size)

    def train(self, mode: bool = True) -> BEATsForPretraining:
        """As `nn.Module.train`, but the tokenizer stays in eval mode: its labels must not change with dropout, and
        a distilled tokenizer's codebook must not move."""
        super().train(mode)
        self.tokenizer.eval()
        return self

    def forward(
        self,
        waveform: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One masked-prediction step.

        Args:
            waveform: `(batch, samples)` float, 16 kHz, in [-1, 1].
            padding_mask: `(batch, samples)` bool, True = padded (right padding); padded patch rows are neither
                seen nor predicted.
            generator: CPU generator for the mask (reproducible validation).

        Returns:
            dict with `loss` (scalar cross-entropy over the masked, non-padded tokens), `accuracy` (masked-token
            accuracy, scalar), `logits` `(batch, tokens, codebook_size)`, `labels` `(batch, tokens)`,
            `target_mask` `(batch, tokens)` bool (tokens that count), `num_targets` (scalar long).
        """
        encoder = self.encoder
        waveform, padding_mask = encoder.check_inputs(waveform, padding_mask, padding_mode="patch")
        fbank_features = encoder.preprocess(waveform)
        tokens = encoder.project(encoder.embed_patches(fbank_features))
        batch, num_tokens, width = tokens.shape

        token_padding = None
        if padding_mask is not None:
            token_padding = patch_aligned_padding_mask(padding_mask, encoder.config.input_patch_size)
        labels = self.tokenizer.tokenize(fbank_features, token_padding)
        masked, keep_index = random_patch_mask(batch, num_tokens, self.mask_prob, generator, tokens.device)

        # The encoder sees the visible tokens only; masked ones are zeroed so the positional convolution,
        # which runs on the full grid, cannot leak their content.
        visible, _ = encoder.encoder(tokens.masked_fill(masked[..., None], 0.0), token_padding, keep_index=keep_index)
        canvas = self.mask_embedding.to(visible.dtype).expand(batch, num_tokens, width)
        canvas = canvas.scatter(1, keep_index[..., None].expand(-1, -1, width), visible)
        logits = self.label_head(self.label_predictor(canvas, token_padding)[0])

        target_mask = masked if token_padding is None else masked & ~token_padding
        target_logits, target_labels = logits[target_mask], labels[target_mask]
        if target_labels.numel() == 0:
            raise ValueError("BEATsForPretraining: no masked, non-padded patch in this batch. Use longer crops.")
        loss = F.cross_entropy(target_logits.float(), target_labels)
        accuracy = (target_logits.argmax(dim=-1) == target_labels).float().mean()
        return {
            "loss": loss,
            "accuracy": accuracy.detach(),
            "logits": logits,
            "labels": labels,
            "target_mask": target_mask,
            "num_targets": target_mask.sum(),
        }
