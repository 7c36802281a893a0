"""Streaming: `FUSEPipeline.stream` equals `__call__` chunk size for chunk size, holds a few windows whatever the
length, names bad input in one line; `fuse-hf stream` pipes raw PCM and WAV end to end. The pieces it is built from
(`StreamingWindows`, `StreamingResampler`, `RunningPeakLimiter`, `LatentNoise`) are checked against their offline
twins on their own."""

import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fuse_hf.audio import RunningPeakLimiter, StreamingResampler, avoid_clipping, resample
from fuse_hf.commands import main
from fuse_hf.commands.stream import PCMReader, PCMWriter, RealtimeMonitor, float_to_pcm16, pcm16_to_float
from fuse_hf.pipelines.noise import NOISE_BLOCK_FRAMES, LatentNoise
from fuse_hf.windows import StreamingWindows, crossfade_weights, overlaps, pad_reflect, window_starts

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------ helpers


def random_chunks(audio: np.ndarray, seed: int = 0, max_size: int = 20000, ones: int = 1500):
    """Slices of `audio` (`(samples,)` or `(channels, samples)`) along its last axis: `ones` chunks of one sample,
    then random sizes from 1 to `max_size` (larger than a test window), with an empty chunk among them."""
    rng = np.random.default_rng(seed)
    position, total = 0, audio.shape[-1]
    while position < total:
        size = 1 if position < ones else int(rng.integers(1, max_size))
        yield audio[..., position : position + size]
        if position == ones:
            yield audio[..., :0]
        position += size


def offline(pipe, audio, rate, seed=0, **kwargs):
    """`__call__` with the stream's default window, the trained one (`__call__`'s own default fits it to the clip)."""
    kwargs.setdefault("window_seconds", pipe._window_geometry()[0] / pipe.sampling_rate)
    return pipe(audio, sampling_rate=rate, generator=torch.Generator().manual_seed(seed), **kwargs).audios


def streamed(pipe, chunks, rate, seed=0, **kwargs):
    pieces = list(pipe.stream(chunks, rate, generator=torch.Generator().manual_seed(seed), **kwargs))
    assert pieces, "the stream gave nothing"
    return np.concatenate(pieces, axis=-1)


def overlap_add(audio: np.ndarray, window: int, stride: int, align: int, enhance) -> np.ndarray:
    """The pipeline's offline overlap-add of `enhance(window samples, start)` over `(channels, samples)`."""
    starts = window_starts(audio.shape[1], window, stride, align)
    out = np.zeros((audio.shape[0], starts[-1] + window), np.float32)
    for start, (fade_in, fade_out) in zip(starts, overlaps(starts, window)):
        piece = enhance(pad_reflect(audio[:, start : start + window], window), start)
        out[:, start : start + window] += crossfade_weights(window, fade_in, fade_out) * piece
    return out[:, : audio.shape[1]]


def fake_enhance(samples: np.ndarray, start: int) -> np.ndarray:
    """Depends on the window's position, so a misplaced or doubled window shows."""
    return (1.7 * samples + 0.01 * np.float32(start % 7)).astype(np.float32)


# ------------------------------------------------------------------------------------------ building blocks


