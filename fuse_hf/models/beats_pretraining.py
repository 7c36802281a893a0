"""BEATs iteration-1 self-supervised objective, and a linear probe to check what the features learned.

Iteration 1 of BEATs (Chen et al., ICML 2023, Sec. 3) needs no teacher: a frozen *random-projection* tokenizer
labels every 16x16 filterbank patch with the nearest of 1024 random unit codewords, 75% of the patches are
masked, and the model predicts the labels of the masked ones with cross-entropy.

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
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .beats import (
    FRAME_LENGTH,
    FRAME_SHIFT,
    BEATsModel,
    _TransformerEncoder,
    patch_aligned_padding_mask,
)

__all__ = [
    "BEATsForPretraining",
    "RandomProjectionTokenizer",
    "fit_linear_probe",
    "patchify",
    "probe_features",
    "random_patch_mask",
    "row_targets_from_samples",
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


def random_patch_mask(
    batch_size: int,
    num_tokens: int,
    mask_prob: float = 0.75,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
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
    """BEATs iteration-1 masked label prediction around a :class:`BEATsModel` encoder.

    Args:
        encoder: the model to pre-train (its config fixes the patch size and width).
        codebook_size, code_dim, tokenizer_seed: the frozen tokenizer (:class:`RandomProjectionTokenizer`).
        mask_prob: fraction of patches masked (0.75).
        predictor_layers: depth of the label predictor (a Transformer of the encoder's width).

    Example:

    ```py
    >>> encoder = BEATsModel(input_patch_size=16, encoder_layers=4, encoder_embed_dim=384,
    ...                      encoder_ffn_embed_dim=1536, encoder_attention_heads=6, conv_pos_groups=16,
    ...                      deep_norm=True, relative_position_embedding=True, gru_rel_pos=True, max_distance=800)
    >>> wrapper = BEATsForPretraining(encoder)
    >>> out = wrapper(torch.randn(2, 64000) * 0.1)        # 4 s crops at 16 kHz
    >>> out["loss"].backward()
    >>> wrapper.encoder.save_pretrained("conditioner/")  # what the pipeline loads
    ```
    """

    def __init__(
        self,
        encoder: BEATsModel,
        codebook_size: int = 1024,
        code_dim: int = 256,
        mask_prob: float = 0.75,
        predictor_layers: int = 2,
        tokenizer_seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob: {mask_prob} must be in (0, 1).")
        config = encoder.config
        self.encoder = encoder
        self.mask_prob = mask_prob
        self.tokenizer = RandomProjectionTokenizer(config.input_patch_size, codebook_size, code_dim, tokenizer_seed)
        self.mask_embedding = nn.Parameter(torch.randn(config.encoder_embed_dim) * 0.02)
        self.label_predictor = _TransformerEncoder(
            embed_dim=config.encoder_embed_dim,
            ffn_embed_dim=config.encoder_ffn_embed_dim,
            num_layers=predictor_layers,
            num_heads=config.encoder_attention_heads,
            activation_fn=config.activation_fn,
            layer_norm_first=config.layer_norm_first,
            deep_norm=config.deep_norm,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            layerdrop=0.0,
            conv_pos=config.conv_pos,
            conv_pos_groups=config.conv_pos_groups,
            relative_position_embedding=config.relative_position_embedding,
            num_buckets=config.num_buckets,
            max_distance=config.max_distance,
            gru_rel_pos=config.gru_rel_pos,
            layer_wise_gradient_decay_ratio=1.0,
        )
        self.label_head = nn.Linear(config.encoder_embed_dim, codebook_size)

    def forward(
        self,
        waveform: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Dict[str, torch.Tensor]:
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
        labels = self.tokenizer(fbank_features)
        tokens = encoder.project(encoder.embed_patches(fbank_features))
        batch, num_tokens, width = tokens.shape

        token_padding = None
        if padding_mask is not None:
            token_padding = patch_aligned_padding_mask(padding_mask, encoder.config.input_patch_size)
        masked, keep_index = random_patch_mask(batch, num_tokens, self.mask_prob, generator, tokens.device)

        # The encoder sees the visible tokens only; masked ones are zeroed so the positional convolution,
        # which runs on the full grid, cannot leak their content.
        visible = encoder.encoder(tokens.masked_fill(masked[..., None], 0.0), token_padding, keep_index=keep_index)
        canvas = self.mask_embedding.to(visible.dtype).expand(batch, num_tokens, width)
        canvas = canvas.scatter(1, keep_index[..., None].expand(-1, -1, width), visible)
        logits = self.label_head(self.label_predictor(canvas, token_padding))

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


# ------------------------------------------------------------------------------------------------ linear probe


@torch.no_grad()
def probe_features(
    model: BEATsModel, waveform: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Frozen features averaged over the frequency bands of each patch row: `(batch, rows, encoder_embed_dim)`.

    Row `t` covers samples ``[2560 t, 2560 t + 2800)`` (16 frames of 10 ms, 25 ms windows) for 16x16 patches;
    :func:`row_targets_from_samples` gives matching targets. Rows that reach into the padding are computed
    but meaningless: keep rows ``t`` with ``2560 t + 2800 <= length``.
    """
    # Rows, not the official token grouping, so that padding never changes the unpadded rows.
    features, _ = model.encode_tokens(waveform, padding_mask, padding_mode="patch")
    batch, tokens, width = features.shape
    bands = model.num_freq_patches
    return features.reshape(batch, tokens // bands, bands, width).mean(dim=2)


def row_targets_from_samples(sample_values: torch.Tensor, num_rows: int, patch_size: int = 16) -> torch.Tensor:
    """Averages per-sample targets (e.g. 1 = speech) over each patch row's span: `(batch, samples)` -> `(batch, rows)`.

    Threshold the result (e.g. ``> 0.5``) for frame-level speech / non-speech labels.
    """
    span = FRAME_LENGTH + (patch_size - 1) * FRAME_SHIFT
    hop = patch_size * FRAME_SHIFT
    cumulative = F.pad(sample_values.double().cumsum(dim=1), (1, 0))
    starts = torch.arange(num_rows, device=sample_values.device) * hop
    ends = (starts + span).clamp(max=sample_values.shape[1])
    return ((cumulative[:, ends] - cumulative[:, starts]) / (ends - starts)).to(torch.float32)


def fit_linear_probe(
    train_features: torch.Tensor,
    train_targets: torch.Tensor,
    test_features: torch.Tensor,
    test_targets: torch.Tensor,
    task: str = "classification",
    ridge: float = 1e-2,
) -> Dict[str, float]:
    """Closed-form ridge-regression probe on frozen features (deterministic, no tuning loop).

    Args:
        train_features, test_features: `(n, dim)` float.
        train_targets, test_targets: `(n,)`: integer class ids for ``task="classification"`` (one-vs-rest
            ridge on one-hot targets, prediction = argmax), or floats for ``task="regression"``.
        ridge: L2 penalty on the standardised features, relative to the number of training rows.

    Returns:
        classification: ``accuracy``, ``balanced_accuracy``, ``chance`` (majority-class accuracy on test);
        regression: ``mse``, ``r2``, ``pearson``.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task: {task!r} is not 'classification' or 'regression'.")
    x_train, x_test = train_features.double(), test_features.double()
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-8)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    x_train = torch.cat([x_train, torch.ones(len(x_train), 1, dtype=x_train.dtype)], dim=1)
    x_test = torch.cat([x_test, torch.ones(len(x_test), 1, dtype=x_test.dtype)], dim=1)

    if task == "classification":
        classes = torch.unique(torch.cat([train_targets, test_targets])).long()
        y_train = (train_targets.long()[:, None] == classes[None, :]).double()
    else:
        y_train = train_targets.double()[:, None]
    penalty = ridge * len(x_train) * torch.eye(x_train.shape[1], dtype=x_train.dtype)
    penalty[-1, -1] = 0.0  # no penalty on the bias
    weights = torch.linalg.solve(x_train.T @ x_train + penalty, x_train.T @ y_train)
    prediction = x_test @ weights

    if task == "classification":
        predicted = classes[prediction.argmax(dim=1)]
        truth = test_targets.long()
        recalls = [(predicted[truth == c] == c).double().mean() for c in classes if (truth == c).any()]
        majority = torch.bincount(truth - classes.min()).max().item() / len(truth)
        return {
            "accuracy": (predicted == truth).double().mean().item(),
            "balanced_accuracy": torch.stack(recalls).mean().item(),
            "chance": majority,
        }
    predicted, truth = prediction[:, 0], test_targets.double()
    mse = ((predicted - truth) ** 2).mean()
    r2 = 1 - mse / truth.var(unbiased=False).clamp(min=1e-12)
    pearson = torch.corrcoef(torch.stack([predicted, truth]))[0, 1]
    return {"mse": mse.item(), "r2": r2.item(), "pearson": pearson.item()}
