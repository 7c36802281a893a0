"""BEATs' front end: the Kaldi-compatible log-mel filterbank and its normalisation, as a transformers feature
extractor.

BEATs reads 16 kHz waveforms in [-1, 1] as a 128-bin Kaldi filterbank (``torchaudio.compliance.kaldi.fbank`` in
Microsoft's code, 25 ms Povey windows every 10 ms) normalised with the statistics of AudioSet,
``(fbank - 15.41663) / (2 * 6.55582)``. :func:`fbank` computes it in torch, in the same float32 arithmetic, so
that the output equals torchaudio's to the last bit (tests/fixtures/beats_golden.safetensors checks it);
:class:`BEATsFeatureExtractor` wraps it for `AutoFeatureExtractor` and pipelines.

Uploaded as Hub remote code next to ``modeling_beats.py``: imports only torch, numpy and transformers.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

# diffusers finds how to load a pipeline component by looking its base classes up in the component's module.
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin  # noqa: F401

__all__ = [
    "FBANK_MEAN",
    "FBANK_STD",
    "FRAME_LENGTH",
    "FRAME_SHIFT",
    "NUM_MEL_BINS",
    "SAMPLE_RATE",
    "BEATsFeatureExtractor",
    "fbank",
    "min_num_samples",
    "normalize_fbank",
    "num_frames",
]

SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_SHIFT = 160  # 10 ms at 16 kHz
FFT_SIZE = 512  # Kaldi rounds the frame up to a power of two
PREEMPHASIS = 0.97
LOW_FREQ = 20.0  # Hz; the high edge is Nyquist
# Kaldi floors the mel energies at float32 machine epsilon before the log.
LOG_FLOOR = float(torch.finfo(torch.float32).eps)
# Global statistics of the AudioSet filterbanks that every released BEATs checkpoint was trained with.
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582


@functools.cache
def _kaldi_mel_banks() -> torch.Tensor:
    """Kaldi's triangular mel filters, `(NUM_MEL_BINS, FFT_SIZE // 2 + 1)` float32, zero on the Nyquist bin.

    Computed in float32 in the same order as Kaldi / torchaudio so that the filters agree to the last bit.
    """
    nyquist = 0.5 * SAMPLE_RATE
    fft_bin_width = SAMPLE_RATE / FFT_SIZE
    mel_low = 1127.0 * math.log(1.0 + LOW_FREQ / 700.0)
    mel_high = 1127.0 * math.log(1.0 + nyquist / 700.0)
    mel_delta = (mel_high - mel_low) / (NUM_MEL_BINS + 1)

    band = torch.arange(NUM_MEL_BINS, dtype=torch.float32).unsqueeze(1)
    left = mel_low + band * mel_delta
    center = mel_low + (band + 1.0) * mel_delta
    right = mel_low + (band + 2.0) * mel_delta
    fft_mel = 1127.0 * (1.0 + fft_bin_width * torch.arange(FFT_SIZE // 2, dtype=torch.float32) / 700.0).log()
    up_slope = (fft_mel - left) / (center - left)
    down_slope = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(up_slope, down_slope), min=0.0)
    # Kaldi's filters stop one bin short of Nyquist.
    return F.pad(banks, (0, 1))


@functools.cache
def _povey_window() -> torch.Tensor:
    """Kaldi's Povey window, `(FRAME_LENGTH,)` float32: a symmetric Hann window to the power 0.85."""
    return torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32).pow(0.85)


def num_frames(num_samples: int) -> int:
    """Filterbank frames of `num_samples` samples: the 25 ms frames every 10 ms that fit entirely (Kaldi's
    ``snip_edges``), ``1 + (num_samples - 400) // 160``."""
    return 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def min_num_samples(input_patch_size: int = 16) -> int:
    """Shortest waveform (in 16 kHz samples) that yields one patch row: 2800 samples (175 ms) for 16x16 patches."""
    return FRAME_LENGTH + (input_patch_size - 1) * FRAME_SHIFT