@pytest.mark.parametrize("seed", range(4))
def test_streaming_windows_equal_the_offline_overlap_add(seed):
    """Any window, stride, alignment, length and chunking: the same samples as the offline overlap-add, bit for bit,
    with at most a window of input and `window / stride + 1` enhanced windows held."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        align = int(rng.choice([1, 2, 4]))
        window = max(align, int(rng.integers(4, 60)) // align * align)
        stride = max(align, window - int(rng.integers(0, window // 2 + 1)) // align * align)
        channels, length = int(rng.integers(1, 3)), int(rng.integers(1, 400))
        audio = rng.standard_normal((channels, length)).astype(np.float32)
        placer, pieces, position = StreamingWindows(window, stride, align, channels), [], 0
        while position < length:
            size = 1 if rng.random() < 0.5 else int(rng.integers(1, 2 * window + 2))
            for start, samples in placer.push(audio[:, position : position + size]):
                placer.add(start, fake_enhance(samples, start))
            pieces.append(placer.pop_ready())
            position += size
            assert placer._input.shape[1] <= window
            assert len(placer._pending) <= window // stride + 1
        for start, samples in placer.finish():
            placer.add(start, fake_enhance(samples, start))
        pieces.append(placer.pop_ready())
        expected = overlap_add(audio, window, stride, align, fake_enhance)
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1), expected)


def test_streaming_windows_output_trails_the_input_by_at_most_a_window():
    window, stride, align = 64, 56, 8
    placer, given = StreamingWindows(window, stride, align), 0
    for _ in range(100):
        for start, samples in placer.push(np.ones((1, 5), np.float32)):
            placer.add(start, samples)
        given += placer.pop_ready().shape[1]
        if placer.received > window:
            assert placer.received - window - align < given <= placer.received - window + align


def test_streaming_windows_misuse_is_named():
    placer = StreamingWindows(16, 12, 4)
    [(start, samples)] = placer.push(np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match="must be added before pop_ready"):
        placer.pop_ready()
    with pytest.raises(ValueError, match="no window at 3"):
        placer.add(3, samples)
    with pytest.raises(ValueError, match="stride must be in"):
        StreamingWindows(16, 17)


@pytest.mark.parametrize("rates", [(44100, 16000), (16000, 22050), (16000, 16000)])
def test_streaming_resampler_equals_resample_bit_for_bit(rates):
    audio = np.random.default_rng(0).standard_normal((2, 20000)).astype(np.float32) * 0.1
    resampler = StreamingResampler(*rates, channels=2)
    pieces = [resampler(chunk) for chunk in random_chunks(audio, max_size=3000, ones=200)]
    pieces.append(resampler(audio[:, :0], last=True))
    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), resample(audio, *rates))


def test_running_peak_limiter_gives_avoid_clippings_gain_from_the_loudest_piece_on():
    quiet, loud, after = np.full(10, 0.5, np.float32), np.full(10, 1.98, np.float32), np.full(10, -0.7, np.float32)
    limiter = RunningPeakLimiter()
    assert limiter(quiet) is quiet and limiter.gain == 1.0
    (whole,) = avoid_clipping(np.concatenate([quiet, loud, after]))
    np.testing.assert_array_equal(np.concatenate([limiter(loud), limiter(after)]), whole[10:])
    assert limiter.gain == pytest.approx(0.5) and np.abs(whole).max() <= 0.99


def test_latent_noise_is_the_same_drawn_whole_or_as_a_stream_reaches_it():
    whole = LatentNoise((2, 4, 8), torch.Generator().manual_seed(0)).frames(0, 100)
    noise, pieces = LatentNoise((2, 4, 8), torch.Generator().manual_seed(0)), []
    for start in range(0, 100, 7):
        pieces.append(noise.frames(start, min(start + 7, 100)))
        noise.forget(start)
        assert noise.held_frames <= 2 * NOISE_BLOCK_FRAMES
    torch.testing.assert_close(torch.cat(pieces, dim=-1), whole, rtol=0, atol=0)
    with pytest.raises(ValueError, match="was forgotten"):
        noise.frames(0, 1)


def test_prepare_latents_is_the_latent_noise_field(tiny_pipeline):
    """`__call__` draws each clip's field through `LatentNoise` too: the stream's windows see the same numbers."""
    field = tiny_pipeline.prepare_latents(5 * 512, 2, torch.Generator().manual_seed(1), None, "cpu", torch.float32)
    expected = LatentNoise.for_pipeline(tiny_pipeline, 2, torch.Generator().manual_seed(1)).frames(0, field.shape[-1])
    torch.testing.assert_close(field, expected, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ stream == __call__


@pytest.mark.parametrize("rate", [16000, 22050])
@pytest.mark.parametrize("channels", [1, 2])
def test_stream_equals_call(tiny_pipeline, make_speech, rate, channels):
    """Chunks of 1 sample, of random sizes and larger than a window (0.5 s here), an empty chunk, over three windows
    (the last one aligned to the end): the stream equals `__call__` on the same input and seed, bit for bit, where
    both batch the UNet alike (`batch_size=1`)."""
    audio = make_speech(1.2, rate, channels, seed=channels)
    if channels == 1:
        audio = audio[0]
    got = streamed(tiny_pipeline, random_chunks(audio), rate, num_inference_steps=1, batch_size=1)
    assert got.shape == audio.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, offline(tiny_pipeline, audio, rate, num_inference_steps=1, batch_size=1))


def test_stream_equals_call_with_default_batches(tiny_pipeline, make_speech):
    """With their default batches (the stream: the channels of one window; `__call__`: 8 windows) the UNet computes
    in batches of other sizes, whose float rounding differs: the issue's tolerance, 1e-4."""
    audio = make_speech(1.2, channels=2, seed=2)
    got = streamed(tiny_pipeline, random_chunks(audio, seed=1), 16000, num_inference_steps=1)
    difference = float(np.abs(got - offline(tiny_pipeline, audio, 16000, num_inference_steps=1)).max())
    print(f"stream vs __call__ with default batches: max |diff| {difference:.2e}")
    assert difference < 1e-4


