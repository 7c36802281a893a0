"""The audio front end: exact STFT round trips, compression, resampling, file I/O and input checks."""

import numpy as np
import pytest
import soundfile as sf
import torch

from fuse_hf import audio as A


@pytest.mark.parametrize("samples", [16000, 16001, 32640, 12345])
def test_stft_istft_reconstructs(samples):
    x = torch.from_numpy(np.random.default_rng(samples).uniform(-1, 1, (3, samples)).astype(np.float32))
    spec = A.stft(x)
    assert spec.shape == (3, 256, samples // 128 + 1)
    y = A.istft(spec, samples)
    assert torch.max(torch.abs(x - y)) < 1e-5


def test_compression_is_sgmse_convention_and_invertible():
    spec = torch.complex(torch.randn(2, 256, 10), torch.randn(2, 256, 10))
    c = A.compress_spectrogram(spec)
    assert torch.allclose(c.abs(), 0.15 * spec.abs() ** 0.5, atol=1e-6)
    assert torch.allclose(torch.angle(c), torch.angle(spec), atol=1e-5)
    assert torch.allclose(A.decompress_spectrogram(c), spec, atol=1e-4)


@pytest.mark.parametrize("representation,channels", [("complex", 2), ("magnitude", 1)])
def test_representation_round_trip(representation, channels):
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8000)).astype(np.float32))
    features, compressed = A.to_spectrogram(x, representation, input_scale=0.05)
    assert features.shape == (2, channels, 256, 8000 // 128 + 1)
    y = A.to_waveform(features, 8000, representation, input_scale=0.05, phase_from=compressed)
    assert torch.max(torch.abs(x - y)) < 1e-4


def test_magnitude_needs_phase_and_unknown_representation_is_rejected():
    x = torch.zeros(1, 1, 256, 10)
    with pytest.raises(ValueError, match="phase_from"):
        A.to_waveform(x, 1152, "magnitude")
    with pytest.raises(ValueError, match="representation"):
        A.to_spectrogram(torch.zeros(1, 1000), "mel")


def test_resample_keeps_frequency_and_duration():
    sr_in, sr_out = 44100, 16000
    t = np.arange(sr_in) / sr_in
    x = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 500 * t)]).astype(np.float32)
    y = A.resample(x, sr_in, sr_out)
    assert y.shape == (2, 16000)
    peak = np.argmax(np.abs(np.fft.rfft(y[0])))  # 1 Hz bins for a 1 s signal
    assert abs(peak - 1000) <= 1
    assert np.argmax(np.abs(np.fft.rfft(y[1]))) == pytest.approx(500, abs=1)
    assert A.resample(x, 16000, 16000) is not None


def test_crossfaded_windows_reassemble_the_signal():
    x = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    window, stride = 8160, 7168
    starts = A.window_starts(len(x), window, stride, align=512)
    assert all(s % 512 == 0 for s in starts) and starts == sorted(set(starts))
    # The last window ends at the signal's end (within one alignment step) instead of running into padding.
    assert len(x) <= starts[-1] + window < len(x) + 512
    out = np.zeros(starts[-1] + window, np.float32)
    padded = A.pad_reflect(x, len(out))
    for s, (fade_in, fade_out) in zip(starts, A.overlaps(starts, window)):
        out[s : s + window] += A.crossfade_weights(window, fade_in, fade_out) * padded[s : s + window]
    np.testing.assert_allclose(out[: len(x)], x, atol=1e-5)


def test_pad_reflect_mirrors_instead_of_adding_silence():
    x = np.arange(1, 6, dtype=np.float32)[None]
    np.testing.assert_array_equal(A.pad_reflect(x, 8), [[1, 2, 3, 4, 5, 5, 4, 3]])
    assert A.pad_reflect(x, 3).shape == (1, 3)
    assert A.pad_reflect(np.ones((2, 1), np.float32), 4).shape == (2, 4)
    assert A.window_starts(100, 200, 50) == [0]


def test_file_round_trip_keeps_rate_and_channels(tmp_path):
    x = (np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4410))).astype(np.float32)
    path = tmp_path / "a.flac"
    A.save_audio(path, x, 44100, subtype="PCM_24")
    y, sr = A.load_audio(path)
    assert sr == 44100 and y.shape == (2, 4410)
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert A.audio_info(path) == (44100, 2, "PCM_24")


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.wav: no such file"):
        A.load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wave file")
    with pytest.raises(ValueError, match="corrupt.wav: cannot be read as audio"):
        A.load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="empty.wav: holds no samples"):
        A.load_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nan.wav: contains NaN"):
        A.load_audio(nan)
    with pytest.raises(ValueError, match="is a folder"):
        A.load_audio(tmp_path)


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((2, 3, 100), np.float32), "1-D"),
        (np.zeros((1000, 2), np.float32), r"pass audio\.T"),
        (np.zeros(100, np.int16), "floats"),
        (np.zeros(0, np.float32), "no samples"),
        (np.array([0.0, np.inf], np.float32), "NaN or Inf"),
    ],
)
def test_as_channels_first_rejects_bad_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        A.as_channels_first(array)


@pytest.mark.parametrize("rate", [None, 0, -16000, 16000.5, "16000", True])
def test_check_sampling_rate(rate):
    with pytest.raises(ValueError, match="sampling_rate"):
        A.check_sampling_rate(rate)
    assert A.check_sampling_rate(16000.0) == 16000


def test_prevent_clipping_scales_down_only():
    x = np.array([0.5, -2.0, 1.0], np.float32)
    y, gain = A.prevent_clipping(x)
    assert np.max(np.abs(y)) == pytest.approx(0.99) and gain == pytest.approx(0.495)
    quiet = np.array([0.1, -0.2], np.float32)
    assert A.prevent_clipping(quiet)[1] == 1.0
