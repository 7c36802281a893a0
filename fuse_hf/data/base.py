# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""What every dataset shares: the item it yields and, for map-style datasets, seeding and the redraw of bad items."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..audio import AudioDataWarning
from .decode import BadAudioError

# dict(clean=Tensor (samples,), noisy=Tensor (samples,)), float32 waveforms in [-1, 1].
Item = dict[str, torch.Tensor]


def make_item(clean: np.ndarray, noisy: np.ndarray) -> Item:
    """The dataset item of two (samples,) arrays: float32 tensors ``dict(clean=..., noisy=...)``."""
    return dict(
        clean=torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)),
        noisy=torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32)),
    )


def min_samples(min_duration_s: float, sample_rate: int) -> int:
    """The shortest usable clip in samples (at least 1) for a duration in seconds."""
    return max(1, int(round(min_duration_s * sample_rate)))


class SeededDataset(torch.utils.data.Dataset):
    """Shared seed/epoch handling and the skip-and-redraw loop for bad files."""

    max_redraws = 16

    def __init__(self, seed: int, sample_rate: int, min_duration_s: float):
        self.seed = int(seed)
        self.epoch = 0
        self.sample_rate = int(sample_rate)
        self.min_samples = min_samples(min_duration_s, sample_rate)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: item i at epoch e is a pure function of (seed, e, i)."""
        self.epoch = int(epoch)

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        """The generator of item `index` at the current epoch (`attempt` > 0: the redraws after bad examples)."""
        key = [self.seed, self.epoch, int(index)] + ([attempt] if attempt else [])
        return np.random.default_rng(key)

    def _warn_skip(self, err: Exception) -> None:
        warnings.warn(f"skipping bad example: {err}", AudioDataWarning, stacklevel=3)

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        # A bad example is replaced by another index drawn from rng(index, attempt): still a pure function of
        # (seed, epoch, index), so a corrupted file never stops an epoch nor breaks determinism.
        for attempt in range(self.max_redraws):
            rng = self.rng(index, attempt)
            candidate = int(rng.integers(len(self))) if attempt else index
            try:
                return self._get(candidate, rng)
            except BadAudioError as err:
                self._warn_skip(err)
        raise RuntimeError(
            f"{type(self).__name__}: {self.max_redraws} bad examples in a row near index {index}; "
            "the data looks mostly unreadable."
        )
