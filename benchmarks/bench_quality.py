"""Quality benchmark of fuse-small against the noisy input, noisereduce and DeepFilterNet3.

Builds a fixed, seeded evaluation set from the corpus *valid* splits (never used for training):

* in-domain: 60 pairs = 4 noise types (recorded valid noise, white, pink, babble of 4 other valid
  talkers) x 5 SNRs (-5, 0, 5, 10, 15 dB) x 3, with 20 wideband hedgewars voices and 40 Dutch
  (band-limited) fillets lines as speech;
* out-of-domain: 20 pairs with the narrowband French telephone prompts (``speech_narrowband/``) as
  speech, 4 noise types x 5 SNRs.

Then, on the same pairs and in one run, it enhances with every system, scores PESQ-WB, ESTOI,
SI-SDR and DNSMOS SIG/BAK/OVRL through `fuse_hf.metrics`, measures the real-time factor (torch and
ONNX at 2 threads, median over repeats on 4 s clips) and writes:

* ``--out`` JSON (per-pair scores, summaries, timings, configuration);
* ``<out-dir>/results.md``: overall / by SNR / by noise / by speech source / out-of-domain tables,
  each fuse-small figure with its ratio to DeepFilterNet3's, and the acceptance checks of issue 6;
* plots under ``<out-dir>/``: metrics vs steps, guidance on vs off, PESQ vs SNR, spectrograms.

```bash
python -m benchmarks.bench_quality                                     # everything, writes docs/
python -m benchmarks.bench_quality --limit 4 --systems peers --out-dir /tmp/bq   # quick check
python -m benchmarks.bench_quality --model pipelines/fuse-small --systems identity,deepfilternet3,fuse@6
python -m benchmarks.bench_quality --render-only                       # results.md again from docs/bench_quality.json
```

The evaluation set is `benchmarks.quality.evaluation_set`, the systems and their runs `benchmarks.quality.run`, the
tables and plots `benchmarks.quality.report`; this script ties them together.

Systems: ``identity`` (the noisy input), ``noisereduce``, ``deepfilternet3``, ``fuse@N`` (N DDIM
steps, guidance 1.0, the pipeline's default noise scale; N in 1, 2, 4, 6, 10), ``fuse@6-g0`` (guidance off,
``guidance_scale=0``) and ``fuse@6-n1`` (initial noise at full scale, ``noise_scale=1``: sampling at temperature 1).
Groups: ``peers``, ``fuse``, ``all``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fuse_hf import metrics as M
from fuse_hf.hub import load_pipeline

from .common import BUNDLED_MODEL, DEFAULT_CORPUS, REPO, machine_summary, write_json
from .quality.evaluation_set import example_pair_ids, limit_pairs, plan_pairs, read_manifest
from .quality.report import PLOT_FILES, make_plots, summarise, table, write_markdown
from .quality.run import ALL_SYSTEMS, make_enhancer, parse_systems, score_pairs, time_system, timing_clips


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="FUSE pipeline folder")
    parser.add_argument("--systems", default="all", help=f"comma list of {', '.join(ALL_SYSTEMS)} or peers, fuse, all")
    parser.add_argument(
        "--limit", type=int, default=None, help="score only the first N pairs of each subset (quick runs)"
    )
    parser.add_argument("--num-pairs", type=int, default=60, help="in-domain pairs")
    parser.add_argument("--num-ood", type=int, default=20, help="out-of-domain pairs (narrowband French prompts)")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="longer speech files are cropped to this")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (timings are for 2 cores)")
    parser.add_argument("--timing-clips", type=int, default=3, help="4 s clips timed per system")
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--metrics", default=",".join(M.METRICS))
    parser.add_argument("--out-dir", type=Path, default=REPO / "docs", help="results.md and plots go here")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: <out-dir>/bench_quality.json)")
    parser.add_argument(
        "--save-audio", type=Path, default=None, help="also write clean/noisy/enhanced WAVs under this folder"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="enhance nothing: rewrite results.md from the JSON of the last run (and its plots)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render_only:
        result = json.loads((args.out or args.out_dir / "bench_quality.json").read_text())
        plots = {title: name for title, name in PLOT_FILES.items() if (args.out_dir / name).is_file()}
        write_markdown(args.out_dir / "results.md", result, plots)
        print(f"Wrote {args.out_dir / 'results.md'} from the JSON of the run of {result['config']['date']}.")
        return 0
    t_start = time.perf_counter()
    try:
        systems = parse_systems(args.systems)
        rows = read_manifest(args.corpus)
        pairs = plan_pairs(rows, args.seed, args.num_pairs, args.num_ood, args.max_seconds)
        # On the CPU whatever the machine has: the timings are for CPU cores.
        pipe = load_pipeline(args.model, device="cpu") if any(s.startswith("fuse") for s in systems) else None
    except ValueError as err:
        print(f"bench_quality: error: {err}", file=sys.stderr)
        return 1
    pairs = limit_pairs(pairs, args.limit)
    import torch

    torch.set_num_threads(args.threads)
    metrics = M.available_metrics(args.metrics)
    enhancers = {s: make_enhancer(s, pipe) for s in systems}
    from tqdm.auto import tqdm

    t_scores = time.perf_counter()
    run = score_pairs(pairs, args.corpus, enhancers, metrics, example_pair_ids(pairs), args.save_audio)
    t_scores = time.perf_counter() - t_scores
    scores, clean_scores, audio_seconds = run["scores"], run["clean_scores"], run["audio_seconds"]

    # Timing on fixed 4 s clips cut from the first pairs, after scoring so that every system is warm and nothing
    # else of this script runs in parallel.
    t_timing = time.perf_counter()
    clips = timing_clips(pairs, args.corpus, args.timing_clips, args.seed)
    timing = {}
    for system in tqdm(systems, desc="timing", unit="system"):
        timing[system] = time_system(system, enhancers[system], clips, args.timing_repeats)
        timing[system]["rtf_whole_set"] = run["enhance_wall"][system] / audio_seconds
    t_timing = time.perf_counter() - t_timing

    summary = summarise(scores, pairs)
    result = {
        "config": {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine_summary(),
            "seed": args.seed,
            "threads": args.threads,
            "limit": args.limit,
            "model": str(args.model) if pipe else None,
            "metrics": list(metrics),
            "timing_clips": len(clips),
            "timing_repeats": args.timing_repeats,
            "max_seconds": args.max_seconds,
            "corpus": str(args.corpus),
        },
        "systems": systems,
        "pairs": pairs,
        "scores": scores,
        "summary": summary,
        "timing": timing,
    }
    if clean_scores:
        result["clean_dnsmos"] = {
            part: {
                k: M.nanmean([c[k] for c, p in zip(clean_scores, pairs) if p["subset"] == sub]) for k in clean_scores[0]
            }
            for part, sub in (("overall", "in-domain"), ("out_of_domain", "out-of-domain"))
        }
    result["runtime_s"] = {
        "enhance_and_score": t_scores,
        "timing": t_timing,
        "audio_seconds": audio_seconds,
        "total": time.perf_counter() - t_start,
    }

    plots = make_plots(args.out_dir, result, run["examples"])
    write_markdown(args.out_dir / "results.md", result, plots)
    out = write_json(args.out or args.out_dir / "bench_quality.json", result, indent=1)

    print(table(summary, "overall", systems, timing, result.get("clean_dnsmos", {}).get("overall")))
    print("\nout-of-domain:")
    print(table(summary, "out_of_domain", systems, None, result.get("clean_dnsmos", {}).get("out_of_domain")))
    print(
        f"\n{len(pairs)} pairs, {audio_seconds:.0f} s of audio; run {result['runtime_s']['total']:.0f} s "
        f"(enhance+score {t_scores:.0f} s, timing {t_timing:.0f} s). Wrote {out}, {args.out_dir / 'results.md'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
