# Copyright 2026 The fuse-hf authors. Licensed under the Apache License, Version 2.0.
"""Training data for FUSE: paired folders, on-the-fly mixing and Hugging Face `datasets`.

Every dataset here yields the same item: ``dict(clean=Tensor (samples,), noisy=Tensor (samples,))``, float32
waveforms in [-1, 1] at ``sample_rate`` (16 kHz by default), mono, of a fixed length ``segment_samples``.
`collate` stacks a list of items into ``(batch, samples)`` tensors.

Three sources, chosen by `build_dataset` / `build_train_dataset` (exactly one per run):

* `PairedFolderDataset`: ``clean/`` + ``noisy/`` folders with matching relative names (VoiceBank-DEMAND, sgmse's
  ``base/{train,valid,test}/{clean,noisy}``).
* `MixingDataset`: speech and noise files mixed on the fly at random SNRs, with the augmentations of `AugmentConfig`
  (synthetic noises, reverberation, EQ and band-limiting of the input, random level).
* `HFAudioDataset` / `HFStreamingAudioDataset`: a Hugging Face dataset (Hub name, local parquet/arrow files or a
  `save_to_disk` folder) with a clean and a noisy audio column, or a speech column mixed with noise files.

Determinism: item ``i`` at epoch ``e`` is a pure function of ``(seed, e, i)``; every random draw comes from
``numpy.random.default_rng([seed, e, i])``, never from global state, so DataLoader workers and resumed runs see the
same data. Call ``dataset.set_epoch(e)`` before each epoch (with ``persistent_workers=True`` the workers keep the
epoch they were started with, so leave it off or rebuild the loader).

Bad data policy: a missing folder, paired folders with unpaired names or an unknown column is a `ValueError` at
construction. A non-audio file in a folder is skipped with an `AudioDataWarning` when the file list is built. A file
that cannot be decoded, holds NaN/inf or is shorter than ``min_duration_s`` is found when it is first read: it is
skipped with an `AudioDataWarning` and the item is drawn again from another file, chosen deterministically, so an
epoch never stops in the middle.

Audio is read through `fuse_hf.audio` (soundfile and soxr); torchaudio and torchcodec are not used (they do not load
here, and `datasets`' own audio decoding needs torchcodec, hence ``Audio(decode=False)`` in `hf`).

Modules, by what they are:

* `files`: a folder or a list of audio files, the corpus manifest and its wideband weights;
* `decode`: decoding files and `datasets` cells to mono float32, random crops and padding, `BadAudioError`;
* `augment`: levels and SNR mixing, synthetic noises, room impulse responses, EQ and band-limiting;
* `mixer`: `AugmentConfig` and the `Mixer` that turns clean speech into a (clean, noisy) pair;
* `base`, `folders`, `hf`: the dataset classes (on-disk folders and files; Hugging Face `datasets`);
* `build`: `build_dataset` / `build_train_dataset` and `collate`, the package face.
"""

from ..audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioDataWarning, avoid_clipping, list_audio_files
from .augment import (
    apply_highpass,
    apply_lowpass,
    apply_rir,
    babble,
    brown_noise,
    colored_noise,
    mains_hum,
    mix_at_snr,
    pink_noise,
    power,
    random_eq,
    rms_dbfs,
    set_level,
    synth_rir,
    white_noise,
)
from .build import build_dataset, build_train_dataset, collate
from .decode import (
    BadAudioError,
    crop_pair,
    decode_audio,
    decode_audio_value,
    load_segment,
    pad_to,
    random_crop_offset,
    tile_to,
)
from .files import find_manifest, manifest_cutoffs, read_manifest, wideband_weights
from .folders import MixingDataset, PairedFolderDataset, make_validation_pairs
from .hf import HFAudioDataset, HFStreamingAudioDataset, load_hf_dataset
from .mixer import SYNTHETIC_NOISES, AugmentConfig, Mixer

# AUDIO_EXTENSIONS, AudioDataWarning, avoid_clipping and list_audio_files live in fuse_hf.audio; they are the same
# objects here, so that `from fuse_hf.data import list_audio_files` keeps working.
__all__ = [
    "AUDIO_EXTENSIONS",
    "SAMPLE_RATE",
    "SYNTHETIC_NOISES",
    "AudioDataWarning",
    "AugmentConfig",
    "BadAudioError",
    "HFAudioDataset",
    "HFStreamingAudioDataset",
    "MixingDataset",
    "Mixer",
    "PairedFolderDataset",
    "apply_highpass",
    "apply_lowpass",
    "apply_rir",
    "avoid_clipping",
    "babble",
    "brown_noise",
    "build_dataset",
    "build_train_dataset",
    "collate",
    "colored_noise",
    "crop_pair",
    "decode_audio",
    "decode_audio_value",
    "find_manifest",
    "list_audio_files",
    "load_hf_dataset",
    "load_segment",
    "mains_hum",
    "make_validation_pairs",
    "manifest_cutoffs",
    "mix_at_snr",
    "pad_to",
    "pink_noise",
    "power",
    "random_crop_offset",
    "random_eq",
    "read_manifest",
    "rms_dbfs",
    "set_level",
    "synth_rir",
    "tile_to",
    "white_noise",
    "wideband_weights",
]
