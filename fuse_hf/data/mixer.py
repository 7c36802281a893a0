# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""The mixer: a clean speech segment -> (clean target, noisy input), with the augmentations of `AugmentConfig`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, AudioDataWarning, avoid_clipping
from .augment import (
    apply_lowpass,
    apply_rir,
    babble,
    brown_noise,
    mains_hum,
    mix_at_snr,
    pink_noise,
    power,
    random_eq,
    set_level,
    synth_rir,
    white_noise,
)
from .decode import BadAudioError, checked, decode_audio, tile_to
from .files import PathLike

SYNTHETIC_NOISES = ("white", "pink", "brown", "hum", "babble")

# ``f(rng, n) -> n`` other speech segments of the segment's length, for babble noise.
BabbleSource = Callable[[np.random.Generator, int], list[np.ndarray]]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the `Mixer`'s augmentations. ``AugmentConfig.none()`` turns them all off.

    Levels in dBFS, SNRs in dB, frequencies in Hz, times in seconds.
    """

    snr_db: tuple[float, float] = (-5.0, 20.0)  # uniform
    level_dbfs: tuple[float, float] | None = (-35.0, -15.0)  # RMS of the noisy input (None: keep the level)
    synthetic_noise_prob: float = 0.3  # use a synthetic noise instead of a recorded one
    synthetic_noises: tuple[str, ...] = SYNTHETIC_NOISES
    second_noise_prob: float = 0.2  # add a second (synthetic) noise, 0..10 dB below the first
    babble_talkers: tuple[int, int] = (3, 7)  # [low, high) talkers in babble
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.2, 1.0)
    drr_db: tuple[float, float] = (-3.0, 10.0)
    # Target of reverberant items: "early" = direct path + first 50 ms of reflections (the model removes the late
    # reverb but keeps the room's colouring, which is easier to learn and sounds natural); "dry" = the anechoic speech.
    reverb_target: str = "early"
    eq_prob: float = 0.3  # random EQ of the noisy input only
    eq_max_gain_db: float = 8.0
    lowpass_prob: float = 0.2  # band-limit the noisy input only, to teach robustness to narrowband input
    lowpass_hz: tuple[float, float] = (3400.0, 8000.0)
    # Items with no noise at all (input == target): teaches the model to give clean speech back unchanged.
    clean_prob: float = 0.0
    # Low-pass the noisy input at the clean target's measured cutoff (the corpus manifest's ``cutoff_hz``), so that a
    # band-limited target never teaches the model to remove the high band of a wideband input.
    band_limit_to_target: bool = False
    clip_peak: float = 0.99

    def __post_init__(self):
        unknown = set(self.synthetic_noises) - set(SYNTHETIC_NOISES)
        if unknown:
            raise ValueError(f"AugmentConfig.synthetic_noises: unknown {sorted(unknown)}. Use {SYNTHETIC_NOISES}.")
        if self.reverb_target not in ("early", "dry"):
            raise ValueError(f"AugmentConfig.reverb_target={self.reverb_target!r}: use 'early' or 'dry'.")
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"AugmentConfig.snr_db={self.snr_db}: low > high.")
        if not 0.0 <= self.clean_prob <= 1.0:
            raise ValueError(f"AugmentConfig.clean_prob={self.clean_prob}: a probability in [0, 1].")

    @classmethod
    def none(cls, snr_db: tuple[float, float] = (-5.0, 20.0), **overrides) -> AugmentConfig:
        """Plain mixing: recorded noise at a random SNR and level, nothing else."""
        off = dict(synthetic_noise_prob=0.0, second_noise_prob=0.0, reverb_prob=0.0, eq_prob=0.0, lowpass_prob=0.0)
        return cls(snr_db=tuple(snr_db), **{**off, **overrides})


class Mixer:
    """Turns a clean speech segment into a (clean target, noisy input) pair; all randomness comes from `rng`.

    Args:
        noise_files: recorded noises (any length; looped or cropped). Empty: synthetic noise only.
        config: `AugmentConfig`.
        sample_rate: Hz.
        min_samples: noise files shorter than this are skipped.
    """

    def __init__(
        self,
        noise_files: Sequence[PathLike],
        config: AugmentConfig,
        sample_rate: int = SAMPLE_RATE,
        min_samples: int = 1,
    ):
        self.noise_files = [Path(p) for p in noise_files]
        self.config = config
        self.sample_rate = sample_rate
        self.min_samples = min_samples
        self._bad: set = set()
        if not self.noise_files and not config.synthetic_noises:
            raise ValueError("Mixer: no noise files and no synthetic noises. Pass a noise folder or synthetic kinds.")

    def _recorded_noise(self, num_samples: int, rng: np.random.Generator) -> np.ndarray | None:
        """A recorded noise crop; unreadable files are skipped with a warning (another file is drawn)."""
        for _ in range(8):
            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            if path in self._bad:
                continue
            try:
                noise = checked(decode_audio(path, self.sample_rate), str(path), self.min_samples)
            except BadAudioError as err:
                self._bad.add(path)
                warnings.warn(f"skipping noise file: {err}", AudioDataWarning, stacklevel=3)
                continue
            return tile_to(noise, num_samples, rng)
        return None

    def synthetic_noise(
        self,
        kind: str,
        num_samples: int,
        rng: np.random.Generator,
        babble_source: BabbleSource | None = None,
    ) -> np.ndarray:
        """Unit-RMS synthetic noise of `kind` (one of `SYNTHETIC_NOISES`) -> (num_samples,) float32."""
        if kind == "white":
            return white_noise(num_samples, rng)
        if kind == "pink":
            return pink_noise(num_samples, rng)
        if kind == "brown":
            return brown_noise(num_samples, rng)
        if kind == "hum":
            return mains_hum(num_samples, rng, self.sample_rate)
        if kind == "babble" and babble_source is not None:
            talkers = babble_source(rng, int(rng.integers(*self.config.babble_talkers)))
            if talkers:
                return babble(talkers)
        return pink_noise(num_samples, rng)  # babble without a speech pool

    def _noise(self, num_samples, rng, babble_source) -> tuple[np.ndarray, str]:
        cfg = self.config
        kinds = [k for k in cfg.synthetic_noises if k != "babble" or babble_source is not None]
        use_synthetic = bool(kinds) and (not self.noise_files or rng.random() < cfg.synthetic_noise_prob)
        noise = None if use_synthetic else self._recorded_noise(num_samples, rng)
        if noise is not None:
            kind = "recorded"
        else:
            kind = str(rng.choice(kinds)) if kinds else "pink"
            noise = self.synthetic_noise(kind, num_samples, rng, babble_source)
        if kinds and rng.random() < cfg.second_noise_prob:
            extra_kind = str(rng.choice(kinds))
            extra = self.synthetic_noise(extra_kind, num_samples, rng, babble_source)
            noise = noise / (np.sqrt(power(noise)) + 1e-8) + extra * np.float32(10 ** (-rng.uniform(0, 10) / 20))
            kind += "+" + extra_kind
        return noise.astype(np.float32), kind

    def __call__(
        self,
        speech: np.ndarray,
        rng: np.random.Generator,
        speech_region: slice | None = None,
        babble_source: BabbleSource | None = None,
        cutoff_hz: float | None = None,
    ) -> dict[str, Any]:
        """Mix one segment.

        Args:
            speech: clean (samples,) float32 segment (zero-padded outside `speech_region`).
            rng: the item's generator; every draw comes from it.
            speech_region: where the clip lies in the segment (for the SNR), default all of it.
            babble_source: ``f(rng, n) -> n`` other speech segments of the same length, for babble noise.
            cutoff_hz: measured bandwidth of `speech` in Hz (None: unknown); with
                ``config.band_limit_to_target`` the noisy input is low-passed there.

        Returns:
            dict(clean (samples,), noisy (samples,) float32, snr_db (inf for a clean item), noise_kind, reverb).
        """
        cfg = self.config
        speech = np.asarray(speech, dtype=np.float32)
        # Drawn only when enabled, so that configs without clean items keep their exact random streams.
        if cfg.clean_prob > 0 and rng.random() < cfg.clean_prob:
            return self._finish(speech, speech.copy(), rng, snr_db=float("inf"), kind="none", reverb=False)
        noisy, target, snr_db, kind, reverb = self._degrade(speech, rng, speech_region, babble_source)
        if cfg.band_limit_to_target and cutoff_hz is not None:
            noisy = apply_lowpass(noisy, float(cutoff_hz), self.sample_rate)
        return self._finish(noisy, target, rng, snr_db, kind, reverb)

    def _degrade(self, speech, rng, speech_region, babble_source):
        """Room, noise and channel: `(noisy, target, snr_db, noise_kind, reverb)` before the level is set."""
        cfg, n = self.config, len(speech)
        # 1. Room: the mixture holds the reverberant speech; the target is dry or early-reverberant speech.
        wet, target, reverb = speech, speech, False
        if rng.random() < cfg.reverb_prob:
            rir = synth_rir(rng.uniform(*cfg.rt60_s), rng, self.sample_rate, drr_db=rng.uniform(*cfg.drr_db))
            wet, target = apply_rir(speech, rir, 0.05 if cfg.reverb_target == "early" else None, self.sample_rate)
            reverb = True
        # 2. Noise at a uniform random SNR relative to the speech that is in the mixture.
        noise, kind = self._noise(n, rng, babble_source)
        snr_db = float(rng.uniform(*cfg.snr_db))
        noisy, _ = mix_at_snr(wet, noise, snr_db, speech_region)
        # 3. Channel of the *input* only: the model must undo colouring and bandwidth loss, so the target stays clean.
        if rng.random() < cfg.eq_prob:
            noisy = random_eq(noisy, rng, self.sample_rate, cfg.eq_max_gain_db)
        if rng.random() < cfg.lowpass_prob:
            noisy = apply_lowpass(noisy, rng.uniform(*cfg.lowpass_hz), self.sample_rate)
        return noisy, target, snr_db, kind, reverb

    def _finish(self, noisy, target, rng, snr_db, kind, reverb) -> dict[str, Any]:
        cfg = self.config
        # 4. Level: one gain for both keeps their relation; then scale down (never clip) if a peak is too high.
        if cfg.level_dbfs is not None:
            gain = np.float32(set_level(noisy, rng.uniform(*cfg.level_dbfs)))
            noisy, target = noisy * gain, target * gain
        noisy, target = avoid_clipping(noisy.astype(np.float32), target.astype(np.float32), peak=cfg.clip_peak)
        return dict(clean=target, noisy=noisy, snr_db=snr_db, noise_kind=kind, reverb=reverb)


def augment_config(augment: AugmentConfig | bool | None, snr_db: tuple[float, float] | None) -> AugmentConfig:
    """AugmentConfig from the datasets' `augment` argument: a config, True/None (all on) or False (plain mixing)."""
    if isinstance(augment, AugmentConfig):
        return augment if snr_db is None else replace(augment, snr_db=tuple(snr_db))
    snr = tuple(snr_db) if snr_db is not None else AugmentConfig.snr_db
    return AugmentConfig.none(snr_db=snr) if augment is False else AugmentConfig(snr_db=snr)