def fbank(waveform: torch.Tensor) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank, as BEATs computes it (``torchaudio.compliance.kaldi.fbank``).

    The waveform is scaled to 16-bit integer range (x 2^15), cut into 25 ms frames every 10 ms (only frames
    that fit entirely, Kaldi's ``snip_edges``), each frame has its mean removed, is pre-emphasised (0.97, the
    first sample against itself), Povey-windowed and zero-padded to 512 samples; the power spectrum goes
    through 128 triangular mel filters (20 Hz to 8 kHz, Kaldi's mel scale) and the natural log of the energies,
    floored at float32 epsilon. No dither, no energy coefficient, no mean subtraction.

    Args:
        waveform: `(samples,)` or `(batch, samples)` float, 16 kHz, in [-1, 1]. Computed in float32.

    Returns:
        `(frames, 128)` or `(batch, frames, 128)` float32 log-mel energies, with
        ``frames = 1 + (samples - 400) // 160``.

    Raises:
        ValueError: the waveform has another rank or is shorter than one 25 ms frame (400 samples).
    """
    if waveform.dim() not in (1, 2):
        raise ValueError(
            f"fbank: waveform has shape {tuple(waveform.shape)}. Pass (samples,) or (batch, samples) at 16 kHz."
        )
    if waveform.shape[-1] < FRAME_LENGTH:
        raise ValueError(
            f"fbank: {waveform.shape[-1]} samples is shorter than one 25 ms frame ({FRAME_LENGTH} samples at "
            f"16 kHz). Pass a longer waveform."
        )
    device = waveform.device
    frames = (waveform.to(torch.float32) * 2**15).unfold(-1, FRAME_LENGTH, FRAME_SHIFT)  # (..., frames, 400)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - PREEMPHASIS * previous
    frames = frames * _povey_window().to(device)
    frames = F.pad(frames, (0, FFT_SIZE - FRAME_LENGTH))
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (..., frames, 257)
    mel = torch.matmul(power, _kaldi_mel_banks().to(device).T)
    return torch.clamp(mel, min=LOG_FLOOR).log()


def normalize_fbank(fbank_features: torch.Tensor, mean: float = FBANK_MEAN, std: float = FBANK_STD) -> torch.Tensor:
    """The official normalisation of a filterbank, ``(fbank - mean) / (2 * std)``: it divides by twice the
    standard deviation. Shape and dtype are kept."""
    return (fbank_features - mean) / (2 * std)


class BEATsFeatureExtractor(SequenceFeatureExtractor):
    r"""Turns 16 kHz audio into the normalised filterbank that [`BEATsModel`] reads (`input_features`).

    Clips of different lengths are right-padded with `padding_value` into one batch; `attention_mask` marks the
    real samples. The mask stays at the sample level because BEATs derives its token mask from the samples
    (the official grouping, or whole patch rows), see [`BEATsModel.forward`].

    Args:
        feature_size (`int`, defaults to 128): mel bins; BEATs' filterbank has 128.
        sampling_rate (`int`, defaults to 16000): the only rate BEATs reads; resample other audio first.
        padding_value (`float`, defaults to 0.0): the sample value of the padding.
        fbank_mean (`float`, defaults to 15.41663), fbank_std (`float`, defaults to 6.55582): the normalisation
            statistics, those of every released checkpoint.
        return_attention_mask (`bool`, defaults to True): whether `__call__` returns `attention_mask` by default.

    Example:

    ```py
    >>> import numpy as np
    >>> from fuse_hf.models.beats import BEATsFeatureExtractor
    >>> extractor = BEATsFeatureExtractor()
    >>> inputs = extractor([np.zeros(16000), np.zeros(8000)], sampling_rate=16000, return_tensors="pt")
    >>> inputs["input_features"].shape, inputs["attention_mask"].shape  # 98 frames of 10 ms
    (torch.Size([2, 98, 128]), torch.Size([2, 16000]))
    ```
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = NUM_MEL_BINS,
        sampling_rate: int = SAMPLE_RATE,
        padding_value: float = 0.0,
        fbank_mean: float = FBANK_MEAN,
        fbank_std: float = FBANK_STD,
        return_attention_mask: bool = True,
        **kwargs,
    ) -> None:
        if feature_size != NUM_MEL_BINS:
            raise ValueError(f"feature_size: {feature_size}; BEATs' Kaldi filterbank has {NUM_MEL_BINS} mel bins.")
        if sampling_rate != SAMPLE_RATE:
            raise ValueError(f"sampling_rate: {sampling_rate} Hz; BEATs' filterbank is defined at {SAMPLE_RATE} Hz.")
        if not fbank_std > 0:
            raise ValueError(f"fbank_std: {fbank_std}; the normalisation needs a positive standard deviation.")
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.fbank_mean = float(fbank_mean)
        self.fbank_std = float(fbank_std)

    def __call__(
        self,
        raw_speech: np.ndarray | torch.Tensor | list,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Normalised filterbanks of one clip or a batch.

        Args:
            raw_speech: a clip `(samples,)`, a batch `(batch, samples)` (numpy array or torch tensor), or a list of
                clips of any lengths; float, 16 kHz, in [-1, 1], at least 400 samples (one 25 ms frame).
            sampling_rate: the audio's rate in Hz. BEATs reads 16000 only; anything else is an error.
            padding: ``"longest"`` / True pads the clips of a list to the longest, ``"max_length"`` to
                `max_length`, ``"do_not_pad"`` / False requires equal lengths.
            max_length: the padded length in samples for ``padding="max_length"``.
            return_attention_mask: whether to return `attention_mask` (default: this extractor's setting).
            return_tensors: ``"pt"`` for torch tensors (computed on the device of a tensor input), ``"np"`` or
                None for numpy arrays.

        Returns:
            [`BatchFeature`] with `input_features` `(batch, frames, 128)` float32, ``frames = 1 + (samples -
            400) // 160`` of the padded length, and `attention_mask` `(batch, samples)` int32, 1 = real sample.

        Raises:
            ValueError: a rate other than 16 kHz, non-float audio, a wrong rank, a clip shorter than 400 samples,
                or lengths that the padding option does not allow.
        """
        if kwargs:
            raise ValueError(f"BEATsFeatureExtractor: unexpected arguments {sorted(kwargs)}.")
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"sampling_rate: {sampling_rate} Hz; BEATs reads {self.sampling_rate} Hz audio. Resample it first."
            )
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors: {return_tensors!r} is not 'pt', 'np' or None.")
        clips = _as_clips(raw_speech)
        waveform, attention_mask = self._pad(clips, padding, max_length)
        features = normalize_fbank(fbank(waveform), self.fbank_mean, self.fbank_std)
        data = {"input_features": features}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            data["attention_mask"] = attention_mask.to(torch.int32)
        if return_tensors != "pt":
            data = {key: value.cpu().numpy() for key, value in data.items()}
        return BatchFeature(data)

    def _pad(self, clips: list[torch.Tensor], padding: bool | str, max_length: int | None):
        """`(batch, samples)` float32 waveforms on the first clip's device and the bool mask of real samples."""
        lengths = [clip.shape[0] for clip in clips]
        if padding in ("longest", True):
            total = max(lengths)
        elif padding == "max_length":
            if max_length is None or max_length < max(lengths):
                raise ValueError(
                    f"max_length: {max_length}; padding='max_length' needs a length of at least the longest clip "
                    f"({max(lengths)} samples)."
                )
            total = max_length
        elif padding in ("do_not_pad", False):
            if len(set(lengths)) > 1:
                raise ValueError(f"padding: clips of {sorted(set(lengths))} samples need padding='longest'.")
            total = lengths[0]
        else:
            raise ValueError(f"padding: {padding!r} is not 'longest', 'max_length' or 'do_not_pad'.")
        if min(lengths) < FRAME_LENGTH:
            raise ValueError(
                f"raw_speech: a clip of {min(lengths)} samples is shorter than one 25 ms frame ({FRAME_LENGTH} "
                "samples at 16 kHz)."
            )
        device = clips[0].device
        if all(length == total for length in lengths):
            waveform = torch.stack([clip.to(device, torch.float32) for clip in clips])
            return waveform, torch.ones(waveform.shape, dtype=torch.bool, device=device)
        waveform = torch.full((len(clips), total), float(self.padding_value), dtype=torch.float32, device=device)
        for row, clip in enumerate(clips):
            waveform[row, : clip.shape[0]] = clip.to(device, torch.float32)
        positions = torch.arange(total, device=device)
        return waveform, positions[None, :] < torch.tensor(lengths, device=device)[:, None]


def _as_clips(raw_speech) -> list[torch.Tensor]:
    """One 1-D float tensor per clip (tensors keep their device; numpy arrays become CPU tensors)."""
    if isinstance(raw_speech, (list, tuple)) and raw_speech and np.isscalar(raw_speech[0]):
        raw_speech = np.asarray(raw_speech, dtype=np.float32)  # a clip given as a list of samples
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        if raw_speech.ndim not in (1, 2):
            raise ValueError(
                f"raw_speech: shape {tuple(raw_speech.shape)}; pass (samples,), (batch, samples) or a list of clips."
            )
        raw_speech = [raw_speech] if raw_speech.ndim == 1 else list(raw_speech)
    if not isinstance(raw_speech, (list, tuple)) or not raw_speech:
        raise ValueError(f"raw_speech: got {type(raw_speech).__name__}; pass a float array, tensor or list of clips.")
    clips = []
    for clip in raw_speech:
        clip = torch.from_numpy(np.asarray(clip)) if not isinstance(clip, torch.Tensor) else clip
        if clip.ndim != 1:
            raise ValueError(f"raw_speech: a clip of shape {tuple(clip.shape)}; each clip is (samples,) mono audio.")
        if not clip.is_floating_point():
            raise ValueError(f"raw_speech: dtype {clip.dtype}; pass float audio in [-1, 1].")
        clips.append(clip)
    return clips
