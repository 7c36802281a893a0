"""Inference speed and memory of FUSEPipeline: real-time factor and peak RSS per input length and step count.

Every (duration, steps) case runs in a fresh Python process, so that one case's allocations cannot raise the next
one's peak and every case pays the same start-up. In that process the pipeline is loaded, warmed up on a 1 s clip
(one-off costs: allocator growth, oneDNN kernel selection), then timed on a speech-like test signal.

* RTF (real-time factor) = wall seconds of one `pipe(...)` call / seconds of audio; the median over `--repeats`
  (one repeat for inputs of 5 minutes or more). Below 1 is faster than real time.
* Peak RSS = `getrusage(RUSAGE_SELF).ru_maxrss` of the case's process: the model, the input, the outputs and the
  largest batch of windows together. The pipeline processes long inputs in fixed windows, so the peak should not
  grow with the input length beyond the arrays that hold the audio itself (about 40 MB each per 10 min at 16 kHz).

Without `--model` the bundled `fuse-small` pipeline is measured if installed; otherwise a pipeline with RANDOM
weights and realistic sizes (the "opt" sizes of shared/notes/cpu-budget.md), labelled as such in the table and JSON:
its timings are those of a trained model of the same sizes, its output is not speech.

Usage (from the repository root):
    python -m benchmarks.bench_inference                                  # 4 s, 60 s, 10 min x 1, 6, 25 steps
    python -m benchmarks.bench_inference --model random --durations 4 60 --steps 1 6 --out /tmp/inference.json
    python -m benchmarks.bench_inference --model pipelines/fuse-small --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .bench_beats import CONFIGS as BEATS_CONFIGS
from .common import REPO, RESULTS_DIR, machine_info, write_json

DEFAULT_OUT = RESULTS_DIR / "inference.json"
LONG_INPUT_S = 300.0  # inputs at least this long are timed once: a 10 min case at 25 steps takes many minutes
MEMORY_LIMIT_MB = 1500.0  # the design goal for a 10 min input on CPU

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


# ----------------------------------------------------------------------------------------- one case


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


def load_benchmark_pipeline(model: str | None, seed: int, device: str):
    """`(pipeline on device, description)`: the folder or repo id given, else the bundled model
    (`fuse_hf.hub.load_pipeline`), else (or with `random`) the random opt-size one."""
    from fuse_hf.hub import bundled_model_path, load_pipeline

    source = None if model == "random" else (model or bundled_model_path())
    if source is not None:
        return load_pipeline(source, device), dict(source=str(source), random_weights=False)
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


def resolved_precision(pipe, device: str) -> str:
    """ "fp32" or "bf16": what the pipeline's autocast really does on this device (older pipelines: fp32)."""
    import torch

    if not hasattr(pipe, "_autocast"):
        return "fp32"
    context = pipe._autocast(torch.device(device))
    return "bf16" if isinstance(context, torch.autocast) else "fp32"


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Times `pipe(audio)` for one case; runs inside its own process (see `main`)."""
    import torch

    from fuse_hf.spectral import SAMPLE_RATE
    from fuse_hf.windows import window_starts

    torch.set_num_threads(spec["threads"])
    started = time.perf_counter()
    pipe, model_info = load_benchmark_pipeline(spec["model"], spec["seed"], spec["device"])
    if hasattr(pipe, "set_precision"):
        pipe.set_precision(spec.get("precision", "auto"))
    if spec.get("vae_slicing"):
        pipe.vae.enable_slicing()  # encode/decode the batch's windows one at a time
    load_s = time.perf_counter() - started
    is_cuda = torch.device(spec["device"]).type == "cuda"

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
        if is_cuda:
            torch.cuda.synchronize()
        return out.audios

    call(audio[:rate], 1)  # warm-up
    rss_before_mb = current_rss_mb()
    if is_cuda:
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    for _ in range(spec["repeats"]):
        begin = time.perf_counter()
        enhanced = call(audio, spec["steps"])
        times.append(time.perf_counter() - begin)
    assert enhanced.shape == audio.shape, (enhanced.shape, audio.shape)

    window, stride = pipe._window_geometry()
    samples_16k = int(round(spec["duration_s"] * SAMPLE_RATE))
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("vae", "unet", "conditioner")}
    wall = statistics.median(times)
    return dict(
        duration_s=spec["duration_s"],
        steps=spec["steps"],
        repeats=len(times),
        wall_s=wall,
        wall_all_s=times,
        rtf=wall / spec["duration_s"],
        windows=len(window_starts(samples_16k, window, stride)),
        window_s=window / SAMPLE_RATE,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        rss_after_load_mb=rss_before_mb,
        peak_cuda_mb=torch.cuda.max_memory_allocated() / 2**20 if is_cuda else None,
        load_s=load_s,
        params=params,
        model=model_info,
        precision=resolved_precision(pipe, spec["device"]),
        output_finite=bool(__import__("numpy").isfinite(enhanced).all()),
    )


# ---------------------------------------------------------------------------------------- the driver


def spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Runs one case in a fresh interpreter and returns its JSON result (or an error record)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    command = [sys.executable, "-m", __spec__.name, "--worker", json.dumps(spec)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return dict(duration_s=spec["duration_s"], steps=spec["steps"], error=f"timed out after {timeout:.0f} s")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(duration_s=spec["duration_s"], steps=spec["steps"], error=f"exit {result.returncode}: {last}")
    return json.loads(lines[-1])


def format_duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 and seconds > 60 else f"{seconds:g} s"


def print_row(case: dict[str, Any]) -> None:
    head = f"| {format_duration(case['duration_s']):>8} | {case['steps']:>5} |"
    if "error" in case:
        print(f"{head} {case['error']}", flush=True)
        return
    print(
        f"{head} {case['precision']:>4} | {case['windows']:>7} | {case['repeats']:>3} | {case['wall_s']:>9.2f} | "
        f"{case['rtf']:>6.3f} | {case['rss_after_load_mb']:>10.0f} | {case['peak_rss_mb']:>8.0f} |",
        flush=True,
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Real-time factor and peak memory of FUSEPipeline per input length and step count.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=None,
        help="pipeline folder, or `random` for RANDOM weights with the opt sizes "
        "(default: the bundled model, else random)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per case")
    parser.add_argument("--durations", type=float, nargs="+", default=[4.0, 60.0, 600.0], help="input seconds")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 6, 25], help="DDIM steps")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="VAE/UNet arithmetic (FUSEPipeline.set_precision): auto = bf16 where the hardware has it",
    )
    parser.add_argument(
        "--vae-slicing",
        action="store_true",
        help="VAE encodes/decodes one window at a time (lower peak memory; the UNet still batches)",
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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


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
    results: dict[str, Any] = dict(
        benchmark="inference",
        machine=machine,
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        settings=dict(
            threads=args.threads,
            batch_size=args.batch_size,
            device=args.device,
            repeats=args.repeats,
            vae_slicing=args.vae_slicing,
            precision=args.precision,
            sampling_rate=args.sampling_rate,
            seed=args.seed,
        ),
        cases=[],
    )
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"load average {machine['load_average_start'][0]:.1f}; {args.threads} threads, batch {args.batch_size}, "
        f"device {args.device}, precision {args.precision}{', VAE slicing' if args.vae_slicing else ''}"
    )
    header_printed = False
    for duration in sorted(args.durations):
        for steps in sorted(args.steps):
            spec = dict(
                results["settings"],
                model=model,
                duration_s=duration,
                steps=steps,
                repeats=1 if duration >= LONG_INPUT_S else args.repeats,
            )
            case = spawn(spec, args.case_timeout)
            if not header_printed and "model" in case:
                info = case["model"]
                name = info["label"] if info["random_weights"] else info["source"]
                params = ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in case["params"].items())
                print(f"model: {name}\nparameters: {params}; windows of {case['window_s']:.2f} s\n")
                print("| input    | steps | prec | windows | rep |    wall s |    RTF | RSS load MB | peak MB |")
                print("|---------:|------:|-----:|--------:|----:|----------:|-------:|------------:|--------:|")
                header_printed = True
                results["model"] = dict(info, params=case["params"], window_s=case["window_s"])
            case.pop("model", None)
            results["cases"].append(case)
            print_row(case)
            write_json(args.out, results)  # after every case: partial runs keep their data

    machine["load_average_end"] = os.getloadavg()
    ok = [c for c in results["cases"] if "error" not in c]
    if ok:
        peaks = {c["duration_s"]: max(d["peak_rss_mb"] for d in ok if d["duration_s"] == c["duration_s"]) for c in ok}
        shortest, longest = min(peaks), max(peaks)
        verdict = "OK" if args.device != "cpu" or peaks[longest] < MEMORY_LIMIT_MB else "OVER the design goal"
        results["memory"] = dict(
            peak_rss_mb_by_duration=peaks,
            limit_mb=MEMORY_LIMIT_MB,
            growth_mb=peaks[longest] - peaks[shortest],
            verdict=verdict,
        )
        print(
            f"\npeak RSS {peaks[shortest]:.0f} MB at {format_duration(shortest)}, {peaks[longest]:.0f} MB at "
            f"{format_duration(longest)} (+{peaks[longest] - peaks[shortest]:.0f} MB); design goal: "
            f"< {MEMORY_LIMIT_MB:.0f} MB up to 10 min: {verdict}"
        )
    print(f"load average at the end {machine['load_average_end'][0]:.1f} (timings move up to 2x with load)")
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0 if len(ok) == len(results["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())
