"""Figures people look at: spectrograms side by side, metric curves and score box plots (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def log_spectrogram_db(audio: np.ndarray, sampling_rate: int, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """`(freq, frames)` power spectrogram in dB (re full scale) of a 1-D signal."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size < n_fft:
        audio = np.pad(audio, (0, n_fft - audio.size))
    frames = 1 + (audio.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(audio[index] * np.hanning(n_fft), axis=1)
    return (10 * np.log10(np.abs(spectrum) ** 2 / (n_fft / 4) + 1e-10)).T


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi: int) -> Path:
    """Writes `fig` as a PNG at `path` (creating its folder), closes it and returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_spectrograms(signals: Mapping[str, np.ndarray], sampling_rate: int, path, title: str = "") -> Path:
    """Writes one PNG with a spectrogram per signal (e.g. noisy / enhanced / clean), side by side."""
    plt = _pyplot()
    names = list(signals)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        spec = log_spectrogram_db(signals[name], sampling_rate)
        duration = len(signals[name]) / sampling_rate
        image = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            vmin=-100,
            vmax=-10,
            cmap="magma",
            extent=(0, duration, 0, sampling_rate / 2000),
        )
        ax.set_title(name)
        ax.set_xlabel("time (s)")
    axes[0][0].set_ylabel("frequency (kHz)")
    fig.colorbar(image, ax=axes[0].tolist(), label="dB")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=100)


def plot_curves(
    history: Sequence[dict[str, float]], keys: Sequence[str], path, x: str = "step", title: str = ""
) -> Path:
    """Metric curves against `x` from a list of records (e.g. validation history), one panel per key."""
    plt = _pyplot()
    keys = [k for k in keys if any(k in r for r in history)]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r[x], r[key]) for r in history if key in r and r[key] is not None and np.isfinite(r[key])]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", ms=3)
        ax.set_title(key)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def plot_boxes(report: Mapping, path) -> Path:
    """Box plot PNG of a `fuse_hf.evaluate.evaluate_folders` report: one panel per metric, the enhanced (and, with
    a noisy folder, the noisy) per-file scores side by side; nan scores are left out."""
    from .evaluate import METRIC_LABELS

    plt = _pyplot()

    base = [k for k in report["metrics"] if not k.startswith(("noisy_", "delta_"))]
    has_noisy = any(k.startswith("noisy_") for k in report["metrics"])
    fig, axes = plt.subplots(1, len(base), figsize=(2.3 * len(base), 3.6), squeeze=False)
    for ax, key in zip(axes[0], base):
        series, labels = [], []
        if has_noisy:
            series.append([r[f"noisy_{key}"] for r in report["files"]])
            labels.append("noisy")
        series.append([r[key] for r in report["files"]])
        labels.append("enhanced")
        series = [[v for v in s if not math.isnan(v)] for s in series]
        ax.boxplot(series, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        ax.set_title(METRIC_LABELS[key])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{report['num_files']} files: {report['enhanced_dir']}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi=120)
