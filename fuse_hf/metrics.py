"""Speech-quality metrics shared by training validation, ``fuse-hf evaluate`` and the benchmarks.

All functions take 1-D float waveforms (a ``(1, samples)`` array is accepted too) and return plain
Python floats, so results serialise to JSON as they are.

| metric  | function   | range        | package (``pip install fuse-hf[metrics]``) |
|---------|------------|--------------|--------------------------------------------|
| PESQ-WB | `pesq_wb`  | 1.04 .. 4.64 | ``pesq`` (ITU-T P.862.2, 16 kHz)            |
| ESTOI   | `estoi`    | ~0 .. 1      | ``pystoi`` (extended STOI)                  |
| SI-SDR  | `si_sdr`   | dB           | numpy only                                 |
| DNSMOS  | `dnsmos`   | 1 .. 5       | ``speechmos`` + ``librosa`` + ``onnxruntime`` (P.835 SIG/BAK/OVRL) |

Example:

```py
>>> import numpy as np
>>> from fuse_hf.metrics import compute_metrics
>>> t = np.arange(32000) / 16000
>>> clean = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
>>> noisy = clean + 0.01 * np.random.default_rng(0).standard_normal(32000).astype(np.float32)
>>> scores = compute_metrics(clean, noisy, 16000, metrics=("si_sdr",))
>>> round(scores["si_sdr"])
17
```
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from .audio import as_mono, check_sampling_rate, resample

__all__ = [
    "METRICS",
    "METRIC_KEYS",
    "INSTALL_HINT",
    "si_sdr",
    "pesq_wb",
    "estoi",
    "dnsmos",
    "compute_metrics",
    "missing_packages",
    "nanmean",
]

PESQ_SAMPLE_RATE = 16000
DNSMOS_SAMPLE_RATE = 16000
INSTALL_HINT = "pip install fuse-hf[metrics]"

# Metric names accepted by `compute_metrics`, in reporting order.
METRICS: tuple[str, ...] = ("pesq", "estoi", "si_sdr", "dnsmos")
# Keys each metric contributes to the flat result dict of `compute_metrics`.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "pesq": ("pesq",),
    "estoi": ("estoi",),
    "si_sdr": ("si_sdr",),
    "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
}
# Python packages (import names) each metric needs beyond numpy.
_REQUIRED_PACKAGES: dict[str, tuple[str, ...]] = {
    "pesq": ("pesq",),
    "estoi": ("pystoi",),
    "si_sdr": (),
    # speechmos declares no dependencies of its own; its dnsmos module imports these at the top.
    "dnsmos": ("speechmos", "onnxruntime", "librosa", "requests"),
}
# Packages already reported as missing: the warning is given once per process, not once per file.
_WARNED_MISSING: set = set()


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _align(ref, est) -> tuple[np.ndarray, np.ndarray]:
    """Check both waveforms and crop them to the shorter length; float64 `(samples,)` each."""
    ref = as_mono(ref, "reference (clean)", dtype=np.float64)
    est = as_mono(est, "estimate (enhanced)", dtype=np.float64)
    n = min(ref.size, est.size)
    return ref[:n], est[:n]


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def si_sdr(ref, est, eps: float = 1e-10) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    Both signals are made zero-mean, then ``est`` is projected on ``ref``:
    ``target = <est, ref> / <ref, ref> * ref``, ``SI-SDR = 10 log10(|target|^2 / |est - target|^2)``.
    Lengths are cropped to the shorter signal.

    Args:
        ref: clean reference waveform, shape (samples,).
        est: estimated (enhanced) waveform, shape (samples,).
        eps: small constant (squared amplitude) keeping silent inputs finite.

    Returns:
        SI-SDR in dB (higher is better; a scaled copy of ``ref`` gives a very large value).
    """
    ref, est = _align(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    scale = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = scale * ref
    residual = est - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(residual, residual) + eps)))


