"""How the initial noise's scale (`noise_scale`, the sampling temperature) and the step count trade intelligibility
against naturalness, on a dev set that is not the quality benchmark's.

Dev set: in-domain mixtures of the corpus valid splits planned exactly as `bench_quality.py` plans them but with
another seed (default 1; the benchmark uses 20261124), so the mixtures (noise excerpts, SNRs, levels, talker
choices) differ, and without the out-of-domain subset, which must never be tuned on. The speech files are the
same valid split. Every model and setting enhances the same pairs with the same seeds, through the quality
benchmark's own call of the pipeline (`benchmarks.quality.run.make_enhancer`); scores through `fuse_hf.metrics`.
This is where the pipeline's default `noise_scale` was chosen.

    python -m benchmarks.bench_noise_scale --model pipelines/fuse-small --model OTHER --settings 6:1,6:0.25,1:0.25
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fuse_hf import metrics as M
from fuse_hf.audio import SAMPLE_RATE
from fuse_hf.hub import load_pipeline

from .bench_quality import build_parser as quality_parser
from .common import BUNDLED_MODEL, DEFAULT_CORPUS, RESULTS_DIR, cpu_model, markdown_table, write_json
from .quality.evaluation_set import plan_pairs, read_manifest, render_pair
from .quality.run import make_enhancer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="pipeline folder (repeat to compare models; default: pipelines/fuse-small)",
    )
    parser.add_argument("--settings", default="6:1,6:0.5,6:0.25,6:0,1:0.25", help="comma list of STEPS:NOISE_SCALE")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--num-pairs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1, help="dev-set seed (must differ from bench_quality's)")
    parser.add_argument("--metrics", default="pesq,estoi,si_sdr,dnsmos")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "noise_scale.json")
    args = parser.parse_args(argv)
    if args.seed == quality_parser().get_default("seed"):
        parser.error("--seed is the quality benchmark's: choose another, or the default is tuned on the test set.")
    torch.set_num_threads(args.threads)
    models = args.model or [str(BUNDLED_MODEL)]
    settings = [(int(s.split(":")[0]), float(s.split(":")[1])) for s in args.settings.split(",")]
    metrics = M.available_metrics(args.metrics.split(","))
    pairs = plan_pairs(read_manifest(args.corpus), args.seed, args.num_pairs, 0, 8.0)
    audio = [render_pair(spec, args.corpus) for spec in pairs]

    from tqdm.auto import tqdm

    rows = {"noisy input": [M.compute_metrics(clean, noisy, SAMPLE_RATE, metrics) for clean, noisy in audio]}
    t0 = time.perf_counter()
    for model in models:
        pipe = load_pipeline(model, device="cpu")
        for steps, scale in settings:
            name = f"{Path(model).name if len(models) == 1 else model} | {steps} steps, noise scale {scale:g}"
            enhance = make_enhancer(f"fuse@{steps}-n{scale:f}", pipe)  # the benchmark's own call of the pipeline
            rows[name] = []
            for spec, (clean, noisy) in tqdm(list(zip(pairs, audio)), desc=name, unit="pair"):
                out = enhance(noisy, SAMPLE_RATE, spec["seed"] % 2**31)
                rows[name].append(M.compute_metrics(clean, out, SAMPLE_RATE, metrics))
    means = {name: {k: M.nanmean([r[k] for r in scores]) for k in scores[0]} for name, scores in rows.items()}

    keys = list(next(iter(means.values())))
    print(
        markdown_table(
            ["system", *keys], [[name, *(f"{m[k]:.3f}" for k in keys)] for name, m in means.items()], right_align=True
        )
    )
    write_json(
        args.out,
        {
            "config": {
                "models": models,
                "settings": settings,
                "seed": args.seed,
                "num_pairs": len(pairs),
                "threads": args.threads,
                "machine": cpu_model(),
                "date": time.strftime("%Y-%m-%d"),
                "seconds": round(time.perf_counter() - t0, 1),
            },
            "means": means,
            "scores": rows,
        },
        indent=1,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
