# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Hugging Face `datasets` glue: a Hub name, local data files or a `save_to_disk` folder with a clean and a noisy
audio column, or a speech column mixed with noise files; map-style (`HFAudioDataset`) or streamed
(`HFStreamingAudioDataset`).

Audio cells are read with ``Audio(decode=False)`` and decoded with soundfile (`decode_audio_value`): `datasets`' own
audio decoding needs torchcodec, which does not load here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import SAMPLE_RATE, AudioDataWarning
from .base import Item, SeededDataset, make_item, min_samples
from .decode import (
    BadAudioError,
    checked,
    crop_pair,
    decode_audio_value,
    pad_to,
    random_crop_offset,
    random_pad_offset,
    tile_to,
)
from .files import PathLike, as_file_list
from .mixer import AugmentConfig, BabbleSource, Mixer, augment_config


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def load_hf_dataset(
    dataset_name_or_path: str,
    split: str = "train",
    streaming: bool = False,
    config_name: str | None = None,
    data_files: Any = None,
    cache_dir: str | None = None,
):
    """Load a `datasets` split: a `save_to_disk` folder (`load_from_disk`), else `load_dataset` (Hub name, local
    folder of parquet/arrow/csv files, or a builder name such as ``"parquet"`` with `data_files`).

    ``streaming=True`` returns an `IterableDataset` (a saved folder is converted with ``to_iterable_dataset``).
    """
    import datasets

    path = Path(dataset_name_or_path).expanduser()
    if _is_saved_dataset(path):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"Dataset `{path}`: no split {split!r} (found {sorted(ds)}). Pass one of them.")
            ds = ds[split]
        return ds.to_iterable_dataset(num_shards=max(1, min(64, len(ds)))) if streaming else ds
    try:
        return datasets.load_dataset(
            dataset_name_or_path,
            config_name,
            split=split,
            streaming=streaming,
            data_files=data_files,
            cache_dir=cache_dir,
        )
    except Exception as err:  # datasets wraps the ImportError in a DatasetGenerationError
        if _mentions_torchcodec(err):
            raise ValueError(
                f"Dataset `{dataset_name_or_path}`: `datasets` needs torchcodec to build audio columns from an "
                "audio folder, and it does not load here. Use --train_data_dir (clean/ + noisy/ folders) or "
                "--speech_dir/--noise_dir for folders of audio, or a dataset saved as parquet/arrow."
            ) from err
        raise


def _node_shard(dataset, dataset_name_or_path, split, streaming, config_name, data_files, cache_dir, rank, world_size):
    """The given `datasets` object (or the loaded split), cut to this node's shard when `world_size > 1`."""
    ds = (
        dataset
        if dataset is not None or dataset_name_or_path is None
        else load_hf_dataset(dataset_name_or_path, split, streaming, config_name, data_files, cache_dir)
    )
    if world_size > 1:
        from datasets.distributed import split_dataset_by_node

        ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
    return ds


def _mentions_torchcodec(err: BaseException) -> bool:
    while err is not None:
        if "torchcodec" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _undecoded(ds, columns: Sequence[str]):
    """Cast Audio columns to ``Audio(decode=False)``: rows then hold {bytes, path} (datasets' decoding needs
    torchcodec, which does not load here)."""
    from datasets import Audio

    features = getattr(ds, "features", None)
    if features is None:  # a stream with unknown features: values arrive undecoded anyway
        return ds
    missing = [c for c in columns if c not in features]
    if missing:
        raise ValueError(f"Dataset: no column {missing} (found {sorted(features)}). Set clean_column/noisy_column.")
    for c in columns:
        if isinstance(features[c], Audio) and features[c].decode:
            ds = ds.cast_column(c, Audio(sampling_rate=features[c].sampling_rate, decode=False))
    return ds


class _HFExample:
    """Decode + crop (+ mix) one row of a `datasets` split -> (clean, noisy) (samples,) float32."""

    def __init__(self, clean_column, noisy_column, segment_samples, sample_rate, min_samples, mixer):
        self.clean_column, self.noisy_column = clean_column, noisy_column
        self.segment_samples, self.sample_rate, self.min_samples = segment_samples, sample_rate, min_samples
        self.mixer = mixer

    def decode(self, row: Mapping[str, Any], column: str) -> np.ndarray:
        cell = row[column]
        where = f"column {column!r}" + (f" ({cell['path']})" if isinstance(cell, Mapping) and cell.get("path") else "")
        try:
            audio = decode_audio_value(cell, self.sample_rate)
        except BadAudioError as err:
            raise BadAudioError(f"{where}: {err}") from err
        return checked(audio, where, self.min_samples)

    def __call__(self, row, rng, babble_source=None) -> tuple[np.ndarray, np.ndarray]:
        clean = self.decode(row, self.clean_column)
        if self.noisy_column is not None:
            return crop_pair(clean, self.decode(row, self.noisy_column), self.segment_samples, rng)
        start = random_crop_offset(len(clean), self.segment_samples, rng)
        clip = clean[start : start + self.segment_samples]
        offset = random_pad_offset(len(clip), self.segment_samples, rng)
        speech = pad_to(clip, self.segment_samples, offset)
        out = self.mixer(speech, rng, slice(offset, offset + len(clip)), babble_source)
        return out["clean"], out["noisy"]


