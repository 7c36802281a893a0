"""`fuse-hf stream [INPUT] [-o OUTPUT]`: enhance live audio, raw PCM or WAV, from a pipe or a file as it arrives.

```bash
arecord -f S16_LE -r 16000 | fuse-hf stream --rate 16000 | aplay -f S16_LE -r 16000
fuse-hf stream noisy.wav -o enhanced.wav --window-seconds 1 --realtime
```

Input is read at its own pace (whatever is available, up to `--chunk-ms`, is handed on at once) and every enhanced
chunk is written and flushed as soon as [`FUSEPipeline.stream`] yields it. The output equals `fuse-hf enhance` of
the same audio with the same seed, quantized to 16-bit; it trails the input by about one window
(`--window-seconds`) plus the time to enhance a window.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from collections.abc import Iterator
from typing import IO

from . import error
from .options import add_generation_arguments

_RIFF_HEADER = struct.Struct("<4sI4s")
_CHUNK_HEADER = struct.Struct("<4sI")
_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT, _WAVE_FORMAT_EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZE = 0xFFFFFFFF  # the RIFF and data sizes of a WAV written to a pipe, whose length is not known yet


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `stream` on `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "stream",
        help="enhance live audio (raw PCM or WAV) from standard input or a file as it arrives",
        description=(
            "Enhance audio as it arrives: raw signed 16-bit little-endian PCM (--rate, --channels) or WAV from "
            "standard input or a file, written as soon as each window is enhanced, flushed chunk by chunk, to "
            "standard output or a file (16-bit PCM: raw, or WAV when the input is WAV or OUTPUT ends in .wav). "
            "The output trails the input by about one window plus the time to enhance it. "
            "Example: arecord -f S16_LE -r 16000 | fuse-hf stream --rate 16000 | aplay -f S16_LE -r 16000"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("input", nargs="?", default="-", help="raw PCM or WAV file to read; - is standard input")
    parser.add_argument("-o", "--output", default="-", help="file to write; - is standard output")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate of raw input in Hz (WAV: its header's)")
    parser.add_argument("--channels", type=int, default=1, help="channels of raw input (WAV: its header's)")
    parser.add_argument(
        "--input-format",
        choices=["auto", "raw", "wav"],
        default="auto",
        help="auto: WAV when the input starts with a RIFF/WAVE header, else raw s16le",
    )
    parser.add_argument(
        "--output-format",
        choices=["auto", "raw", "wav"],
        default="auto",
        help="auto: WAV when OUTPUT ends in .wav or the input is WAV, else raw s16le",
    )
    add_generation_arguments(parser)
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=None,
        help="window length, the algorithmic latency (default: the model's trained window, 2.04 s for fuse-small)",
    )
    parser.add_argument(
        "--overlap-seconds", type=float, default=None, help="cross-fade between windows (default: 1/32 window)"
    )
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="most input read at a time, in milliseconds")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="treat the input as live: warn on standard error when enhancing falls behind the input's pace",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)"
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="VAE/UNet arithmetic (default: auto, or the FUSE_HF_PRECISION environment variable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=run)
    return parser


# ------------------------------------------------------------------------------------------- PCM


def pcm16_to_float(data: bytes, channels: int):
    """Interleaved s16le bytes -> `(channels, samples)` float32 in [-1, 1) (divided by 32768, as libsndfile reads
    PCM_16)."""
    import numpy as np

    samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels).T
    return samples.astype(np.float32) / np.float32(32768.0)


def float_to_int16(audio):
    """`(channels, samples)` float -> `(samples, channels)` int16: times 32767, rounded, clipped to 16 bits (as
    libsndfile writes PCM_16)."""
    import numpy as np

    scaled = np.rint(np.asarray(audio, np.float32).T * np.float32(32767.0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def float_to_pcm16(audio) -> bytes:
    """`(channels, samples)` float -> interleaved s16le bytes (`float_to_int16`)."""
    return float_to_int16(audio).astype("<i2").tobytes()


def _decode(data: bytes, channels: int, kind: str, width: int):
    """Interleaved little-endian samples (`kind` "pcm" of 1-4 bytes or "float" of 4/8 bytes) -> `(channels, n)`."""
    import numpy as np

    if kind == "float":
        samples = np.frombuffer(data, dtype=f"<f{width}").astype(np.float32)
    elif width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        samples = (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    else:
        samples = (np.frombuffer(data, dtype=f"<i{width}") / float(1 << (8 * width - 1))).astype(np.float32)
    return np.ascontiguousarray(samples.reshape(-1, channels).T)


class PCMReader:
    """Reads raw s16le or WAV from a binary stream, at the stream's own pace.

    Each chunk is whatever the stream has (one `read1`: a pipe gives what is in it, without waiting for more), at
    most `chunk_frames` frames, whole frames only; a partial frame waits for its other bytes.

    Attributes:
        rate, channels: of the input (a WAV header's when the input is WAV).
        is_wav: whether the input had a WAV header.
        frames: frames read so far.
        waited: seconds spent blocked waiting for input.
    """

    def __init__(
        self,
        stream: IO[bytes],
        rate: int,
        channels: int,
        input_format: str = "auto",
        chunk_ms: float = 20.0,
        name: str = "input",
    ):
        self.stream, self.name = stream, name
        self.rate, self.channels = rate, channels
        self.kind, self.width = "pcm", 2
        self.frames, self.waited = 0, 0.0
        self._pending = b""
        self._data_left: int | None = None  # bytes left in a WAV data chunk (None: until the end)
        head = self._read_exactly(12) if input_format != "raw" else b""
        self.is_wav = len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"
        if input_format == "wav" and not self.is_wav:
            raise ValueError(f"{name}: not a WAV file (no RIFF/WAVE header).")
        if self.is_wav:
            self._read_wav_header()
        else:
            self._pending = head
        if self.rate <= 0 or self.channels <= 0:
            raise ValueError(f"{name}: --rate and --channels must be positive, got {self.rate} and {self.channels}.")
        self.frame_bytes = self.channels * self.width
        self.chunk_bytes = max(1, round(chunk_ms * self.rate / 1000)) * self.frame_bytes

    def _read(self, size: int) -> bytes:
        started = time.perf_counter()
        read = getattr(self.stream, "read1", self.stream.read)
        data = read(size)
        self.waited += time.perf_counter() - started
        return data

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = self._read(size - len(data))
            if not more:
                break
            data += more
        return data

    def _read_wav_header(self) -> None:
        """Reads chunks up to `data`, taking the format from `fmt `; a data size of 0 or from 0x7FFFFFFF up (a WAV
        written to a pipe) means "until the end"."""
        fmt = None
        while True:
            header = self._read_exactly(_CHUNK_HEADER.size)
            if len(header) < _CHUNK_HEADER.size:
                raise ValueError(f"{self.name}: WAV header ends before its data chunk.")
            chunk_id, size = _CHUNK_HEADER.unpack(header)
            if chunk_id == b"data":  # arecord writes 0x7FFFFFFF for "unknown", sox and ffmpeg 0xFFFFFFFF
                self._data_left = None if size == 0 or size >= 0x7FFFFFFF else size
                break
            body = self._read_exactly(size + (size & 1))
            if chunk_id == b"fmt ":
                fmt = body
        if fmt is None or len(fmt) < 16:
            raise ValueError(f"{self.name}: WAV without a format chunk.")
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
            tag = struct.unpack("<H", fmt[24:26])[0]
        width = bits // 8
        if not (tag == _WAVE_FORMAT_PCM and width in (1, 2, 3, 4)) and not (
            tag == _WAVE_FORMAT_FLOAT and width in (4, 8)
        ):
            raise ValueError(
                f"{self.name}: WAV format {tag} with {bits}-bit samples is not supported "
                "(8/16/24/32-bit PCM or 32/64-bit float)."
            )
        self.kind = "float" if tag == _WAVE_FORMAT_FLOAT else "pcm"
        self.width, self.rate, self.channels = width, rate, channels

    def __iter__(self) -> Iterator:
        """`(channels, samples)` float32 chunks until the input ends."""
        while True:
            want = self.chunk_bytes - len(self._pending)
            if self._data_left is not None:  # a WAV data chunk of known size: what follows it is not audio
                want = min(want, self._data_left)
            new = self._read(want) if want > 0 else b""
            if self._data_left is not None:
                self._data_left -= len(new)
            if not new:  # the input has ended
                if self._pending:
                    print(
                        f"fuse-hf stream: {self.name}: dropped a trailing partial frame of {len(self._pending)} "
                        "byte(s).",
                        file=sys.stderr,
                    )
                return
            data = self._pending + new
            whole = len(data) - len(data) % self.frame_bytes
            self._pending = data[whole:]
            if whole:
                self.frames += whole // self.frame_bytes
                yield _decode(data[:whole], self.channels, self.kind, self.width)


class PCMWriter:
    """Writes 16-bit PCM, raw or as WAV, to a binary stream, flushing every chunk.

    A WAV written to a pipe carries 0xFFFFFFFF as its sizes (what arecord and ffmpeg do; aplay and sox read it to
    the end); written to a file, its sizes are set right on `close`.
    """

    def __init__(self, stream: IO[bytes], rate: int, channels: int, wav: bool):
        self.stream, self.rate, self.channels, self.wav = stream, rate, channels, wav
        self.bytes_written = 0
        self.closed = False
        if wav:
            self.stream.write(self._wav_header(_UNKNOWN_SIZE))
            self.stream.flush()

    def _wav_header(self, data_size: int) -> bytes:
        riff_size = _UNKNOWN_SIZE if data_size == _UNKNOWN_SIZE else 36 + data_size
        block = 2 * self.channels
        return (
            _RIFF_HEADER.pack(b"RIFF", riff_size, b"WAVE")
            + _CHUNK_HEADER.pack(b"fmt ", 16)
            + struct.pack("<HHIIHH", _WAVE_FORMAT_PCM, self.channels, self.rate, self.rate * block, block, 16)
            + _CHUNK_HEADER.pack(b"data", data_size)
        )

    def write(self, audio) -> None:
        """Writes `(channels, samples)` float audio and flushes it."""
        data = float_to_pcm16(audio)
        self.stream.write(data)
        self.stream.flush()
        self.bytes_written += len(data)

    def close(self) -> None:
        """Fixes a WAV file's sizes where the stream can seek (once; later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        if self.wav and self.stream.seekable():
            self.stream.seek(0)
            self.stream.write(self._wav_header(self.bytes_written))
            self.stream.seek(0, os.SEEK_END)
        self.stream.flush()


# ------------------------------------------------------------------------------------------- real time


class RealtimeMonitor:
    """Tells when enhancing falls behind the input's pace.

    The stream is behind by (seconds spent working, not waiting for input) minus (seconds of audio read): a live
    source that is kept up with leaves time to wait; one that is not piles up in the pipe. A warning is printed
    when the lag first passes `threshold` seconds and again whenever it has grown by another `threshold`.
    """

    def __init__(self, threshold: float = 0.5, clock=time.perf_counter, out: IO[str] | None = None):
        self.threshold, self.clock, self.out = threshold, clock, out or sys.stderr
        self.started = None
        self.warned_at = None
        self.warnings = 0

    def start(self) -> None:
        self.started = self.clock()

    def lag(self, audio_seconds: float, waited: float) -> float:
        """Seconds behind after `audio_seconds` of input, of which `waited` seconds were spent waiting for it."""
        return (self.clock() - self.started - waited) - audio_seconds

    def check(self, audio_seconds: float, waited: float) -> float:
        """Warns when behind (see the class); returns the lag in seconds."""
        lag = self.lag(audio_seconds, waited)
        if lag > self.threshold and (self.warned_at is None or lag > self.warned_at + self.threshold):
            busy = self.clock() - self.started - waited
            print(
                f"fuse-hf stream: WARNING: falling behind real time by {lag:.1f} s: {audio_seconds:.1f} s of audio "
                f"took {busy:.1f} s to enhance (real-time factor {busy / max(audio_seconds, 1e-9):.2f}). "
                "Try fewer --steps, a shorter --window-seconds or a GPU (--device cuda).",
                file=self.out,
            )
            self.warned_at = lag
            self.warnings += 1
        return lag


# ------------------------------------------------------------------------------------------- run


def _open_input(path: str, input_format: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder, expected a raw PCM or WAV file.")
    suffix = os.path.splitext(path)[1].lower()
    if input_format == "auto" and suffix not in (".wav", ".wave"):
        from ..audio import AUDIO_EXTENSIONS

        if suffix in AUDIO_EXTENSIONS:  # read as raw PCM, a FLAC or MP3 file would be full-scale noise
            raise ValueError(
                f"{path}: fuse-hf stream reads raw PCM or WAV; convert it to WAV or use `fuse-hf enhance`."
            )
    return open(path, "rb")  # noqa: SIM115 (closed by run)


def run(args: argparse.Namespace) -> int:
    """Runs `fuse-hf stream`; returns the exit code."""
    stdout = sys.stdout.buffer
    # Audio goes to standard output: anything a library prints there would corrupt it, so prints go to stderr.
    saved_stdout, sys.stdout = sys.stdout, sys.stderr
    source = sink = writer = None
    try:
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}.")
        if args.chunk_ms <= 0:
            raise ValueError(f"--chunk-ms must be positive, got {args.chunk_ms}.")
        if args.output != "-" and os.path.exists(args.output) and not args.overwrite:
            raise ValueError(f"{args.output}: exists (use --overwrite).")
        source = _open_input(args.input, args.input_format)
        name = "standard input" if args.input == "-" else args.input
        reader = PCMReader(source, args.rate, args.channels, args.input_format, args.chunk_ms, name)

        import torch

        from .enhance import _load_pipeline

        pipe = _load_pipeline(args.model, args.device, args.backend)
        if args.precision is not None:
            pipe.set_precision(args.precision)
        kwargs = {} if args.noise_scale is None else {"noise_scale": args.noise_scale}
        monitor = RealtimeMonitor()

        def chunks():
            reader.waited = 0.0  # the header is not part of the stream's pace
            monitor.start()
            for chunk in reader:
                yield chunk
                if args.realtime:
                    monitor.check(reader.frames / reader.rate, reader.waited)

        enhanced = pipe.stream(
            chunks(),
            sampling_rate=reader.rate,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            attenuation_limit_db=args.atten_lim_db,
            max_gain_db=args.max_gain_db,
            generator=torch.Generator().manual_seed(args.seed),
            window_seconds=args.window_seconds,
            overlap_seconds=args.overlap_seconds,
            full_band=args.full_band,
            **kwargs,
        )
        wav = args.output_format == "wav" or (
            args.output_format == "auto"
            and (args.output.lower().endswith(".wav") or (args.output == "-" and reader.is_wav))
        )
        sink = stdout if args.output == "-" else open(args.output, "wb")  # noqa: SIM115 (closed below)
        writer = PCMWriter(sink, reader.rate, reader.channels, wav)
        for chunk in enhanced:
            writer.write(chunk.reshape(reader.channels, -1))
        writer.close()
        if args.realtime:
            seconds = reader.frames / reader.rate
            busy = time.perf_counter() - monitor.started - reader.waited
            print(
                f"fuse-hf stream: {seconds:.1f} s of audio, real-time factor {busy / max(seconds, 1e-9):.3f}, "
                f"latency {enhanced.latency_seconds:.2f} s plus the time to enhance a window"
                + (f"; fell behind ({monitor.warnings} warning(s))." if monitor.warnings else "; kept up."),
                file=sys.stderr,
            )
        return 0
    except ValueError as err:
        return error(str(err), "stream")
    except BrokenPipeError:  # the reader went away (e.g. aplay was stopped): not an error of ours
        try:
            sys.stderr.flush()
        finally:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout.fileno())
        return 0
    finally:  # also on Ctrl-C, the usual end of a live stream: what was written stays a valid WAV file
        sys.stdout = saved_stdout
        if writer is not None and sink is not stdout:
            writer.close()
        if source is not None and source is not sys.stdin.buffer:
            source.close()
        if sink is not None and sink is not stdout:
            sink.close()
