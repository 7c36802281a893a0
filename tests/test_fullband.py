"""Full-band output (`fuse_hf/pipelines/fullband.py`): 44.1/48 kHz input keeps its band above 8 kHz under the model's
gain, with no seam at the cross-over; `full_band=False` is the old output; `stream` equals `__call__` with it.

The DSP is checked with synthetic signals and "models" whose effect is known (the identity, a fixed attenuation, a
Wiener filter that knows the noise level); the pipeline tests run the tiny random pipeline with its `enhance_windows`
replaced by such a model, and once as it is for stream == call."""

import numpy as np
import pytest
import torch

from fuse_hf.audio import resample
from fuse_hf.commands import main
from fuse_hf.pipelines.fullband import (
    CROSSOVER_HZ,
    HighBandCarrier,
    carry_high_band,
    check_full_band,
    crossover_weights,
    high_band_gain,
    uses_full_band,
)

# ------------------------------------------------------------------------------------------ helpers


def fullband_speech(seconds: float, rate: int, channels: int = 1, seed: int = 0, pause: float = 0.0) -> np.ndarray:
    """Speech-like `(channels, samples)` float32 with a real high band: voiced syllables (harmonics of a gliding f0 up
    to the Nyquist frequency, falling 6 dB an octave) alternating with fricatives (noise above 3 kHz), then `pause`
    seconds of silence."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, int(rate / 2 / 200)))
    syllable = np.sin(2 * np.pi * 2.5 * t)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) < 3000] = 0
    fricative = np.fft.irfft(spectrum, n)
    mix = 0.15 * voiced / np.abs(voiced).max() * np.clip(syllable, 0, None) ** 2
    mix += 0.05 * fricative / fricative.std() * np.clip(-syllable, 0, None) ** 2
    if pause:
        mix[int((seconds - pause) * rate) :] = 0
    out = np.stack([np.roll(mix, 97 * c) for c in range(channels)])
    return out.astype(np.float32)


def band_db(audio: np.ndarray, rate: int, low: float, high: float) -> float:
    """Energy of `(channels, samples)` or `(samples,)` audio in [low, high) Hz, in dB."""
    spectrum = np.abs(np.fft.rfft(np.asarray(audio, np.float64), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(np.shape(audio)[-1], 1 / rate)
    return float(10 * np.log10(spectrum[..., (freqs >= low) & (freqs < high)].sum() + 1e-20))


def seam_db(output: np.ndarray, reference: np.ndarray, rate: int, low=7000.0, high=9000.0, width=250.0) -> float:
    """The largest step between neighbouring `width` Hz bands from `low` to `high` of output's level relative to the
    reference's (0: the output's spectrum has the reference's shape across the cross-over)."""
    edges = np.arange(low, high, width)
    relative = [band_db(output, rate, f, f + width) - band_db(reference, rate, f, f + width) for f in edges]
    return float(np.max(np.abs(np.diff(relative))))


def model_rate_round_trip(audio: np.ndarray, rate: int) -> np.ndarray:
    """What an identity model gives back at `rate`: the audio through 16 kHz, cut to its length."""
    return resample(resample(audio, rate, 16000), 16000, rate)[:, : audio.shape[1]]


def chunks_of(audio: np.ndarray, seed: int = 0, max_size: int = 9000):
    rng = np.random.default_rng(seed)
    position = 0
    while position < audio.shape[-1]:
        size = int(rng.integers(1, max_size))
        yield audio[..., position : position + size]
        position += size


def stub_model(monkeypatch, pipe, enhance):
    """Replaces the pipeline's model with `enhance((batch, window) float32 numpy at 16 kHz) -> same shape`."""
    monkeypatch.setattr(pipe, "enhance_windows", lambda waveform, initial, *a, **k: enhance(waveform.numpy()))