@pytest.mark.parametrize("samples", [100, 8064, 8065, 8064 + 7680 + 1])
def test_stream_equals_call_at_window_boundaries(tiny_pipeline, make_speech, samples):
    """Shorter than a window (mirrored), exactly one, one sample more (a second, end-aligned window), just past the
    second regular window."""
    audio = make_speech(1.0, seed=3)[0][:samples] if samples <= 16000 else make_speech(1.1, seed=3)[0][:samples]
    expected = offline(tiny_pipeline, audio, 16000, num_inference_steps=1, batch_size=1)
    got = streamed(tiny_pipeline, random_chunks(audio, ones=30, max_size=5000), 16000, num_inference_steps=1)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("window_seconds,overlap_seconds", [(0.25, None), (1.0, 0.1)])
def test_window_length_is_a_setting_of_both(tiny_pipeline, make_speech, window_seconds, overlap_seconds):
    audio = make_speech(0.8 if window_seconds < 0.5 else 1.6, seed=4)[0]
    settings = dict(num_inference_steps=1, window_seconds=window_seconds, overlap_seconds=overlap_seconds)
    stream = tiny_pipeline.stream(
        random_chunks(audio, ones=10), 16000, generator=torch.Generator().manual_seed(0), **settings
    )
    assert stream.window_seconds == pytest.approx(window_seconds, abs=0.02)
    got = np.concatenate(list(stream))
    np.testing.assert_array_equal(got, offline(tiny_pipeline, audio, 16000, batch_size=1, **settings))
    assert np.abs(got - offline(tiny_pipeline, audio, 16000, num_inference_steps=1)).max() > 1e-4


def test_default_window_seconds_is_the_trained_window(tiny_pipeline, make_speech):
    """A stream's default window is the trained one (its length is unknown in advance); `__call__`'s fits the clip."""
    audio = make_speech(0.9, seed=5)[0]
    window, stride = tiny_pipeline._window_geometry()
    assert tiny_pipeline._window_geometry(window / 16000) == (window, stride)
    assert tiny_pipeline.stream(None, 16000).window_seconds == window / 16000
    np.testing.assert_array_equal(
        streamed(tiny_pipeline, random_chunks(audio, ones=10), 16000, num_inference_steps=1, batch_size=1),
        offline(tiny_pipeline, audio, 16000, num_inference_steps=1, batch_size=1, window_seconds=window / 16000),
    )


def test_stream_takes_tensors_gives_tensors_and_limits_attenuation(tiny_pipeline, make_speech):
    audio = torch.from_numpy(make_speech(0.9, 16000, channels=2, seed=6))
    settings = dict(num_inference_steps=1, attenuation_limit_db=6.0, noise_scale=0.5, guidance_scale=2.0)
    pieces = list(
        tiny_pipeline.stream(
            random_chunks(audio, ones=5),
            16000,
            output_type="pt",
            generator=torch.Generator().manual_seed(2),
            batch_size=1,
            **settings,
        )
    )
    assert all(isinstance(piece, torch.Tensor) for piece in pieces)
    expected = offline(tiny_pipeline, audio, 16000, seed=2, batch_size=1, output_type="pt", **settings)
    torch.testing.assert_close(torch.cat(pieces, dim=-1), expected, rtol=0, atol=0)


