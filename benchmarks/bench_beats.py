"""BEATs forward time and peak memory: the official iter3 configuration vs. our small conditioner configuration.

Each case (configuration x input length) runs in its own subprocess, so that its peak resident memory
(``ru_maxrss``) is its own; weights are random (the time and memory do not depend on their values).

    python -m benchmarks.bench_beats --out beats_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

from fuse_hf.factory import BEATS_ITER3

from .common import REPO, write_json

CONFIGS = {
    "iter3": BEATS_ITER3,  # BEATs_iter3.pt: 12 layers x 768, 90 M parameters.
    # The CPU-sized conditioner: 4 layers x 384, the iter3 layout otherwise.
    "small": {
        **BEATS_ITER3,
        "encoder_layers": 4,
        "encoder_embed_dim": 384,
        "encoder_ffn_embed_dim": 1536,
        "encoder_attention_heads": 6,
    },
}
DURATIONS_S = (4.0, 60.0)


def run_case(config_name: str, seconds: float, repeats: int, threads: int) -> dict:
    """Times `encode_tokens` on one `(1, seconds * 16000)` input; runs in the child process."""
    import torch

    from fuse_hf.factory import make_conditioner

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_before_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = make_conditioner(**CONFIGS[config_name]).eval()
    waveform = 0.1 * torch.randn(1, int(seconds * 16000))
    times = []
    with torch.inference_mode():
        model.encode_tokens(waveform)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            features, _ = model.encode_tokens(waveform)
            times.append(time.perf_counter() - start)
    return {
        "config": config_name,
        "seconds": seconds,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "tokens": features.shape[1],
        "median_s": statistics.median(times),
        "real_time_factor": statistics.median(times) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_model_mb": rss_before_model / 1024,
        "repeats": repeats,
        "threads": threads,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--durations", nargs="+", type=float, default=list(DURATIONS_S), help="input lengths, s")
    parser.add_argument("--_case", nargs=2, help=argparse.SUPPRESS)  # child mode: CONFIG SECONDS
    args = parser.parse_args(argv)

    if args._case:
        print(json.dumps(run_case(args._case[0], float(args._case[1]), args.repeats, args.threads)))
        return 0

    results = []
    for name in args.configs:
        for seconds in args.durations:
            # Long inputs are slow on the full model: fewer repeats keep the run in minutes.
            repeats = args.repeats if seconds <= 10 else max(1, min(args.repeats, 3))
            command = [sys.executable, "-m", __spec__.name, "--_case", name, str(seconds)]
            command += ["--repeats", str(repeats), "--threads", str(args.threads)]
            child = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
            if child.returncode != 0:
                print(f"{name} {seconds:g} s failed:\n{child.stderr}", file=sys.stderr)
                return 1
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))

    header = f"{'config':8s} {'params':>8s} {'input':>7s} {'tokens':>7s} {'median':>9s} {'RTF':>7s} {'peak RSS':>10s}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['config']:8s} {r['parameters_m']:7.1f}M {r['seconds']:6.0f}s {r['tokens']:7d} "
            f"{r['median_s']:8.3f}s {r['real_time_factor']:7.4f} {r['peak_rss_mb']:8.0f}MB"
        )
    if args.out:
        meta = {"python": platform.python_version(), "machine": platform.machine(), "threads": args.threads}
        write_json(args.out, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
