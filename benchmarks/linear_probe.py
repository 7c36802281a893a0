"""Linear probes of frozen BEATs features (`benchmarks/bench_beats_probe.py`): did pre-training teach anything?

Features are pooled per patch row (160 ms) so that row-level targets (speech / non-speech, local SNR) line up with
them; the probe is a closed-form ridge regression, deterministic and without a tuning loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fuse_hf.models.beats import FRAME_LENGTH, FRAME_SHIFT, BEATsModel

__all__ = ["fit_linear_probe", "probe_features", "row_targets_from_samples"]


@torch.no_grad()
def probe_features(model: BEATsModel, waveform: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
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
) -> dict[str, float]:
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