def test_peak_limiting_equals_call_from_the_loudest_chunk_on(tiny_pipeline, make_speech):
    """`__call__` turns the whole clip down when it would clip; a stream turns down what it has not given out yet:
    from the chunk with the loudest peak on it equals `__call__`, before it is louder by that gain, never clipping."""
    audio = make_speech(1.0, seed=7)[0]
    audio[-3000:] *= 1.2 / np.abs(audio[-3000:]).max()  # the mix below peaks near the end, above 0.99
    settings = dict(num_inference_steps=1, attenuation_limit_db=1.0, batch_size=1)
    reference = offline(tiny_pipeline, audio, 16000, **settings)
    gain = 0.99 / np.abs(reference).max()  # 1: the limiter did not act
    pieces = list(tiny_pipeline.stream([audio], 16000, generator=torch.Generator().manual_seed(0), **settings))
    assert len(pieces) >= 2 and max(np.abs(piece).max() for piece in pieces) <= 0.99
    np.testing.assert_array_equal(pieces[-1], reference[-pieces[-1].size :])
    first = pieces[0]
    assert gain == pytest.approx(1.0) or np.abs(reference[: first.size] / first).max() < 0.999


# ------------------------------------------------------------------------------------------ push mode


def pushed(pipe, chunks, rate, seed=0, **kwargs) -> tuple[np.ndarray, int]:
    """A push-mode stream fed `chunks` one `push` at a time, then `finish`: the output put together, and how many
    pieces came out before `finish`."""
    stream = pipe.stream(None, rate, generator=torch.Generator().manual_seed(seed), **kwargs)
    pieces = [piece for chunk in chunks for piece in stream.push(chunk)]
    early = len(pieces)
    pieces += stream.finish()
    return np.concatenate(pieces, axis=-1), early


@pytest.mark.parametrize("rate,channels", [(16000, 1), (22050, 2)])
def test_push_mode_equals_the_pull_stream_and_call(tiny_pipeline, make_speech, rate, channels):
    """One long chunk (over a window), empty ones, then chunks of 1 sample and of random sizes, pushed one per call:
    the same samples as the pull stream and `__call__` (bit for bit: both batch the UNet alike), given out as they
    are ready, not all at `finish`."""
    audio = make_speech(1.3, rate, channels, seed=11)
    if channels == 1:
        audio = audio[0]
    long = int(0.7 * rate)  # the tiny model's window is 0.5 s
    chunks = [audio[..., :0], audio[..., :long], audio[..., :0], *random_chunks(audio[..., long:], seed=5, ones=40)]
    settings = dict(num_inference_steps=1, batch_size=1)
    got, early = pushed(tiny_pipeline, chunks, rate, **settings)
    assert got.shape == audio.shape and got.dtype == np.float32 and early >= 1
    np.testing.assert_array_equal(got, streamed(tiny_pipeline, iter(chunks), rate, **settings))
    np.testing.assert_array_equal(got, offline(tiny_pipeline, audio, rate, **settings))


