"""Latency of `FUSEPipeline.stream` against its quality, per window length (issue 14).

For each window length (default 0.5, 1 and 2.04 s, the trained one) a noisy clip is streamed in 20 ms chunks, as a
microphone would give it, and the script reports:

* algorithmic latency: how far the output trails the input before any compute (`FUSEStream.latency_seconds`: one
  window plus a latent frame);
* compute per window: the median wall time of the chunk pushes that enhanced a window (`--repeats` streams), and the
  worst one; a live stream keeps up while it stays below the stride (window minus overlap);
* total latency = algorithmic + the worst compute per window: what a listener hears at most;
* RTF of the stream (wall time / audio duration);
* quality on the stranger split, when ``--quality`` names a `bench_quality` JSON that scored the matching
  ``fuse@6-wW`` systems (``fuse@6`` for the trained window), with the noisy input beside it.

Usage (from the repository root):
    python -m benchmarks.bench_quality --corpus-v2 ~/.cache/fuse-corpus-v2 --num-stranger 42 \\
        --systems identity,fuse@6,fuse@6-w1,fuse@6-w0.5 --out /tmp/bq/windows.json --out-dir /tmp/bq
    python -m benchmarks.bench_streaming --quality /tmp/bq/windows.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from .common import BUNDLED_MODEL, REPO, RESULTS_DIR, fix_thread_pools, machine_info, markdown_table, write_json

DEFAULT_WINDOWS = (0.5, 1.0, 2.04)
CHUNK_SECONDS = 0.02
DEFAULT_CLIP = REPO / "fuse_hf" / "assets" / "noisy_speech.wav"
QUALITY_METRICS = ("pesq", "estoi", "si_sdr")


def window_system(window_seconds: float, trained_seconds: float, steps: int) -> str:
    """The `bench_quality` system name of a window length: ``fuse@6`` for the trained one, ``fuse@6-w0.5`` else."""
    if abs(window_seconds - trained_seconds) < 0.01:
        return f"fuse@{steps}"
    return f"fuse@{steps}-w{window_seconds:g}"


def time_stream(pipe, audio, sampling_rate: int, window_seconds: float, steps: int) -> dict[str, float]:
    """Streams `audio` `(samples,)` in `CHUNK_SECONDS` chunks; returns the algorithmic latency (s), the wall time of
    every push that gave out audio (s) and the stream's RTF."""
    import numpy as np
    import torch

    chunk = int(CHUNK_SECONDS * sampling_rate)
    pieces = iter([audio[i : i + chunk] for i in range(0, audio.size, chunk)])
    stream = pipe.stream(
        pieces,
        sampling_rate=sampling_rate,
        num_inference_steps=steps,
        window_seconds=window_seconds,
        generator=torch.Generator().manual_seed(0),
    )
    pushes, out = [], 0
    start = last = time.perf_counter()
    for enhanced in stream:
        now = time.perf_counter()
        pushes.append(now - last)
        out += np.asarray(enhanced).shape[-1]
        last = now
    wall = time.perf_counter() - start
    assert out == audio.size, f"the stream gave back {out} samples for {audio.size}"
    return dict(
        latency_s=stream.latency_seconds,
        stride_s=stream.window_seconds - stream.overlap_seconds,
        window_s=stream.window_seconds,
        pushes_s=pushes,
        rtf=wall / (audio.size / sampling_rate),
    )


def quality_rows(path: Path | None, systems: dict[float, str]) -> dict[str, dict[str, float]]:
    """Overall stranger-split scores of the noisy input and of each window's system, from a `bench_quality` JSON."""
    if path is None:
        return {}
    summary = json.loads(Path(path).read_text())["summary"]
    wanted = ["identity", *systems.values()]
    return {name: summary[name]["stranger"] for name in wanted if name in summary}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(BUNDLED_MODEL), help="pipeline folder (default: the bundled one)")
    parser.add_argument("--clip", default=str(DEFAULT_CLIP), help="noisy speech to stream (default: the demo clip)")
    parser.add_argument("--windows", type=float, nargs="+", default=list(DEFAULT_WINDOWS), help="window lengths (s)")
    parser.add_argument("--steps", type=int, default=6, help="DDIM steps")
    parser.add_argument("--repeats", type=int, default=3, help="streams per window length")
    parser.add_argument("--quality", type=Path, default=None, help="a bench_quality JSON with the fuse@6-wW systems")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "streaming.json", help="JSON; the table beside it")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    fix_thread_pools()
    from tqdm.auto import tqdm

    from fuse_hf import FUSEPipeline
    from fuse_hf.audio import load_mono

    pipe = FUSEPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    rate = pipe.sampling_rate
    audio = load_mono(args.clip, rate)
    trained = pipe._window_geometry()[0] / pipe.sampling_rate
    systems = {w: window_system(w, trained, args.steps) for w in args.windows}
    time_stream(pipe, audio[:rate], rate, args.windows[0], 1)  # warm-up: allocator, oneDNN kernels

    cases = []
    for window in tqdm(args.windows, desc="window lengths"):
        runs = [time_stream(pipe, audio, rate, window, args.steps) for _ in range(args.repeats)]
        # The pushes that enhanced a window take far longer than those that only buffered input.
        windows = [p for run in runs for p in run["pushes_s"] if p > 0.25 * max(run["pushes_s"])]
        first = runs[0]
        cases.append(
            dict(
                window_seconds=first["window_s"],
                stride_seconds=first["stride_s"],
                algorithmic_latency_s=first["latency_s"],
                compute_per_window_s=statistics.median(windows),
                worst_compute_per_window_s=max(windows),
                total_latency_s=first["latency_s"] + max(windows),
                rtf=statistics.median(run["rtf"] for run in runs),
                system=systems[window],
            )
        )
    quality = quality_rows(args.quality, systems)
    result = dict(
        machine=machine_info(),
        model=args.model,
        clip=str(args.clip),
        steps=args.steps,
        chunk_seconds=CHUNK_SECONDS,
        cases=cases,
        quality=quality,
    )
    write_json(args.out, result)
    table = render_table(cases, quality, result["machine"], args.steps)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    return 0


def render_table(cases: list[dict], quality: dict[str, dict[str, float]], machine: dict, steps: int) -> str:
    """The markdown latency vs quality table."""
    noisy = quality.get("identity", {})
    headers = ["window s", "algorithmic latency ms", "compute/window ms (worst)", "total latency ms", "RTF"]
    headers += [f"{m} (noisy {noisy[m]:.3g})" if m in noisy else m for m in QUALITY_METRICS if quality]
    rows = []
    for case in cases:
        row = [
            f"{case['window_seconds']:.2f}",
            f"{1000 * case['algorithmic_latency_s']:.0f}",
            f"{1000 * case['compute_per_window_s']:.0f} ({1000 * case['worst_compute_per_window_s']:.0f})",
            f"{1000 * case['total_latency_s']:.0f}",
            f"{case['rtf']:.3f}",
        ]
        scores = quality.get(case["system"], {})
        row += [f"{scores[m]:.3f}" if m in scores else "–" for m in QUALITY_METRICS if quality]
        rows.append(row)
    title = (
        f"Streaming latency vs quality, {steps} steps, 20 ms chunks, {machine['cpu']} "
        f"({', '.join(machine['cpu_flags']) or 'no AVX2'}), {machine['cores']} cores, fp32 unless bf16 is native"
    )
    return title + "\n\n" + markdown_table(headers, rows, right_align=True)


if __name__ == "__main__":
    raise SystemExit(main())