def _hf_setup(ds, clean_column, noisy_column, noise, segment_samples, sample_rate, min_duration_s, augment, snr_db):
    if ds is None:
        raise ValueError("HF dataset: pass a dataset name or path (or an already loaded `dataset=`).")
    if noisy_column is None and noise is None:
        raise ValueError(
            "HF dataset: noisy_column=None (speech only) needs `noise` files or folder to mix with, "
            "or pass noisy_column."
        )
    if segment_samples is None and noisy_column is None:
        raise ValueError("HF dataset: mixing needs a fixed segment_samples.")
    ds = _undecoded(ds, [c for c in (clean_column, noisy_column) if c is not None])
    mixer = None
    if noisy_column is None:
        mixer = Mixer(as_file_list(noise, "Noise files"), augment_config(augment, snr_db), sample_rate)
    return ds, _HFExample(
        clean_column, noisy_column, segment_samples, sample_rate, min_samples(min_duration_s, sample_rate), mixer
    )


class HFAudioDataset(SeededDataset):
    """A map-style Hugging Face dataset of (clean, noisy) audio columns, or of speech mixed with noise files.

    Args:
        dataset_name_or_path: Hub name, local folder of data files, or a `save_to_disk` folder.
        split: e.g. ``"train"``, ``"validation"``.
        segment_samples: crop length in samples (None: whole clips, paired only).
        clean_column, noisy_column: audio columns. ``noisy_column=None``: clean speech only, mixed with `noise`
            (babble from other rows of the split).
        noise: noise folder or files for speech-only datasets.
        rank, world_size: keep only this node's contiguous shard (``datasets.distributed.split_dataset_by_node``).
            Leave at 0/1 when a distributed sampler (Accelerate) already shards the indices.
        augment, snr_db: as in `MixingDataset` (speech-only datasets).
        dataset: an already loaded `datasets.Dataset` instead of a name.

    Audio cells are read with ``Audio(decode=False)`` and decoded with soundfile. Unreadable or too short rows are
    skipped with an `AudioDataWarning` (another row is drawn deterministically).
    """

    def __init__(
        self,
        dataset_name_or_path: str | None,
        split: str = "train",
        segment_samples: int | None = None,
        clean_column: str = "clean",
        noisy_column: str | None = "noisy",
        noise: PathLike | Sequence[PathLike] | None = None,
        sample_rate: int = SAMPLE_RATE,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: AugmentConfig | bool | None = None,
        snr_db: tuple[float, float] | None = None,
        config_name: str | None = None,
        data_files: Any = None,
        cache_dir: str | None = None,
        min_duration_s: float = 0.02,
        dataset=None,
    ):
        super().__init__(seed, sample_rate, min_duration_s)
        ds = _node_shard(
            dataset, dataset_name_or_path, split, False, config_name, data_files, cache_dir, rank, world_size
        )
        self.dataset, self.example = _hf_setup(
            ds, clean_column, noisy_column, noise, segment_samples, sample_rate, min_duration_s, augment, snr_db
        )
        if len(self.dataset) == 0:
            raise ValueError(f"Dataset `{dataset_name_or_path}` split {split!r}: no rows.")

    def __len__(self) -> int:
        return len(self.dataset)

    def _babble_source(self, exclude: int) -> BabbleSource:
        def source(rng, talkers):
            out = []
            for _ in range(talkers):
                k = int(rng.integers(len(self.dataset)))
                if k == exclude:
                    continue
                try:
                    out.append(
                        tile_to(
                            self.example.decode(self.dataset[k], self.example.clean_column),
                            self.example.segment_samples,
                            rng,
                        )
                    )
                except BadAudioError:
                    pass
            return out

        return source

    def _get(self, index: int, rng: np.random.Generator) -> Item:
        babble_source = self._babble_source(index) if self.example.mixer is not None else None
        try:
            return make_item(*self.example(self.dataset[index], rng, babble_source))
        except BadAudioError as err:
            raise BadAudioError(f"row {index}, {err}") from err


class HFStreamingAudioDataset(torch.utils.data.IterableDataset):
    """A streamed Hugging Face dataset (``streaming=True``) yielding the same items as `HFAudioDataset`.

    Multi-node: each of `world_size` ranks reads its own shards (``split_dataset_by_node``); DataLoader workers split
    the shards of their rank further (datasets does this itself). ``shuffle_buffer > 0`` shuffles with
    ``seed + epoch``. Crops are drawn from ``default_rng([seed, epoch, rank, worker, k])`` for the k-th row a worker
    reads, so a run is reproducible for a fixed (world_size, num_workers). There is no babble for speech-only
    streams (no random access to other rows). Bad rows are skipped with an `AudioDataWarning`.
    """

    def __init__(
        self,
        dataset_name_or_path: str | None,
        split: str = "train",
        segment_samples: int | None = None,
        clean_column: str = "clean",
        noisy_column: str | None = "noisy",
        noise: PathLike | Sequence[PathLike] | None = None,
        sample_rate: int = SAMPLE_RATE,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle_buffer: int = 0,
        augment: AugmentConfig | bool | None = None,
        snr_db: tuple[float, float] | None = None,
        config_name: str | None = None,
        data_files: Any = None,
        cache_dir: str | None = None,
        min_duration_s: float = 0.02,
        dataset=None,
    ):
        super().__init__()
        ds = _node_shard(
            dataset, dataset_name_or_path, split, True, config_name, data_files, cache_dir, rank, world_size
        )
        self.dataset, self.example = _hf_setup(
            ds, clean_column, noisy_column, noise, segment_samples, sample_rate, min_duration_s, augment, snr_db
        )
        self.seed, self.epoch, self.rank, self.shuffle_buffer = int(seed), 0, int(rank), int(shuffle_buffer)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Item]:
        ds = self.dataset
        if self.shuffle_buffer > 0:
            ds = ds.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        ds.set_epoch(self.epoch)  # datasets reshuffles shards/buffer with seed + epoch
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        for k, row in enumerate(ds):
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, k])
            try:
                yield make_item(*self.example(row, rng))
            except BadAudioError as err:
                warnings.warn(f"skipping bad example: {err}", AudioDataWarning, stacklevel=2)
