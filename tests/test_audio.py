"""The audio front end: exact STFT round trips, compression, resampling, file I/O and input checks."""

import numpy as np
import pytest
import soundfile as sf
import torch

from fuse_hf import audio as A
from fuse_hf import spectral as S
from fuse_hf import windows as W


@pytest.mark.parametrize("samples", [16000, 16001, 32640, 12345])
def test_stft_istft_reconstructs(samples):
    x = torch.from_numpy(np.random.default_rng(samples).uniform(-1, 1, (3, samples)).astype(np.float32))
    spec = S.stft(x)
    assert spec.shape == (3, 256, samples // 128 + 1)
    y = S.istft(spec, samples)
    assert torch.max(torch.abs(x - y)) < 1e-5


def test_compression_is_sgmse_convention_and_invertible():
    spec = torch.complex(torch.randn(2, 256, 10), torch.randn(2, 256, 10))
    c = S.compress_spectrogram(spec)
    assert torch.allclose(c.abs(), 0.15 * spec.abs() ** 0.5, atol=1e-6)
    assert torch.allclose(torch.angle(c), torch.angle(spec), atol=1e-5)
    assert torch.allclose(S.decompress_spectrogram(c), spec, atol=1e-4)


@pytest.mark.parametrize("representation,channels", [("complex", 2), ("magnitude", 1)])
def test_representation_round_trip(representation, channels):
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8000)).astype(np.float32))
    features, compressed = S.to_spectrogram(x, representation, input_scale=0.05)
    assert features.shape == (2, channels, 256, 8000 // 128 + 1)
    y = S.to_waveform(features, 8000, representation, input_scale=0.05, phase_from=compressed)
    assert torch.max(torch.abs(x - y)) < 1e-4


def test_magnitude_needs_phase_and_unknown_representation_is_rejected():
    x = torch.zeros(1, 1, 256, 10)
    with pytest.raises(ValueError, match="phase_from"):
        S.to_waveform(x, 1152, "magnitude")
    with pytest.raises(ValueError, match="representation"):
        S.to_spectrogram(torch.zeros(1, 1000), "mel")


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
    starts = W.window_starts(len(x), window, stride, align=512)
    assert all(s % 512 == 0 for s in starts) and starts == sorted(set(starts))
    # The last window ends at the signal's end (within one alignment step) instead of running into padding.
    assert len(x) <= starts[-1] + window < len(x) + 512
    out = np.zeros(starts[-1] + window, np.float32)
    padded = W.pad_reflect(x, len(out))
    for s, (fade_in, fade_out) in zip(starts, W.overlaps(starts, window)):
        out[s : s + window] += W.crossfade_weights(window, fade_in, fade_out) * padded[s : s + window]
    np.testing.assert_allclose(out[: len(x)], x, atol=1e-5)


@pytest.mark.parametrize(
    "seconds,fitted", [(0.5, 1.016), (1.5, 1.528), (2.0, 2.04), (4.0, 2.04), (7.0, 1.784), (60.0, 2.04)]
)
def test_fitted_window_covers_the_clip_with_less_work(seconds, fitted):
    """fuse-small's geometry (256 frames of hop 128, latent factor 4, multiples of 32 frames): a 7 s clip takes four
    windows of 1.784 s instead of four of 2.04 s; where the trained window fits (or saves within 5 %), it stays."""
    geometry = dict(trained_frames=256, hop=128, factor=4, multiple=32, sampling_rate=16000)
    samples = int(seconds * 16000)
    window, stride = W.window_geometry(**geometry, lengths=[samples])
    assert window == pytest.approx(fitted * 16000, abs=1)
    trained, trained_stride = W.window_geometry(**geometry)
    count = len(W.window_starts(samples, window, stride, align=512))
    assert count == len(W.window_starts(samples, trained, trained_stride, align=512))
    assert (count - 1) * stride + window >= samples  # still covers the clip
    # an explicit window wins; without lengths, the trained one; a list of clips shares one window
    assert W.window_geometry(**geometry, window_seconds=2.04, lengths=[samples])[0] == trained
    assert W.window_geometry(**geometry, lengths=[]) == (trained, trained_stride)
    assert W.window_geometry(**geometry, lengths=[samples, 60 * 16000])[0] >= window
    # the overlap the user asks for bounds how short a fitted window may get
    assert W.window_geometry(**geometry, overlap_seconds=0.9, lengths=[8000])[0] == 223 * 128  # 112-frame overlap
    with pytest.raises(ValueError, match="overlap_seconds"):
        W.window_geometry(**geometry, overlap_seconds=float("nan"), lengths=[8000])


def test_pad_reflect_mirrors_instead_of_adding_silence():
    x = np.arange(1, 6, dtype=np.float32)[None]
    np.testing.assert_array_equal(W.pad_reflect(x, 8), [[1, 2, 3, 4, 5, 5, 4, 3]])
    assert W.pad_reflect(x, 3).shape == (1, 3)
    assert W.pad_reflect(np.ones((2, 1), np.float32), 4).shape == (2, 4)
    assert W.window_starts(100, 200, 50) == [0]


def test_file_round_trip_keeps_rate_and_channels(tmp_path):
    x = (np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4410))).astype(np.float32)
    path = tmp_path / "a.flac"
    A.save_audio(path, x, 44100, subtype="PCM_24")
    y, sr = A.load_audio(path)
    assert sr == 44100 and y.shape == (2, 4410)
    np.testing.assert_allclose(y, x, atol=1e-6)
    assert A.audio_info(path) == (44100, 2, "PCM_24", 4410)


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


