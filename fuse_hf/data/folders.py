# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Datasets of audio files on disk: paired clean/noisy folders, speech mixed with noise on the fly, and the fixed
validation pairs of the training stages."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import SAMPLE_RATE, AudioDataWarning
from .base import Item, SeededDataset, make_item
from .decode import BadAudioError, checked, crop_pair, decode_audio, load_segment, tile_to
from .files import PathLike, as_file_list, check_folder, manifest_cutoffs, wideband_weights
from .mixer import AugmentConfig, BabbleSource, Mixer, augment_config


class _KnownBadFile(BadAudioError):
    """A file already reported as bad: redraw without warning again."""


class PairedFolderDataset(SeededDataset):
    """Paired ``clean/`` + ``noisy/`` folders with matching relative file names, randomly cropped.

    Layouts: ``root/{clean,noisy}`` (VoiceBank-DEMAND) or ``root/<split>/{clean,noisy}`` (sgmse's
    ``base/{train,valid,test}``). Files pair by relative path without extension (``a/b.wav`` pairs ``a/b.flac``).

    Args:
        root: the folder holding ``clean/`` and ``noisy/``, or its parent when `split` is given.
        segment_samples: crop length in samples (None: whole clips, batch size 1).
        sample_rate: output rate in Hz; other rates are resampled with soxr.
        seed: base seed.
        split: optional sub-folder (``"train"``, ``"valid"``, ``"test"``).
        min_duration_s: shorter clips are skipped with a warning.

    Raises:
        ValueError: a folder is missing, is empty, or some names have no partner (the first few are listed). Unpaired
            files are an error rather than skipped because they usually mean a wrong folder or an incomplete copy.

    Item: ``dict(clean=(segment_samples,), noisy=(segment_samples,))`` float32, cropped at the same offset.
    """

    def __init__(
        self,
        root: PathLike,
        segment_samples: int | None,
        sample_rate: int = SAMPLE_RATE,
        seed: int = 0,
        split: str | None = None,
        min_duration_s: float = 0.02,
    ):
        super().__init__(seed, sample_rate, min_duration_s)
        base = check_folder(root, "Paired data folder")
        if split is not None:
            base = check_folder(base / split, f"Split `{split}` of")
        for sub in ("clean", "noisy"):
            if not (base / sub).is_dir():
                found = sorted(p.name for p in base.iterdir() if p.is_dir())
                raise ValueError(
                    f"Paired data folder `{base}`: no `{sub}/` sub-folder (found {found}). Expected "
                    "`clean/` and `noisy/` with matching file names, or pass split=train/valid/test."
                )
        self.root = base
        self.segment_samples = segment_samples
        self.pairs = self._pair(
            as_file_list(base / "clean", "Clean files"), as_file_list(base / "noisy", "Noisy files")
        )

    def _pair(self, clean: list[Path], noisy: list[Path]) -> list[tuple[Path, Path]]:
        def keyed(files, sub):
            keys = {}
            for p in files:
                key = p.relative_to(self.root / sub).with_suffix("").as_posix()
                if key in keys:
                    raise ValueError(
                        f"{self.root / sub}: `{keys[key].name}` and `{p.name}` share the name `{key}`. "
                        "Keep one file per name."
                    )
                keys[key] = p
            return keys

        c, n = keyed(clean, "clean"), keyed(noisy, "noisy")
        if not c:
            raise ValueError(f"{self.root / 'clean'}: no audio files found.")
        only_clean, only_noisy = sorted(set(c) - set(n)), sorted(set(n) - set(c))
        if only_clean or only_noisy:
            raise ValueError(
                f"Paired data folder `{self.root}`: {len(only_clean)} clean file(s) without a noisy partner "
                f"(e.g. {only_clean[:3]}) and {len(only_noisy)} noisy file(s) without a clean partner "
                f"(e.g. {only_noisy[:3]}). Names must match between clean/ and noisy/."
            )
        return [(c[k], n[k]) for k in sorted(c)]

    def __len__(self) -> int:
        return len(self.pairs)

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        clean_path, noisy_path = self.pairs[index]
        clean = checked(self._read(clean_path), str(clean_path), self.min_samples)
        noisy = checked(self._read(noisy_path), str(noisy_path), self.min_samples)
        return make_item(*crop_pair(clean, noisy, self.segment_samples, rng))

    def _read(self, path: Path) -> np.ndarray:
        # Whole files: VoiceBank clips are a few seconds. Reading both fully keeps their alignment exact, even when
        # they are stored at different sample rates.
        return decode_audio(path, self.sample_rate)