def test_push_mode_misuse_is_named_in_one_line(tiny_pipeline):
    ok, nan = np.zeros(4000, np.float32), np.array([0.0, np.nan] * 100, np.float32)
    errors = []

    def fails(kind, call, *args):
        with pytest.raises(kind) as info:
            call(*args)
        errors.append(str(info.value))
        return str(info.value)

    push = tiny_pipeline.stream(None, 16000, num_inference_steps=1)
    assert "push mode (made with chunks=None): use push() and finish()" in fails(TypeError, next, push)
    assert fails(ValueError, push.finish) == bad_stream(tiny_pipeline, [])  # nothing pushed: as the pull stream
    assert "push() after the stream ended" in fails(ValueError, push.push, ok)

    pull = tiny_pipeline.stream([ok], 16000, num_inference_steps=1)
    assert "push() is for push-mode streams" in fails(TypeError, pull.push, ok)
    assert "finish() is for push-mode streams" in fails(TypeError, pull.finish)

    done = tiny_pipeline.stream(None, 16000, num_inference_steps=1)
    assert done.push(ok) == [] and done.push(ok[:0]) == []  # a quarter window: nothing ready yet
    assert sum(piece.size for piece in done.finish()) == ok.size
    assert "finish() after the stream ended" in fails(ValueError, done.finish)

    broken = tiny_pipeline.stream(None, 16000, num_inference_steps=1)
    broken.push(ok)
    assert fails(ValueError, broken.push, nan) == "chunk 1: audio contains NaN or Inf samples."
    assert "push() after the stream ended (finish(), close() or an error)" in fails(ValueError, broken.push, ok)
    assert all("\n" not in error for error in errors)


# ------------------------------------------------------------------------------------------ memory and latency


def test_memory_is_bounded_over_a_ten_minute_stream(tiny_pipeline, monkeypatch):
    """10 minutes of input from a generator, in chunks of random sizes: the stream never holds more than a few
    windows of audio or of initial noise, and its output trails the input by at most its latency (plus a chunk).
    The UNet is stubbed out (this is about the stream's buffers; the model holds nothing between windows)."""
    monkeypatch.setattr(tiny_pipeline, "enhance_windows", lambda waveform, initial, *args, **kwargs: waveform.numpy())
    rate, seconds = 16000, 600
    pulled = 0

    def microphone():
        nonlocal pulled
        rng = np.random.default_rng(0)
        while pulled < seconds * rate:
            size = min(int(rng.integers(1, 4000)), seconds * rate - pulled)
            chunk = (0.1 * rng.standard_normal(size)).astype(np.float32)
            pulled += chunk.size
            yield chunk

    stream = tiny_pipeline.stream(microphone(), rate, num_inference_steps=1)
    window = stream.window_seconds * rate
    given, most, most_noise = 0, 0, 0
    for piece in stream:
        given += piece.size
        most, most_noise = max(most, stream.buffered_samples), max(most_noise, stream.noise_frames)
        assert pulled - given <= stream.latency_seconds * rate + 4000
    assert given == pulled == seconds * rate
    print(f"10 min stream: at most {most} samples ({most / window:.2f} windows) and {most_noise} noise frames held")
    assert most <= 3 * window and most_noise <= 3 * NOISE_BLOCK_FRAMES


# ------------------------------------------------------------------------------------------ bad input


def bad_stream(pipe, chunks, rate=16000, **kwargs):
    with pytest.raises(ValueError) as info:
        list(pipe.stream(chunks, rate, **kwargs))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_chunks_are_named_in_one_line(tiny_pipeline):
    ok = np.zeros(4000, np.float32)
    assert "chunk 1: must be 1-D (samples,) or 2-D" in bad_stream(tiny_pipeline, [ok, np.zeros((1, 2, 3))])
    nan = np.array([0.0, np.nan] * 100, np.float32)
    assert bad_stream(tiny_pipeline, [ok, ok, nan]) == "chunk 2: audio contains NaN or Inf samples."
    message = bad_stream(tiny_pipeline, [ok, np.zeros((2, 100), np.float32)])
    assert message.startswith("chunk 1: has shape (2, 100), but the stream started with 1-D mono chunks")
    message = bad_stream(tiny_pipeline, [np.zeros((2, 100), np.float32), np.zeros((1, 100), np.float32)])
    assert "but the stream started with 2 channel(s)" in message
    assert "chunk 0: audio must hold floats" in bad_stream(tiny_pipeline, [np.zeros(100, np.int16)])
    assert "chunk 0: must be a numpy array or a torch tensor, got list" in bad_stream(tiny_pipeline, [[0.0] * 100])
    assert "no chunk had samples" in bad_stream(tiny_pipeline, [ok[:0]])
    assert "at least 5 ms" in bad_stream(tiny_pipeline, [ok[:20]])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sampling_rate=None), "sampling_rate is required"),
        (dict(sampling_rate=0), "positive integer"),
        (dict(sampling_rate=16000.5), "positive integer"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(window_seconds=0.0), "window_seconds must be a positive number"),
        (dict(window_seconds=float("nan")), "window_seconds must be a positive number"),
        (dict(overlap_seconds=-1.0), "overlap_seconds must be a number >= 0"),
        (dict(window_seconds=0.5, overlap_seconds=0.4), "at most half the window"),
        (dict(generator=[torch.Generator()]), "one torch.Generator"),
        (dict(output_type="latent"), "output_type"),
    ],
)
def test_bad_settings_are_named_when_the_stream_is_made(tiny_pipeline, kwargs, message):
    """Before any chunk is read: a stream that cannot run fails at once, not at its first chunk."""
    settings = dict(sampling_rate=16000) | kwargs
    with pytest.raises(ValueError, match=message):
        tiny_pipeline.stream(iter(()), **settings)


