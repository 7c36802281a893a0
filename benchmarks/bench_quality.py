"""Quality benchmark of fuse-small against the noisy input, noisereduce and DeepFilterNet3.

Two evaluation sets, both fixed by one seed, scored in one run:

* **stranger split** (the headline; corpus v2, ``--corpus-v2``): ``--num-stranger`` (84) of the 280 fixed mixtures
  of ``dev_stranger/mixtures.csv``: languages (be, ro, it), voices and noise recordings that no training split
  contains, mixed at -5..20 dB, plus clean inputs. Stratified: the same count per SNR bucket (-5, 0, 5, 10, 15,
  20 dB, clean), balanced over languages and noise kinds within each bucket. Models are chosen on it.
* **in-domain / out-of-domain** (the v1 corpus, ``--corpus``), second: 60 pairs from the v1 corpus *valid* splits
  (4 noise types x 5 SNRs, -5..15 dB; wideband hedgewars voices and band-limited Dutch fillets lines) and 20 with
  the narrowband French prompts as speech.

Name the corpora to evaluate: ``--corpus-v2 DIR`` alone runs the stranger split, ``--corpus DIR`` alone the v1 sets,
neither runs both from their default places ($FUSE_CORPUS_V2 or ~/.cache/fuse-corpus-v2, $FUSE_CORPUS or
~/.cache/fuse-corpus).

On the same pairs and in one run it enhances with every system, scores PESQ-WB, ESTOI, SI-SDR and DNSMOS SIG/BAK/OVRL
through `fuse_hf.metrics` and the output's energy above 4 kHz against the clean speech's, runs 2 s of digital silence
through every FUSE system, measures the real-time factor (2 torch threads, median over repeats on 4 s clips) and
writes:

* ``--out`` JSON (per-pair scores, summaries, silence levels, timings, configuration);
* ``<out-dir>/results.md``: the stranger split's tables (overall, by SNR bucket, language, noise kind, bandwidth,
  the high band, digital silence), then the v1 tables (overall / by SNR / by noise / by speech source /
  out-of-domain), each fuse-small figure with its ratio to DeepFilterNet3's, and the acceptance checks of issue 12
  (stranger split) and issue 6 (v1 corpus);
* plots under ``<out-dir>/``: metrics vs SNR bucket, metrics vs steps, guidance scales, PESQ vs SNR, spectrograms.

```bash
python -m benchmarks.bench_quality                                     # everything, writes docs/
python -m benchmarks.bench_quality --corpus-v2 ~/.cache/fuse-corpus-v2 --systems headline   # the stranger split
python -m benchmarks.bench_quality --corpus-v2 ~/.cache/fuse-corpus-v2 --num-stranger 7 \\
    --systems identity,fuse@1 --metrics pesq,estoi,si_sdr --out-dir /tmp/bq   # quick check: one pair per bucket
python -m benchmarks.bench_quality --corpus ~/.cache/fuse-corpus --limit 4 --systems peers --out-dir /tmp/bq
python -m benchmarks.bench_quality --render-only                       # results.md again from docs/bench_quality.json
```

The evaluation sets are `benchmarks.quality.evaluation_set`, the systems and their runs `benchmarks.quality.run`, the
tables and plots `benchmarks.quality.report`; this script ties them together.

Systems: ``identity`` (the noisy input), ``noisereduce``, ``deepfilternet3`` and FUSE settings ``fuse@N[-gG][-nS]``:
N DDIM steps, ``-gG`` the guidance scale (default 1.0, BEATs guidance as trained; ``-g0`` guidance off; above 1
classifier-free guidance, e.g. ``fuse@6-g2``), ``-nS`` the initial noise scale (default: the pipeline's; ``-n1``
samples at temperature 1). Groups: ``peers``; ``fuse`` (``fuse@1,2,4,6,10``, ``fuse@6-g0,-g2,-g3``,
``fuse@6-n1``); ``headline`` (the peers, ``fuse@1``, ``fuse@6``, ``fuse@6-g0``, ``fuse@6-g2``, ``fuse@6-g3``);
``all``.
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

from .common import BUNDLED_MODEL, DEFAULT_CORPUS, DEFAULT_CORPUS_V2, REPO, machine_summary, write_json
from .quality.evaluation_set import (
    example_pair_ids,
    limit_pairs,
    plan_pairs,
    plan_stranger,
    read_manifest,
    read_stranger_mixtures,
)
from .quality.report import PARTS, PLOT_FILES, make_plots, summarise, table, write_markdown
from .quality.run import (
    ALL_SYSTEMS,
    GROUPS,
    SILENCE_SECONDS,
    make_enhancer,
    parse_systems,
    score_pairs,
    silence_check,
    time_system,
    timing_clips,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--corpus-v2",
        type=Path,
        default=None,
        help=f"corpus v2 (its stranger split is the headline); with neither corpus named: {DEFAULT_CORPUS_V2}",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help=f"v1 corpus (in-domain and out-of-domain pairs, second); with neither corpus named: {DEFAULT_CORPUS}",
    )
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="FUSE pipeline folder")
    parser.add_argument(
        "--systems",
        default="all",
        help=f"comma list of {', '.join(ALL_SYSTEMS)}, any fuse@N[-gG][-nS], or {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="score only the first N pairs of each subset (quick runs)"
    )
    parser.add_argument(
        "--num-stranger",
        type=int,
        default=84,
        help="stranger pairs: the same count per SNR bucket (-5..20 dB, clean), balanced over languages and noises",
    )
    parser.add_argument("--num-pairs", type=int, default=60, help="v1 in-domain pairs")
    parser.add_argument("--num-ood", type=int, default=20, help="v1 out-of-domain pairs (narrowband French prompts)")
    parser.add_argument(
        "--max-seconds", type=float, default=8.0, help="longer speech is cropped (a stranger pair: to its start)"
    )
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


def corpora_to_run(args: argparse.Namespace) -> dict[str, Path]:
    """``{"v2": corpus v2, "v1": v1 corpus}``, only those to evaluate: the ones named, or both defaults."""
    if args.corpus_v2 is None and args.corpus is None:
        return {"v2": DEFAULT_CORPUS_V2, "v1": DEFAULT_CORPUS}
    named = {"v2": args.corpus_v2, "v1": args.corpus}
    return {key: path.expanduser() for key, path in named.items() if path is not None}


def plan(args: argparse.Namespace, corpora: dict[str, Path]) -> list[dict]:
    """Every pair of the run: the stranger split's first, then the v1 corpus'."""
    pairs = []
    if "v2" in corpora:
        mixtures = read_stranger_mixtures(corpora["v2"])
        pairs += plan_stranger(mixtures, args.seed, args.num_stranger, args.max_seconds)
    if "v1" in corpora:
        rows = read_manifest(corpora["v1"])
        pairs += plan_pairs(rows, args.seed, args.num_pairs, args.num_ood, args.max_seconds)
    if not pairs:
        raise ValueError("no pairs to score: raise --num-stranger, --num-pairs or --num-ood.")
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render_only:
        result = json.loads((args.out or args.out_dir / "bench_quality.json").read_text())
        plots = {title: name for title, name in PLOT_FILES.items() if (args.out_dir / name).is_file()}
        write_markdown(args.out_dir / "results.md", result, plots)
        print(f"Wrote {args.out_dir / 'results.md'} from the JSON of the run of {result['config']['date']}.")
        return 0
    t_start = time.perf_counter()
    corpora = corpora_to_run(args)
    try:
        systems = parse_systems(args.systems)
        pairs = plan(args, corpora)
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
    run = score_pairs(pairs, corpora, enhancers, metrics, example_pair_ids(pairs), args.save_audio)
    t_scores = time.perf_counter() - t_scores
    scores, clean_scores, audio_seconds = run["scores"], run["clean_scores"], run["audio_seconds"]
    silence = silence_check(enhancers, SILENCE_SECONDS)

    # Timing on fixed 4 s clips cut from the first pairs, after scoring so that every system is warm and nothing
    # else of this script runs in parallel.
    t_timing = time.perf_counter()
    clips = timing_clips(pairs, corpora, args.timing_clips, args.seed)
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
            "corpus": str(corpora["v1"]) if "v1" in corpora else None,
            "corpus_v2": str(corpora["v2"]) if "v2" in corpora else None,
            "num_stranger": args.num_stranger if "v2" in corpora else None,
            "silence_seconds": SILENCE_SECONDS,
        },
        "systems": systems,
        "pairs": pairs,
        "scores": scores,
        "summary": summary,
        "silence": silence,
        "timing": timing,
    }
    clean_dnsmos = result["clean_dnsmos"] = {}
    if clean_scores:
        result["clean_dnsmos"] = clean_dnsmos = {
            part: {k: M.nanmean([c[k] for c, p in zip(clean_scores, pairs) if keep(p)]) for k in clean_scores[0]}
            for part, keep in PARTS.items()
            if any(map(keep, pairs))
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

    parts = [p for p in ("stranger", "overall", "out_of_domain") if p in summary[systems[0]]]
    for part in parts:  # the RTF column with the first
        print(f"\n{part}:")
        print(table(summary, part, systems, timing if part == parts[0] else None, clean_dnsmos.get(part)))
    print(
        f"\n{len(pairs)} pairs, {audio_seconds:.0f} s of audio; run {result['runtime_s']['total']:.0f} s "
        f"(enhance+score {t_scores:.0f} s, timing {t_timing:.0f} s). Wrote {out}, {args.out_dir / 'results.md'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
