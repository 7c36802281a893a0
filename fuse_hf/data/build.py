# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""The package face: the training dataset from exactly one source (`build_dataset`, `build_train_dataset`) and the
batch of its items (`collate`)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..audio import SAMPLE_RATE
from .files import PathLike, find_manifest, first_folder
from .folders import MixingDataset, PairedFolderDataset
from .hf import HFAudioDataset, HFStreamingAudioDataset
from .mixer import AugmentConfig


def build_dataset(
    *,
    train_data_dir: PathLike | None = None,
    speech_dir: PathLike | Sequence[PathLike] | None = None,
    noise_dir: PathLike | Sequence[PathLike] | None = None,
    dataset_name: str | None = None,
    segment_samples: int,
    split: str | None = None,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    snr_db: tuple[float, float] = (-5.0, 20.0),
    augment: AugmentConfig | bool | None = None,
    manifest: PathLike | str | None = "auto",
    wideband_weight: float = 4.0,
    length: int | None = None,
    dataset_config_name: str | None = None,
    clean_column: str = "clean",
    noisy_column: str | None = "noisy",
    streaming: bool = False,
    shuffle_buffer: int = 0,
    rank: int = 0,
    world_size: int = 1,
    cache_dir: str | None = None,
):
    """The training dataset from exactly one source:

    * ``train_data_dir``: `PairedFolderDataset` (``split`` selects ``root/<split>`` when given);
    * ``speech_dir`` (+ optional ``noise_dir``): `MixingDataset`; ``manifest="auto"`` looks for the corpus'
      ``manifest.csv`` next to or above ``speech_dir`` (the first, when several) to weight wideband speech up and
      read each target's cutoff (None disables); each of the two takes one folder or several;
    * ``dataset_name``: `HFAudioDataset`, or `HFStreamingAudioDataset` with ``streaming=True``
      (``split`` defaults to ``"train"``; ``noise_dir`` mixes a speech-only dataset when ``noisy_column=None``).

    Raises:
        ValueError: none or several sources are given.
    """
    given = [
        name
        for name, v in (("train_data_dir", train_data_dir), ("speech_dir", speech_dir), ("dataset_name", dataset_name))
        if v
    ]
    if len(given) != 1:
        raise ValueError(
            f"Training data: got {given or 'no source'}. Pass exactly one of --train_data_dir (clean/ + noisy/ "
            "folders), --speech_dir with --noise_dir (on-the-fly mixing) or --dataset_name (Hugging Face datasets)."
        )
    if noise_dir and given[0] == "train_data_dir":
        raise ValueError(
            "Training data: --noise_dir is used with --speech_dir or --dataset_name, not with --train_data_dir."
        )
    if train_data_dir:
        return PairedFolderDataset(train_data_dir, segment_samples, sample_rate, seed, split=split)
    if speech_dir:
        if manifest == "auto":
            manifest = find_manifest(first_folder(speech_dir))
        if not noise_dir:
            warnings.warn(
                "Training data: no --noise_dir; mixing with synthetic noises only (white, pink, brown, hum, babble).",
                UserWarning,
                stacklevel=2,
            )
        return MixingDataset(
            speech_dir,
            noise_dir,
            segment_samples,
            snr_db,
            sample_rate,
            seed,
            augment,
            length,
            manifest=manifest,
            wideband_weight=wideband_weight,
        )
    kwargs = dict(
        split=split or "train",
        segment_samples=segment_samples,
        clean_column=clean_column,
        noisy_column=noisy_column,
        noise=noise_dir,
        sample_rate=sample_rate,
        seed=seed,
        rank=rank,
        world_size=world_size,
        augment=augment,
        snr_db=snr_db,
        config_name=dataset_config_name,
        cache_dir=cache_dir,
    )
    if streaming:
        return HFStreamingAudioDataset(dataset_name, shuffle_buffer=shuffle_buffer, **kwargs)
    return HFAudioDataset(dataset_name, **kwargs)


def build_train_dataset(args: Any):
    """`build_dataset` from an argparse Namespace / config object (missing attributes take their defaults).

    Reads: train_data_dir, speech_dir, noise_dir, dataset_name, dataset_config_name, train_split, segment_samples
    (or segment_seconds), sample_rate, seed, snr_db_min/snr_db_max, augment (bool), manifest, wideband_weight,
    clean_column, noisy_column, streaming, shuffle_buffer, rank/world_size (0/1: let Accelerate shard), cache_dir.
    """

    def get(name, default=None):
        value = getattr(args, name, None)
        return default if value is None else value

    sample_rate = int(get("sample_rate", SAMPLE_RATE))
    segment = get("segment_samples")
    if segment is None:
        seconds = get("segment_seconds")
        if seconds is None:
            raise ValueError("Training data: set segment_samples or segment_seconds (the crop length).")
        segment = int(round(float(seconds) * sample_rate))
    augment = get("augment")
    augment = None if augment is None or augment is True else bool(augment)
    snr_db = (float(get("snr_db_min", -5.0)), float(get("snr_db_max", 20.0)))
    if get("augmentation") and augment is not False:
        augment = augment_config_from_mapping(get("augmentation"), snr_db)
    return build_dataset(
        train_data_dir=get("train_data_dir"),
        speech_dir=get("speech_dir"),
        noise_dir=get("noise_dir"),
        dataset_name=get("dataset_name"),
        segment_samples=int(segment),
        split=get("train_split"),
        sample_rate=sample_rate,
        seed=int(get("seed", 0)),
        snr_db=snr_db,
        augment=augment,
        manifest=get("manifest", "auto"),
        wideband_weight=float(get("wideband_weight", 4.0)),
        dataset_config_name=get("dataset_config_name"),
        clean_column=get("clean_column", "clean"),
        noisy_column=get("noisy_column", "noisy") if get("noisy_column", "noisy") != "none" else None,
        streaming=bool(get("streaming", False)),
        shuffle_buffer=int(get("shuffle_buffer", 0)),
        rank=int(get("rank", 0)),
        world_size=int(get("world_size", 1)),
        cache_dir=get("cache_dir"),
    )


def augment_config_from_mapping(options: Mapping[str, Any], snr_db: tuple[float, float]) -> AugmentConfig:
    """`AugmentConfig` from a config file's ``augmentation:`` section (field names as keys; lists become tuples).

    Raises:
        ValueError: a key that is not an `AugmentConfig` field, named with the allowed ones.
    """
    allowed = sorted(f.name for f in dataclasses.fields(AugmentConfig) if f.name != "snr_db")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"augmentation: unknown key(s) {unknown}; allowed: {allowed} (the SNR is snr_db_min/max).")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return AugmentConfig(snr_db=snr_db, **values)


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack items into ``dict(clean=(batch, samples), noisy=(batch, samples))``; other keys become lists.

    Raises:
        ValueError: items of different lengths (use a fixed segment_samples, or batch size 1 for whole clips).
    """
    if not batch:
        raise ValueError("collate: empty batch.")
    lengths = {int(item["clean"].shape[-1]) for item in batch} | {int(item["noisy"].shape[-1]) for item in batch}
    if len(lengths) != 1:
        raise ValueError(f"collate: items have different lengths {sorted(lengths)}. Set a fixed segment_samples.")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        out[key] = torch.stack([torch.as_tensor(v) for v in values]) if key in ("clean", "noisy") else values
    return out