# ------------------------------------------------------------------------------------------ command line


def test_pcm16_round_trip_and_wav_reader_writer():
    audio = np.array([[0.0, 0.5, -1.0, 0.99997, -0.25]], np.float32)
    data = float_to_pcm16(audio)
    assert np.frombuffer(data, "<i2").tolist() == [0, 16384, -32767, 32766, -8192]
    np.testing.assert_allclose(pcm16_to_float(data, 1), audio, atol=2 / 32768)
    out = io.BytesIO()
    writer = PCMWriter(out, 22050, 1, wav=True)
    writer.write(audio)
    writer.close()
    read, rate = sf.read(io.BytesIO(out.getvalue()), dtype="int16")
    assert rate == 22050 and read.tolist() == [0, 16384, -32767, 32766, -8192]
    reader = PCMReader(io.BytesIO(out.getvalue()), 16000, 2, chunk_ms=0.1)
    assert reader.is_wav and (reader.rate, reader.channels) == (22050, 1)
    np.testing.assert_array_equal(np.concatenate(list(reader), axis=1), pcm16_to_float(data, 1))
    # What arecord writes to a pipe: sizes of 0x7FFFFFFF, meaning "until the end"; a list chunk before the data.
    live = out.getvalue()[:36] + b"LIST\x04\x00\x00\x00abcd" + b"data\xff\xff\xff\x7f" + data * 3
    chunks = list(PCMReader(io.BytesIO(live), 16000, 1))
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), pcm16_to_float(data * 3, 1))
    raw = list(PCMReader(io.BytesIO(data + b"\x01"), 16000, 1, input_format="raw"))  # a stray byte is dropped
    np.testing.assert_array_equal(np.concatenate(raw, axis=1), pcm16_to_float(data, 1))


def test_realtime_monitor_warns_when_work_outpaces_the_audio():
    now = [0.0]
    text = io.StringIO()
    monitor = RealtimeMonitor(threshold=0.5, clock=lambda: now[0], out=text)
    monitor.start()
    now[0] = 10.0
    assert monitor.check(audio_seconds=10.0, waited=7.0) == pytest.approx(-7.0)  # kept up, 7 s spent waiting
    now[0] = 22.0
    assert monitor.check(audio_seconds=11.0, waited=7.0) == pytest.approx(4.0)  # 15 s of work for 11 s of audio
    assert "falling behind real time by 4.0 s" in text.getvalue() and monitor.warnings == 1
    monitor.check(audio_seconds=11.0, waited=7.0)
    assert monitor.warnings == 1  # not again until the lag grows


def expected_pcm(pipe, pcm: np.ndarray, rate: int, **kwargs) -> np.ndarray:
    """What `fuse-hf stream` writes for 16-bit samples `(channels, samples)`: the offline enhancement of the same
    samples, quantized the same way."""
    enhanced = offline(pipe, pcm16_to_float(pcm.T.astype("<i2").tobytes(), pcm.shape[0]), rate, batch_size=1, **kwargs)
    return np.frombuffer(float_to_pcm16(enhanced), "<i2").reshape(-1, pcm.shape[0]).T