class MixingDataset(SeededDataset):
    """Speech mixed with noise on the fly (see `Mixer` and `AugmentConfig`).

    Args:
        speech: a folder (listed recursively) or a list of speech files; these are the clean targets.
        noise: a folder or list of recorded noises; None or empty: synthetic noises only.
        segment_samples: fixed item length in samples.
        snr_db: uniform SNR range in dB; None: ``augment.snr_db`` (default -5..20 dB).
        sample_rate: Hz.
        seed: base seed.
        augment: `AugmentConfig`, or False for plain mixing (`AugmentConfig.none`). Default: all augmentations.
        length: items per epoch (default: the number of speech files).
        manifest: the corpus' ``manifest.csv``: speech files with ``hf4k_db > wideband_min_hf4k_db`` are drawn
            `wideband_weight` times as often (the corpus' Dutch speech is band-limited near 4 kHz).
        speech_weights: explicit sampling weights (len(speech),), instead of a manifest.
        min_duration_s: shorter speech files are skipped with a warning.

    Item i at epoch e: ``dict(clean=(segment_samples,), noisy=(segment_samples,))`` float32, a pure function of
    (seed, e, i). Speech files are drawn with replacement (weighted), so epochs differ in content, not only in order.
    """

    def __init__(
        self,
        speech: PathLike | Sequence[PathLike],
        noise: PathLike | Sequence[PathLike] | None,
        segment_samples: int,
        snr_db: tuple[float, float] | None = None,
        sample_rate: int = SAMPLE_RATE,
        seed: int = 0,
        augment: AugmentConfig | bool | None = None,
        length: int | None = None,
        manifest: PathLike | None = None,
        wideband_weight: float = 4.0,
        wideband_min_hf4k_db: float = -30.0,
        speech_weights: Sequence[float] | None = None,
        min_duration_s: float = 0.02,
    ):
        super().__init__(seed, sample_rate, min_duration_s)
        if segment_samples is None or int(segment_samples) <= 0:
            raise ValueError(f"MixingDataset: segment_samples={segment_samples}; pass a positive length in samples.")
        self.speech_files = as_file_list(speech, "Speech files")
        if not self.speech_files:
            raise ValueError(f"MixingDataset: no speech audio files in {speech}.")
        noise_files = as_file_list(noise, "Noise files")
        self.mixer = Mixer(noise_files, augment_config(augment, snr_db), sample_rate, self.min_samples)
        self.segment_samples = int(segment_samples)
        self.length = int(length) if length is not None else len(self.speech_files)
        if speech_weights is not None:
            w = np.asarray(speech_weights, dtype=np.float64)
            if w.shape != (len(self.speech_files),) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(
                    f"MixingDataset: speech_weights must be {len(self.speech_files)} non-negative numbers."
                )
            self.weights = w / w.sum()
        elif manifest is not None:
            self.weights = wideband_weights(self.speech_files, manifest, wideband_weight, wideband_min_hf4k_db)
        else:
            self.weights = None
        # Each target's bandwidth, for AugmentConfig.band_limit_to_target.
        self.cutoffs = manifest_cutoffs(self.speech_files, manifest) if manifest is not None else None
        self._bad: set = set()

    @property
    def noise_files(self) -> list[Path]:
        return self.mixer.noise_files

    def __len__(self) -> int:
        return self.length

    def _draw_speech(self, rng: np.random.Generator) -> int:
        n = len(self.speech_files)
        return int(rng.choice(n, p=self.weights)) if self.weights is not None else int(rng.integers(n))

    def _babble_source(self, exclude: int) -> BabbleSource:
        def source(rng: np.random.Generator, talkers: int) -> list[np.ndarray]:
            out = []
            for _ in range(talkers):
                k = int(rng.integers(len(self.speech_files)))
                if k == exclude or self.speech_files[k] in self._bad:
                    continue
                try:
                    # Loop each talker so babble covers the segment (no gaps where the SNR would jump).
                    segment, region = load_segment(self.speech_files[k], None, rng, self.sample_rate, self.min_samples)
                    out.append(tile_to(segment, self.segment_samples, rng))
                except BadAudioError:
                    self._bad.add(self.speech_files[k])
            return out

        return source

    def mix(self, rng: np.random.Generator, speech_index: int | None = None) -> dict[str, Any]:
        """One mixture from `rng`: dict(clean, noisy (samples,) float32, snr_db, noise_kind, reverb, speech (path)).

        The speech file is drawn from `rng` (weighted) unless `speech_index` is given.
        """
        k = self._draw_speech(rng) if speech_index is None else int(speech_index)
        path = self.speech_files[k]
        if path in self._bad:
            raise _KnownBadFile(f"{path}: known bad file.")
        try:
            speech, region = load_segment(path, self.segment_samples, rng, self.sample_rate, self.min_samples)
        except BadAudioError:
            self._bad.add(path)
            raise
        cutoff = self.cutoffs[k] if self.cutoffs is not None else None
        out = self.mixer(speech, rng, region, self._babble_source(k), cutoff_hz=cutoff)
        out["speech"] = path
        return out

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        out = self.mix(rng)
        return make_item(out["clean"], out["noisy"])

    def _warn_skip(self, err: Exception) -> None:
        if not isinstance(err, _KnownBadFile):  # warn once per file
            super()._warn_skip(err)


