"""`fuse-hf push MODEL_DIR REPO_ID`: upload a pipeline folder to the Hugging Face Hub with its model card and the
remote code that lets `DiffusionPipeline.from_pretrained(REPO_ID, trust_remote_code=True)` load it."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `push` on `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "push",
        help="upload a pipeline folder to the Hugging Face Hub with a model card",
        description=(
            "Upload a pipeline folder (from save_pretrained or training) to a Hub model repo, created if needed, as "
            "one commit: weights, configs, a model card rendered for REPO_ID (pipeline_tag audio-to-audio, measured "
            "results as model-index) and Hub remote code. The card keeps the results of a card already in MODEL_DIR "
            "unless --metrics is given. Needs a token with write access (hf auth login, HF_TOKEN or --token)."
        ),
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="pipeline folder with model_index.json")
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repo id, e.g. your-name/fuse-small")
    parser.add_argument(
        "--private", action="store_true", help="create the repo as private (an existing repo keeps its visibility)"
    )
    parser.add_argument(
        "--token", default=None, help="Hub token with write access; default: HF_TOKEN or the stored login"
    )
    parser.add_argument(
        "--commit-message", default="Upload FUSE pipeline", help="commit message (default: %(default)s)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="JSON",
        help="results for the card: a `fuse-hf evaluate --out` report or a flat {name: value} file",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=None,
        metavar="DATASET_ID",
        help="Hub dataset the model was trained on (repeatable; card metadata `datasets`)",
    )
    parser.add_argument(
        "--no-remote-code",
        dest="remote_code",
        action="store_false",
        help="upload no Python files (the repo then loads only with fuse_hf installed)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs `fuse-hf push`; a folder or Hub problem is a `ValueError`, printed as one line by `main`."""
    from ..hub import push_pipeline_folder
    from ..model_card import load_metrics

    metrics = load_metrics(args.metrics) if args.metrics else None
    card_kwargs = {"datasets": args.dataset} if args.dataset else {}
    url = push_pipeline_folder(
        args.model_dir,
        args.repo_id,
        token=args.token,
        private=True if args.private else None,
        commit_message=args.commit_message,
        metrics=metrics,
        remote_code=args.remote_code,
        **card_kwargs,
    )
    print(f"pushed {args.model_dir} -> {url}")
    return 0