def assert_same_pcm(written: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to one step of 16 bits where float rounding differs (UNet batches of another size, another thread
    count in another process): the random test model turns even a 1-LSB change of its input into tens of LSB."""
    assert written.shape == expected.shape
    difference = np.abs(written.astype(np.int32) - expected)
    assert difference.max() <= 1 and np.mean(difference == 0) > 0.9, (difference.max(), np.mean(difference == 0))


def test_cli_wav_file_to_wav_file(tiny_pipeline, tiny_pipeline_dir, make_speech, tmp_path, capsys):
    audio = make_speech(1.2, 22050, channels=2, seed=8)
    source = tmp_path / "in.wav"
    sf.write(source, audio.T, 22050, subtype="PCM_16")
    target = tmp_path / "out.wav"
    args = [
        "stream",
        str(source),
        "-o",
        str(target),
        "--model",
        str(tiny_pipeline_dir),
        "--steps",
        "1",
        "--device",
        "cpu",
        "--realtime",
        "--chunk-ms",
        "7",
    ]
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "real-time factor" in err and "Traceback" not in err
    written, rate = sf.read(target, dtype="int16", always_2d=True)
    assert rate == 22050 and written.shape == (audio.shape[1], 2)
    noisy = sf.read(source, dtype="int16", always_2d=True)[0].T
    assert_same_pcm(written.T, expected_pcm(tiny_pipeline, noisy, 22050, num_inference_steps=1))
    assert main(args) == 1 and "exists (use --overwrite)" in capsys.readouterr().err


def test_cli_errors_are_one_line(tiny_pipeline_dir, tmp_path, capsys):
    flac = tmp_path / "in.flac"
    sf.write(flac, np.zeros(1600, np.float32), 16000)
    cases = [
        ([str(tmp_path / "missing.wav")], "missing.wav: no such file"),
        ([str(flac)], "reads raw PCM or WAV"),
        ([str(flac), "--input-format", "wav"], "not a WAV file"),
        (["--steps", "0"], "--steps must be at least 1"),
    ]
    for args, message in cases:
        code = main(["stream", *args, "--model", str(tiny_pipeline_dir), "-o", str(tmp_path / "o.raw")])
        err = capsys.readouterr().err
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_help_starts_without_torch():
    script = (
        "import sys\nfrom fuse_hf.commands import main\n"
        "try:\n    main(['stream', '--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "print('LOADED', sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "LOADED []" in result.stdout, result.stderr


def test_cli_pipes_raw_pcm_as_it_arrives(tiny_pipeline, tiny_pipeline_dir, make_speech):
    """`... | fuse-hf stream --rate 16000 | ...` in a real process: output comes out while the input is still open,
    and all of it equals the offline enhancement of the same 16-bit samples, quantized the same way."""
    script = BIN / "fuse-hf"
    if not script.exists():
        pytest.skip("the fuse-hf console script is not installed next to this interpreter")
    audio = make_speech(2.5, seed=9)
    data = float_to_pcm16(audio)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [
            str(script),
            "stream",
            "--rate",
            "16000",
            "--model",
            str(tiny_pipeline_dir),
            "--steps",
            "1",
            "--device",
            "cpu",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        first = len(data) * 3 // 4  # 1.9 s: more than two windows of 0.5 s, so output is due before the end
        process.stdin.write(data[:first])
        process.stdin.flush()
        deadline, early = time.monotonic() + 240, b""
        while not early and time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stdout], [], [], 1.0)[0]:
                early = os.read(process.stdout.fileno(), 1 << 20)
        assert early, f"no output before the input ended: {process.stderr.read().decode()}"
        process.stdin.write(data[first:])
        process.stdin.close()
        rest = process.stdout.read()
        assert process.wait(timeout=240) == 0, process.stderr.read().decode()
    finally:
        process.kill()
    written = np.frombuffer(early + rest, "<i2")[None]
    noisy = np.frombuffer(data, "<i2")[None]
    assert_same_pcm(written, expected_pcm(tiny_pipeline, noisy, 16000, num_inference_steps=1))
