"""Windows for long audio: where each fixed-length window starts, how neighbours cross-fade, mirror padding.

Pure numpy functions of sample counts; the pipeline cuts a clip into windows of the length the model was
trained on, enhances them in batches and puts them back with these weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def window_starts(num_samples: int, window: int, stride: int, align: int = 1) -> list[int]:
    """Start samples of windows of `window` samples that cover `num_samples`.

    Windows start every `stride` samples; the last one is moved back so that it ends at the signal's end (rounded
    up to a multiple of `align`), rather than running past it into padding: a model that never saw digital
    silence in training should not be asked to enhance half a window of it.
    """
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window, stride))
    last = int(math.ceil((num_samples - window) / align) * align)
    if last > starts[-1]:
        starts.append(last)
    return starts


def crossfade_weights(window: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Per-sample weights of one window for overlap-add: raised-cosine ramps over its first `fade_in` and last
    `fade_out` samples (its overlaps with the previous and the next window; 0 for none).

    Two neighbours ramp over the same overlap in opposite directions and sum to one, so a signal cut into
    windows and put back is unchanged.
    """
    weights = np.ones(window, dtype=np.float32)
    for length, at_start in ((fade_in, True), (fade_out, False)):
        if length > 0:
            ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(length, dtype=np.float64) + 0.5) / length)
            if at_start:
                weights[:length] *= ramp.astype(np.float32)
            else:
                weights[-length:] *= ramp[::-1].astype(np.float32)
    return weights


def overlaps(starts: Sequence[int], window: int) -> list[tuple[int, int]]:
    """`(fade_in, fade_out)` in samples of each window: how much it overlaps its previous and next neighbour."""
    return [
        (
            max(0, starts[k - 1] + window - start) if k > 0 else 0,
            max(0, start + window - starts[k + 1]) if k + 1 < len(starts) else 0,
        )
        for k, start in enumerate(starts)
    ]


def pad_reflect(audio: np.ndarray, length: int) -> np.ndarray:
    """Extends `(..., samples)` to `length` samples by mirroring the signal (noise continues as noise, which a
    model treats more gracefully than a jump to digital silence)."""
    missing = length - audio.shape[-1]
    if missing <= 0:
        return audio[..., :length]
    mode = "symmetric" if audio.shape[-1] > 1 else "edge"
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, missing)], mode=mode)