def test_check_sampling_rate_accepts_integral_numbers_of_any_type():
    for rate in (16000, 16000.0, np.int64(16000), np.float32(16000.0)):
        value = A.check_sampling_rate(rate)
        assert value == 16000 and type(value) is int
    with pytest.raises(ValueError, match="sr must be a positive integer in Hz, got 0"):
        A.check_sampling_rate(0, "sr")


# ----------------------------------------------------------------------------------------------- listing and writing


def _noise(channels, samples, seed=0):
    return (0.3 * np.random.default_rng(seed).uniform(-1, 1, (channels, samples))).astype(np.float32)


LOSSY = {".ogg", ".oga", ".opus", ".mp3"}


def test_every_audio_extension_is_written_read_and_listed(tmp_path):
    # The suffixes enhance may write (e.g. .aiff, .oga) must be the suffixes evaluate and the datasets list.
    assert {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"} <= A.AUDIO_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in A.AUDIO_EXTENSIONS)
    x = _noise(1, 4000)
    for ext in sorted(A.AUDIO_EXTENSIONS):
        path = tmp_path / "sub" / f"clip{ext}"
        A.save_audio(path, x, 16000)
        y, sr = A.load_audio(path)
        assert sr == 16000 and y.shape[0] == 1, ext
        if ext not in LOSSY:  # lossless or 16-bit: the samples come back (PCM_16 quantisation at most)
            np.testing.assert_allclose(y[0, : x.shape[1]], x[0], atol=1e-3, err_msg=ext)
        assert A.audio_info(path).sampling_rate == 16000
    listed = A.list_audio_files(tmp_path)
    assert sorted(p.suffix for p in listed) == sorted(A.AUDIO_EXTENSIONS)
    assert all(A.is_audio_file(p) for p in listed)
    assert A.is_audio_file("A.WAV") and not A.is_audio_file("notes.txt") and not A.is_audio_file("wav")


def test_save_audio_stereo_subtype_and_errors(tmp_path):
    x = _noise(2, 3000)
    A.save_audio(tmp_path / "a.aif", x, 22050, subtype="PCM_24")
    info = A.audio_info(tmp_path / "a.aif")
    assert info == A.AudioInfo(sampling_rate=22050, channels=2, subtype="PCM_24", frames=3000)
    A.save_audio(tmp_path / "mono.opus", x[0], 16000)
    assert A.audio_info(tmp_path / "mono.opus").subtype == "OPUS"
    with pytest.raises(ValueError, match=r"a\.xyz: cannot write `\.xyz` files\. Use one of .*\.wav"):
        A.save_audio(tmp_path / "a.xyz", x, 16000)
    with pytest.raises(ValueError, match=r"b\.opus: cannot write OGG OPUS audio at 44100 Hz"):
        A.save_audio(tmp_path / "b.opus", x, 44100)  # libopus has no 44.1 kHz
    with pytest.raises(ValueError, match="pass audio.T"):
        A.save_audio(tmp_path / "c.wav", x.T, 16000)
    with pytest.raises(ValueError, match="must hold floats"):
        A.save_audio(tmp_path / "d.wav", (x * 32767).astype(np.int16), 16000)
    with pytest.raises(ValueError, match="missing.wav: no such file"):
        A.audio_info(tmp_path / "missing.wav")


def test_list_audio_files_sorted_recursive_hidden_and_skipped(tmp_path):
    x = _noise(1, 100)
    for name in ("b/z.flac", "a/x.wav", "a/deeper/y.OGG", "top.wav", ".hidden.wav", ".cache/c.wav", "a/._x.wav"):
        A.save_audio(tmp_path / name, x, 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    relative = [p.relative_to(tmp_path).as_posix() for p in A.list_audio_files(tmp_path)]
    assert relative == ["a/deeper/y.OGG", "a/x.wav", "b/z.flac", "top.wav"]
    assert [p.name for p in A.list_audio_files(tmp_path, recursive=False)] == ["top.wav"]
    with pytest.warns(A.AudioDataWarning, match=r"skipped 2 non-audio file\(s\) \(e\.g\. a/cover\.jpg, notes\.txt\)"):
        A.list_audio_files(str(tmp_path), warn_skipped=True)
    with pytest.raises(ValueError, match="missing`: folder not found"):
        A.list_audio_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="folder not found"):
        A.list_audio_files(tmp_path / "top.wav")


# ----------------------------------------------------------------------------------------------- load_mono


def _quality_benchmark_load_mono(path):
    """`benchmarks/bench_quality.py`'s loader before the I/O layer (float64 read, channel mean and resampling)."""
    import soxr

    audio, sr = sf.read(path, dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != 16000:
        audio = soxr.resample(audio, sr, 16000, quality="HQ")
    return audio


def _training_decode(path, rate=16000):
    """`fuse_hf.data.decode_audio` before the I/O layer (float32 read, channel mean and resampling)."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return A.resample(audio.mean(axis=1, dtype=np.float32), sr, rate)


@pytest.mark.parametrize("rate,subtype", [(44100, "PCM_24"), (16000, "FLOAT"), (8000, "PCM_16")])
def test_load_mono_reproduces_the_benchmark_and_training_loaders_bit_for_bit(tmp_path, rate, subtype):
    path = tmp_path / "stereo.flac" if subtype != "FLOAT" else tmp_path / "stereo.wav"
    sf.write(path, _noise(2, rate, seed=rate).T, rate, subtype=subtype)
    expected64 = _quality_benchmark_load_mono(path)
    got64 = A.load_mono(path, 16000, dtype=np.float64)
    assert got64.dtype == np.float64 and np.array_equal(got64, expected64)
    got32 = A.load_mono(path, 16000)
    assert got32.dtype == np.float32 and np.array_equal(got32, _training_decode(path))
    assert got32.shape == (16000,)
    # Without a rate the file's own rate is kept; the mean of the channels is what comes back.
    native = A.load_mono(path, dtype=np.float64)
    stereo, _ = sf.read(path, dtype="float64")
    np.testing.assert_array_equal(native, stereo.mean(axis=1))


def test_load_mono_excerpt_bytes_and_errors(tmp_path):
    import io

    x = _noise(1, 1000)[0]
    path = tmp_path / "a.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(A.load_mono(path, start=100, frames=50), x[100:150])
    np.testing.assert_array_equal(A.load_mono(io.BytesIO(path.read_bytes())), x)
    with pytest.raises(ValueError, match="a.wav: holds no samples"):
        A.load_mono(path, start=1000, frames=10)
    with pytest.raises(ValueError, match="<bytes>: cannot be read as audio"):
        A.load_mono(io.BytesIO(b"RIFF garbage"))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        A.load_mono(path, dtype=np.int16)
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        A.load_mono(path, 16000.5)


# ----------------------------------------------------------------------------------------------- as_mono


def test_as_mono_returns_one_contiguous_channel_of_the_asked_dtype():
    x = np.arange(10, dtype=np.float32)[None] / 10
    y = A.as_mono(x, "clip", dtype=np.float64)
    assert y.shape == (10,) and y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x[0])
    strided = np.linspace(-1, 1, 20)[::2]
    assert A.as_mono(strided).flags.c_contiguous and A.as_mono(strided).dtype == np.float32


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((2, 100), np.float32), r"clip: expected a 1-D waveform \(samples,\), got shape \(2, 100\)"),
        (np.zeros(100, np.int16), "clip: expected float samples"),
        (np.zeros(0, np.float32), "clip: holds no samples"),
        (np.zeros(5, np.float32), r"clip: too short \(5 samples < 8\)"),
        (np.array([0.0, np.nan] * 8, np.float32), "clip: contains NaN or Inf"),
    ],
)
def test_as_mono_rejects_bad_waveforms_in_one_line(array, message):
    with pytest.raises(ValueError, match=message) as info:
        A.as_mono(array, "clip", min_samples=8)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------- peaks and errors


def test_avoid_clipping_scales_all_signals_by_one_gain_and_never_up():
    noisy = np.array([0.5, -2.0, 1.0], np.float32)
    clean = np.array([0.25, -1.0, 0.5], np.float32)
    limited_noisy, limited_clean = A.avoid_clipping(noisy, clean)
    gain = np.float32(0.99 / 2.0)
    np.testing.assert_array_equal(limited_noisy, noisy * gain)  # exactly one float32 gain
    np.testing.assert_array_equal(limited_clean, clean * gain)
    assert np.max(np.abs(limited_noisy)) == pytest.approx(0.99) and limited_clean.dtype == np.float32
    quiet = np.array([0.1, -0.2], np.float32)
    (same,) = A.avoid_clipping(quiet)
    assert same is quiet  # untouched below the peak: no copy, no gain up
    two_d = np.stack([noisy, clean])
    (limited,) = A.avoid_clipping(two_d, peak=0.5)
    assert np.max(np.abs(limited)) == pytest.approx(0.5) and limited.shape == (2, 3)
    assert A.avoid_clipping(np.zeros(0, np.float32), quiet)[1] is quiet


def test_first_line():
    assert A.first_line(RuntimeError("Error opening 'x.wav':\nFormat not recognised.")) == "Error opening 'x.wav':"
    assert A.first_line(ValueError("\n  padded message  \nmore")) == "padded message"
    assert A.first_line(KeyError()) == "KeyError"
    assert A.first_line(OSError("   ")) == "OSError"