def wiener(noise_std_16k: float):
    """A model that knows the level of white noise at 16 kHz: a Wiener-like gain per STFT bin."""

    def enhance(windows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(windows).double()
        window = torch.hann_window(512, dtype=torch.float64)
        spec = torch.stft(x, 512, 128, window=window, return_complex=True)
        noise = noise_std_16k**2 * float((window**2).sum())
        gain = torch.clamp(1 - 2 * noise / (spec.abs() ** 2 + 1e-12), min=0.03)
        return torch.istft(spec * gain, 512, 128, window=window, length=x.shape[-1]).float().numpy()

    return enhance


# ------------------------------------------------------------------------------------------ the DSP


def test_crossover_weights_are_complementary_and_below_the_resamplers_roll_off():
    n_fft, rate = 1024, 48000
    weights = crossover_weights(n_fft, rate)
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    assert np.all(weights[freqs <= CROSSOVER_HZ[0]] == 1) and np.all(weights[freqs >= CROSSOVER_HZ[1]] == 0)
    assert np.all(np.diff(weights) <= 0) and CROSSOVER_HZ[1] < 7300  # soxr's pass band from 16 kHz is flat to 7.3 kHz


def test_high_band_gain_is_the_energy_ratios_square_root_at_most_1():
    np.testing.assert_allclose(high_band_gain([1.0, 4.0, 0.0], [4.0, 1.0, 0.0]), [0.5, 1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_an_identity_model_gives_the_input_back(rate, channels):
    """The model changes nothing: the output is the input, its high band included, to float rounding (away from the
    last few ms, where the resampler's own edge differs)."""
    audio = fullband_speech(1.0, rate, channels)
    out = carry_high_band(audio, model_rate_round_trip(audio, rate), rate)
    assert out.shape == audio.shape and out.dtype == np.float32
    middle = slice(rate // 50, -rate // 50)
    assert np.abs(out - audio)[:, middle].max() < 1e-4
    assert seam_db(out, audio, rate) < 0.1


@pytest.mark.parametrize("attenuation", [0.5, 0.1])
def test_a_known_attenuation_carries_over_to_the_high_band(attenuation):
    rate = 48000
    audio = fullband_speech(1.0, rate, 2, seed=1)
    out = carry_high_band(audio, attenuation * model_rate_round_trip(audio, rate), rate)
    expected = 20 * np.log10(attenuation)
    assert band_db(out, rate, 8000, 24000) - band_db(audio, rate, 8000, 24000) == pytest.approx(expected, abs=0.2)
    assert seam_db(out, audio, rate) < 0.2


def test_the_gain_follows_the_model_in_time():
    """The model removes everything in the second half: so does the high band, within the smoothing's few ms."""
    rate = 48000
    audio = fullband_speech(1.0, rate, seed=2)
    enhanced = model_rate_round_trip(audio, rate)
    enhanced[:, rate // 2 :] *= 0.01
    out = carry_high_band(audio, enhanced, rate)
    first, second = slice(0, rate // 2 - 2000), slice(rate // 2 + 2000, None)
    assert band_db(out[:, first], rate, 8000, 24000) == pytest.approx(
        band_db(audio[:, first], rate, 8000, 24000), abs=0.2
    )
    assert band_db(out[:, second], rate, 8000, 24000) - band_db(audio[:, second], rate, 8000, 24000) < -38


@pytest.mark.parametrize("rate,channels", [(48000, 2), (44100, 1)])
def test_the_carrier_in_pieces_equals_the_whole_bit_for_bit(rate, channels):
    audio = fullband_speech(0.7, rate, channels, seed=3)
    enhanced = 0.3 * model_rate_round_trip(audio, rate)
    carrier, pieces, position = HighBandCarrier(rate, channels), [], 0
    for size in [1, 0, 5, 3000, 17, 20000, 1024, 9000, 100000]:
        pieces.append(carrier(audio[:, position : position + size], enhanced[:, position : position + size]))
        given = sum(p.shape[1] for p in pieces)
        assert min(position + size, audio.shape[1]) - given <= carrier.latency_samples  # bounded look-ahead
        position += size
    pieces.append(carrier(audio[:, :0], enhanced[:, :0], last=True))
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), carry_high_band(audio, enhanced, rate))


@pytest.mark.parametrize("rate,channels,seed", [(48000, 2, 0), (44100, 1, 1), (48000, 1, 2)])
def test_the_carrier_in_random_pieces_equals_the_whole_bit_for_bit(rate, channels, seed):
    """Random piece sizes (empty ones, a few samples, several of the carrier's blocks of frames at once): the same
    samples as the whole clip, and never more than `latency_samples` behind."""
    audio = fullband_speech(2.0, rate, channels, seed=seed)
    enhanced = 0.5 * model_rate_round_trip(audio, rate) * np.linspace(1.0, 0.01, audio.shape[1], dtype=np.float32)
    rng = np.random.default_rng(seed)
    carrier, pieces, position, given = HighBandCarrier(rate, channels), [], 0, 0
    while position < audio.shape[1]:
        size = int(
            rng.choice([0, int(rng.integers(1, 40)), int(rng.integers(40, 3000)), int(rng.integers(3000, 40000))])
        )
        pieces.append(carrier(audio[:, position : position + size], enhanced[:, position : position + size]))
        position, given = position + size, given + pieces[-1].shape[1]
        assert min(position, audio.shape[1]) - given <= carrier.latency_samples
    pieces.append(carrier(audio[:, :0], enhanced[:, :0], last=True))
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), carry_high_band(audio, enhanced, rate))


def test_settings_are_checked_in_one_line():
    check_full_band(None), check_full_band(True), check_full_band(False)
    with pytest.raises(ValueError, match=r"^full_band must be True, False or None, got 'yes'\.$"):
        check_full_band("yes")
    assert uses_full_band(None, 48000, 16000) and uses_full_band(True, 22050, 16000)
    assert not uses_full_band(None, 16000, 16000) and not uses_full_band(True, 8000, 16000)
    assert not uses_full_band(False, 48000, 16000)


# ------------------------------------------------------------------------------------------ in the pipeline


def enhance(pipe, audio, rate, **kwargs):
    return pipe(audio, sampling_rate=rate, generator=torch.Generator().manual_seed(0), **kwargs).audios


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_clean_input_keeps_its_high_band_without_a_seam(tiny_pipeline, monkeypatch, rate, channels):
    """A model that leaves clean speech as it is: the output's energy above 8 kHz is the input's (within 3 dB; here
    within 0.5) and its spectrum has no step at the cross-over; without full band the high band is gone."""
    stub_model(monkeypatch, tiny_pipeline, lambda windows: windows)
    audio = fullband_speech(1.2, rate, channels, seed=channels)
    audio = audio[0] if channels == 1 else audio
    out = enhance(tiny_pipeline, audio, rate, num_inference_steps=1)
    assert out.shape == audio.shape
    assert abs(band_db(out, rate, 8000, rate / 2) - band_db(audio, rate, 8000, rate / 2)) < 0.5
    assert seam_db(out, audio, rate) < 0.5
    narrow = enhance(tiny_pipeline, audio, rate, num_inference_steps=1, full_band=False)
    assert band_db(narrow, rate, 8500, rate / 2) - band_db(audio, rate, 8500, rate / 2) < -40


def test_high_band_noise_is_reduced_at_least_as_much_as_the_4_to_8_khz_bands(tiny_pipeline, monkeypatch):
    """Speech with a pause, plus white noise over the whole band; the "model" is a Wiener filter: in the pause, the
    noise above 8 kHz goes down by at least what the 4-8 kHz band's does."""
    rate, noise_std = 48000, 0.01
    clean = fullband_speech(1.5, rate, seed=4, pause=0.5)[0]
    noisy = clean + noise_std * np.random.default_rng(5).standard_normal(clean.size).astype(np.float32)
    stub_model(monkeypatch, tiny_pipeline, wiener(noise_std / np.sqrt(3)))  # white noise keeps 1/3 at 16 kHz
    out = enhance(tiny_pipeline, noisy, rate, num_inference_steps=1)
    pause = slice(int(1.05 * rate), int(1.45 * rate))
    reduction_reference = band_db(noisy[pause], rate, 4000, 8000) - band_db(out[pause], rate, 4000, 8000)
    reduction_high = band_db(noisy[pause], rate, 8000, 24000) - band_db(out[pause], rate, 8000, 24000)
    print(f"noise reduction in the pause: 4-8 kHz {reduction_reference:.1f} dB, 8-24 kHz {reduction_high:.1f} dB")
    assert reduction_reference > 10 and reduction_high >= reduction_reference
    speech = slice(int(0.1 * rate), int(0.9 * rate))  # and the speech's high band stays (within 3 dB)
    assert abs(band_db(out[speech], rate, 8000, 24000) - band_db(clean[speech], rate, 8000, 24000)) < 3


def test_full_band_false_is_the_output_without_the_high_band_stage(tiny_pipeline, monkeypatch):
    """`full_band=False` never runs the stage and gives what the pipeline gave before it (the resampled 16 kHz
    output): the same samples as a default run whose stage returns the enhanced audio untouched."""
    audio = fullband_speech(0.8, 48000, 2, seed=6)
    reference = enhance(tiny_pipeline, audio, 48000, num_inference_steps=1, full_band=True)
    from fuse_hf.pipelines import clips

    monkeypatch.setattr(clips, "carry_high_band", lambda original, enhanced, rate: enhanced)
    untouched = enhance(tiny_pipeline, audio, 48000, num_inference_steps=1)
    monkeypatch.setattr(clips, "carry_high_band", None)  # would fail if called
    np.testing.assert_array_equal(
        enhance(tiny_pipeline, audio, 48000, num_inference_steps=1, full_band=False), untouched
    )
    assert np.abs(reference - untouched).max() > 1e-3
    with pytest.raises(ValueError, match="full_band must be"):
        enhance(tiny_pipeline, audio, 48000, full_band=1)


@pytest.mark.parametrize("channels", [1, 2])
def test_stream_equals_call_with_full_band_at_48_khz(tiny_pipeline, channels):
    audio = fullband_speech(1.2, 48000, channels, seed=7)
    audio = audio[0] if channels == 1 else audio
    window_seconds = tiny_pipeline._window_geometry()[0] / 16000  # a stream's default; `__call__` fits its own
    settings = dict(num_inference_steps=1, batch_size=1, window_seconds=window_seconds)
    expected = enhance(tiny_pipeline, audio, 48000, **settings)
    stream = tiny_pipeline.stream(chunks_of(audio), 48000, generator=torch.Generator().manual_seed(0), **settings)
    assert stream.latency_seconds > tiny_pipeline._window_geometry()[0] / 16000 + 0.03  # the carrier's look-ahead
    got = np.concatenate(list(stream), axis=-1)
    assert got.shape == audio.shape
    np.testing.assert_array_equal(got, expected)
    assert np.abs(got - enhance(tiny_pipeline, audio, 48000, num_inference_steps=1, full_band=False)).max() > 1e-3


def test_stream_takes_full_band_false(tiny_pipeline):
    audio = fullband_speech(0.6, 44100, seed=8)[0]
    window_seconds = tiny_pipeline._window_geometry()[0] / 16000  # a stream's default; `__call__` fits its own
    settings = dict(num_inference_steps=1, batch_size=1, full_band=False, window_seconds=window_seconds)
    got = np.concatenate(
        list(tiny_pipeline.stream(chunks_of(audio), 44100, generator=torch.Generator().manual_seed(0), **settings))
    )
    np.testing.assert_array_equal(got, enhance(tiny_pipeline, audio, 44100, **settings))
    with pytest.raises(ValueError, match="full_band must be"):
        tiny_pipeline.stream([audio], 44100, full_band="no")


def test_cli_full_band_and_no_full_band(tiny_pipeline_dir, tmp_path, capsys):
    import soundfile as sf

    source = tmp_path / "in.wav"
    sf.write(source, fullband_speech(0.6, 48000, seed=9)[0], 48000, subtype="FLOAT")
    levels = {}
    for flag in ("--full-band", "--no-full-band"):
        out = tmp_path / flag
        assert (
            main(
                [
                    "enhance",
                    str(source),
                    "-o",
                    str(out),
                    "--steps",
                    "1",
                    "--device",
                    "cpu",
                    flag,
                    "--model",
                    str(tiny_pipeline_dir),
                ]
            )
            == 0
        )
        audio, rate = sf.read(out / "in.wav", dtype="float32")
        levels[flag] = band_db(audio, rate, 9000, 24000)
    capsys.readouterr()
    assert levels["--full-band"] - levels["--no-full-band"] > 30


def test_benchmarks_log_spectral_distance_above_8_khz():
    from benchmarks.bench_fullband import lsd_high

    audio = fullband_speech(1.0, 48000, seed=10)[0]
    assert lsd_high(audio, audio) == 0
    noise = np.random.default_rng(11).standard_normal(48000) * 0.1  # every bin far above the floor
    assert lsd_high(noise, 0.5 * noise) == pytest.approx(6.02, abs=0.01)  # a level difference reads as its dB
    assert lsd_high(audio, model_rate_round_trip(audio[None], 48000)[0]) > 30  # a band-limited output: far off
