"""`fuse-hf evaluate --clean DIR --enhanced DIR [--noisy DIR]`: score enhanced files against clean references.

The scoring is `fuse_hf.evaluate` (pairing, metrics, tables, CSV/JSON); the box plot is
`fuse_hf.plotting.plot_boxes`. This module only parses arguments and reports errors as one line.
"""

from __future__ import annotations

import argparse

from . import error

# `fuse_hf.metrics.METRICS`, spelled out so that `--help` does not import the metrics (and torch);
# tests/test_evaluate.py checks that the two agree.
METRIC_NAMES = ("pesq", "estoi", "si_sdr", "dnsmos")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `evaluate` on `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score enhanced files against clean references (PESQ-WB, ESTOI, SI-SDR, DNSMOS)",
        description=(
            "Score a folder of enhanced files against a folder of clean references. Files are paired by "
            "their path relative to each folder, extension ignored (clean/a/b.wav <-> enhanced/a/b.flac), "
            "then by a unique file name; unpaired files are listed in a warning. Metrics: PESQ-WB "
            "(ITU-T P.862.2, 1.04-4.64), ESTOI (0-1), SI-SDR (dB), and the non-intrusive DNSMOS P.835 "
            "SIG/BAK/OVRL (1-5) of the enhanced audio. With --noisy the noisy inputs are scored as well "
            "and the improvement (enhanced minus noisy) is reported. Enhanced/noisy files at another "
            "sample rate are resampled to the clean file's rate; stereo is averaged to mono. "
            "The metric packages come with `pip install fuse-hf[metrics]`; a missing one is skipped "
            "with a warning."
        ),
        epilog="example: fuse-hf evaluate --clean data/clean --enhanced out --noisy data/noisy --csv scores.csv "
        "--plot box.png",
    )
    parser.add_argument(
        "--clean", required=True, metavar="DIR", help="folder of clean reference files (searched recursively)"
    )
    parser.add_argument("--enhanced", required=True, metavar="DIR", help="folder of enhanced files to score")
    parser.add_argument(
        "--noisy", metavar="DIR", default=None, help="folder of the noisy inputs: adds their scores and the improvement"
    )
    parser.add_argument("--out", metavar="JSON", default=None, help="write per-file and mean scores to this JSON file")
    parser.add_argument("--csv", metavar="CSV", default=None, help="write per-file scores to this CSV file")
    parser.add_argument(
        "--plot", metavar="PNG", default=None, help="write a box plot of the per-file scores to this PNG file"
    )
    parser.add_argument(
        "--metrics",
        default=",".join(METRIC_NAMES),
        help=f"comma-separated subset of: {', '.join(METRIC_NAMES)} "
        "(default: all; dnsmos is the slowest, about 0.5-1 s per file)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs `fuse-hf evaluate`; returns the exit code (1 with a one-line error on bad input)."""
    from ..evaluate import evaluate_folders, format_table, write_csv, write_json
    from ..plotting import plot_boxes

    try:
        report = evaluate_folders(
            args.clean, args.enhanced, args.noisy, metrics=args.metrics, progress=not args.no_progress
        )
    except (ValueError, ImportError) as err:
        return error(str(err), "evaluate")
    print(format_table(report))
    try:
        if args.out:
            write_json(report, args.out)
            print(f"wrote {args.out}")
        if args.csv:
            write_csv(report, args.csv)
            print(f"wrote {args.csv}")
        if args.plot:
            plot_boxes(report, args.plot)
            print(f"wrote {args.plot}")
    except OSError as err:
        return error(f"cannot write output: {err}", "evaluate")
    return 0