def pesq_wb(ref, est, sr: int = PESQ_SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2 MOS-LQO, about 1.04 .. 4.64) via the ``pesq`` package.

    Signals at another rate than 16 kHz are resampled to 16 kHz with soxr first.

    Args:
        ref: clean reference waveform, shape (samples,).
        est: estimated waveform, shape (samples,).
        sr: sample rate of both signals in Hz.

    Returns:
        The PESQ-WB score, or ``nan`` (with a warning) when PESQ finds no speech in the
        reference or the input is too short (under about 0.25 s).
    """
    sr = check_sampling_rate(sr, "sr")
    ref, est = _align(ref, est)
    pesq_module = importlib.import_module("pesq")
    ref = resample(ref, sr, PESQ_SAMPLE_RATE)
    est = resample(est, sr, PESQ_SAMPLE_RATE)
    # The pesq wrapper divides by the joint peak: all-zero inputs would give 0/0.
    if max(np.abs(ref).max(), np.abs(est).max()) == 0.0:
        warnings.warn("pesq_wb: both signals are silent; returning nan.", RuntimeWarning, stacklevel=2)
        return math.nan
    try:
        return float(pesq_module.pesq(PESQ_SAMPLE_RATE, ref, est, "wb"))
    except pesq_module.PesqError as err:  # NoUtterancesError, BufferTooShortError, ...
        warnings.warn(
            f"pesq_wb: PESQ could not score this pair ({type(err).__name__}: {err}); returning nan.",
            RuntimeWarning,
            stacklevel=2,
        )
        return math.nan


def estoi(ref, est, sr: int) -> float:
    """Extended short-time objective intelligibility (Jensen & Taal, 2016) via ``pystoi``.

    Args:
        ref: clean reference waveform, shape (samples,).
        est: estimated waveform, shape (samples,).
        sr: sample rate of both signals in Hz (pystoi resamples to 10 kHz internally).

    Returns:
        ESTOI (about 0 .. 1, higher is better), or ``nan`` (with a warning) when fewer than
        30 non-silent 25.6 ms frames remain (about 0.4 s of speech).
    """
    sr = check_sampling_rate(sr, "sr")
    ref, est = _align(ref, est)
    stoi = importlib.import_module("pystoi").stoi
    threadpool_limits = importlib.import_module("threadpoolctl").threadpool_limits
    # One BLAS thread: with two, OpenBLAS splits pystoi's products differently from run to run and the score's last
    # digit changed between identical calls; the products are small, so nothing is lost.
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("always")
        value = float(stoi(ref, est, sr, extended=True))
    # pystoi signals "too short" with a RuntimeWarning and the sentinel 1e-5: turn it into nan so
    # that means over a folder are not dragged towards zero by unscorable files.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        warnings.warn(
            "estoi: too little non-silent speech to score (needs ~0.4 s); returning nan.",
            RuntimeWarning,
            stacklevel=2,
        )
        return math.nan
    return value


def _dnsmos_module():
    """The ``speechmos.dnsmos`` module; it keeps one ONNX session pair in a module global."""
    return importlib.import_module("speechmos.dnsmos")


def dnsmos(est, sr: int) -> dict[str, float]:
    """Non-intrusive DNSMOS P.835 scores (Reddy et al., 2022) via the ``speechmos`` package.

    The ONNX sessions are created on the first call and reused (``speechmos`` caches them in a
    module global), so later calls cost only inference. Audio at another rate is resampled to
    16 kHz. As in Microsoft's reference script, speechmos doubles clips shorter than 9.01 s until
    they fill the 9 s window and averages 9 s windows at 1 s hops: about 0.13 s per window on
    2 cores, so 0.5-1 s per short clip.

    Args:
        est: waveform to rate, shape (samples,), nominally in [-1, 1].
        sr: its sample rate in Hz.

    Returns:
        ``{"SIG": speech quality, "BAK": background-noise quality, "OVRL": overall}``,
        each a MOS between 1 and 5.
    """
    sr = check_sampling_rate(sr, "sr")
    x = as_mono(est, "estimate (enhanced)", dtype=np.float64)
    module = _dnsmos_module()
    x = resample(x, sr, DNSMOS_SAMPLE_RATE)
    peak = float(np.abs(x).max())
    if peak == 0.0:
        warnings.warn("dnsmos: the signal is silent; returning nan.", RuntimeWarning, stacklevel=2)
        return {"SIG": math.nan, "BAK": math.nan, "OVRL": math.nan}
    # speechmos rejects samples outside [-1, 1]; a rare overshoot after enhancement is scaled
    # back (not clipped, which would add distortion the model never produced).
    if peak > 1.0:
        x = x / peak
    scores = module.run(x.astype(np.float32), sr=DNSMOS_SAMPLE_RATE)
    return {"SIG": float(scores["sig_mos"]), "BAK": float(scores["bak_mos"]), "OVRL": float(scores["ovrl_mos"])}


# ----------------------------------------------------------------------------------------------
# all together
# ----------------------------------------------------------------------------------------------
def missing_packages(metric: str) -> tuple[str, ...]:
    """Import names of the packages ``metric`` needs that cannot be imported here."""
    if metric not in _REQUIRED_PACKAGES:
        raise ValueError(f"metric: unknown metric {metric!r}. Choose from {', '.join(METRICS)}.")
    missing = []
    for package in _REQUIRED_PACKAGES[metric]:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    return tuple(missing)


def _check_metric_names(metrics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = tuple(m.strip() for m in metrics.split(",") if m.strip())
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(
            f"metrics: unknown metric(s) {', '.join(map(repr, unknown))}. Choose from {', '.join(METRICS)}."
        )
    if not metrics:
        raise ValueError(f"metrics: no metric requested. Choose from {', '.join(METRICS)}.")
    return metrics


def available_metrics(metrics: Sequence[str] = METRICS) -> tuple[str, ...]:
    """The subset of ``metrics`` whose packages import; warn once per missing package.

    Args:
        metrics: metric names (see `METRICS`) or a comma-separated string.

    Returns:
        The metric names that can run, in the given order.
    """
    metrics = _check_metric_names(metrics)
    usable = []
    for metric in metrics:
        missing = missing_packages(metric)
        if not missing:
            usable.append(metric)
            continue
        new = [p for p in missing if p not in _WARNED_MISSING]
        if new:
            _WARNED_MISSING.update(new)
            warnings.warn(
                f"metric '{metric}' skipped: package(s) {', '.join(new)} not installed. "
                f"Install the metrics extra with `{INSTALL_HINT}`.",
                UserWarning,
                stacklevel=3,
            )
    return tuple(usable)


def compute_metrics(
    clean,
    enhanced,
    sr: int,
    metrics: Sequence[str] = METRICS,
    enhanced_sr: int | None = None,
) -> dict[str, float]:
    """Score one enhanced waveform against its clean reference.

    Lengths are aligned by cropping to the shorter signal. Metrics whose package is missing are
    skipped with one warning naming the package (``pip install fuse-hf[metrics]``).

    Args:
        clean: clean reference, shape (samples,), float in [-1, 1].
        enhanced: enhanced (or noisy) waveform, shape (samples,).
        sr: sample rate of ``clean`` in Hz (and of ``enhanced`` unless ``enhanced_sr`` is given).
        metrics: names from `METRICS` (``"pesq"``, ``"estoi"``, ``"si_sdr"``, ``"dnsmos"``).
        enhanced_sr: sample rate of ``enhanced`` in Hz, if known separately; it must equal ``sr``.

    Returns:
        A flat dict with, for the metrics that ran: ``pesq``, ``estoi``, ``si_sdr`` (dB),
        ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``. Unscorable values are ``nan``.
    """
    sr = check_sampling_rate(sr, "sr")
    if enhanced_sr is not None and check_sampling_rate(enhanced_sr, "enhanced_sr") != sr:
        raise ValueError(
            f"sample rate: clean is {sr} Hz but enhanced is {enhanced_sr} Hz. "
            "Resample the enhanced audio to the clean rate first."
        )
    clean, enhanced = _align(clean, enhanced)
    results: dict[str, float] = {}
    for metric in available_metrics(metrics):
        if metric == "pesq":
            results["pesq"] = pesq_wb(clean, enhanced, sr)
        elif metric == "estoi":
            results["estoi"] = estoi(clean, enhanced, sr)
        elif metric == "si_sdr":
            results["si_sdr"] = si_sdr(clean, enhanced)
        elif metric == "dnsmos":
            mos = dnsmos(enhanced, sr)
            results.update(dnsmos_sig=mos["SIG"], dnsmos_bak=mos["BAK"], dnsmos_ovrl=mos["OVRL"])
    return results


def nanmean(values: Iterable[float | None]) -> float:
    """Mean of the finite values, or nan when there are none.

    None, NaN and +-Inf are left out: a file a metric could not score (PESQ without speech, ESTOI on a clip too short)
    must not drag the mean of a folder or a benchmark table. The mean is numpy's (pairwise sum over the values kept).
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