def make_validation_pairs(
    speech_files: Sequence[PathLike],
    noise_files: Sequence[PathLike],
    n: int,
    segment_samples: int,
    seed: int = 0,
    snr_db: tuple[float, float] = (-5.0, 15.0),
    sample_rate: int = SAMPLE_RATE,
    synthetic_noises: tuple[str, ...] = ("white", "pink", "babble"),
    synthetic_noise_prob: float = 0.3,
) -> list[dict[str, Any]]:
    """A fixed, seeded validation set: the same `n` pairs on every call.

    Speech files are spread evenly over `speech_files` (pair i uses file ``i * len // n``), each cropped to
    `segment_samples` (zero-padded if shorter); noise is a recorded file or, with `synthetic_noise_prob`, white or
    pink noise or babble of other validation speech; SNR uniform in `snr_db`; no reverb, EQ or band-limiting (they
    would blur what the metrics measure). A fixed RMS level of -25 dBFS keeps the pairs comparable.

    Returns:
        list of dict(clean (segment_samples,) np.float32, noisy (segment_samples,) np.float32, snr_db (float),
        name (str, e.g. ``"val003_<speech stem>_pink_+4.2dB"``)).
    """
    speech_files = [Path(p) for p in speech_files]
    if not speech_files:
        raise ValueError("make_validation_pairs: no speech files.")
    config = AugmentConfig.none(
        snr_db=snr_db,
        synthetic_noise_prob=synthetic_noise_prob,
        synthetic_noises=tuple(synthetic_noises),
        level_dbfs=(-25.0, -25.0),
    )
    dataset = MixingDataset(speech_files, list(noise_files), segment_samples, None, sample_rate, seed, config)
    pairs, skipped = [], 0
    i = 0
    while len(pairs) < n:
        # Spread the pairs over the whole list (files sorted by name cluster by scene/speaker); a bad file shifts
        # the following pairs to the next files.
        k = (i * len(speech_files) // n + skipped) % len(speech_files)
        try:
            out = dataset.mix(np.random.default_rng([seed, 0, i, skipped]), speech_index=k)
        except BadAudioError as err:
            warnings.warn(f"skipping bad validation file: {err}", AudioDataWarning, stacklevel=2)
            skipped += 1
            if skipped > len(speech_files):
                raise ValueError("make_validation_pairs: no readable speech files.") from err
            continue
        name = f"val{i:03d}_{speech_files[k].stem}_{out['noise_kind']}_{out['snr_db']:+.1f}dB"
        pairs.append(dict(clean=out["clean"], noisy=out["noisy"], snr_db=out["snr_db"], name=name))
        i += 1
    return pairs
