"""Training FUSE with Accelerate: `accelerate launch train.py {beats,beats_tokenizer,vae,diffusion} --config FILE`."""

from .args import build_parser, parse_args
from .loop import read_history, train
from .stages import STAGES


def main(argv=None) -> int:
    import sys

    try:
        args = parse_args(argv)
        train(args, STAGES[args.stage]())
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = ["main", "train", "parse_args", "build_parser", "read_history", "STAGES"]
