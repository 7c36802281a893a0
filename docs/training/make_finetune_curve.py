"""Draws docs/training/finetune.png: the CPU fine-tuning of the fuse-small UNet (training loss from the run's tqdm
log, validation figures from its validation_history.jsonl) and prints the figures docs/training/README.md quotes.

    python docs/training/make_finetune_curve.py --run ~/.cache/fuse-hf/runs/fuse-small-ft1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_curves import parse_log, read_history, smooth  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("~/.cache/fuse-hf/runs/fuse-small-ft1").expanduser())
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "finetune.png")
    parser.add_argument("--label", default="6 steps, noise scale 1", help="how the run's validation sampled")
    parser.add_argument(
        "--no-noisy",
        action="store_true",
        help="leave out the noisy input's line (a validation set with clean inputs averages their unbounded SI-SDR)",
    )
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = parse_log(args.run / "train.log")
    history = read_history(args.run / "validation_history.jsonl")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    axes[0].semilogy(log["step"], log["loss"], color="C0", alpha=0.25, lw=0.6, label="per step")
    axes[0].semilogy(log["step"], smooth(log["loss"]), color="C0", label="50-step mean")
    axes[0].set_title("UNet fine-tuning: v-prediction MSE"), axes[0].set_xlabel("step"), axes[0].legend(fontsize=7)
    for ax, key, label in ((axes[1], "estoi", "validation ESTOI"), (axes[2], "si_sdr", "validation SI-SDR (dB)")):
        ax.plot([h["step"] for h in history], [h[key] for h in history], "o-", label=args.label)
        if not args.no_noisy and all(
            f"noisy_{key}" in h for h in history
        ):  # the run logs the noisy input's SI-SDR only
            ax.plot([h["step"] for h in history], [h[f"noisy_{key}"] for h in history], "k:", label="noisy input")
        ax.set_title(label), ax.set_xlabel("fine-tuning step"), ax.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(
        json.dumps(
            {
                "steps": int(log["step"][-1]),
                "wall_s": log["elapsed_s"],
                "loss_first100": float(log["loss"][:100].mean()),
                "loss_last100": float(log["loss"][-100:].mean()),
                "validation": history,
            },
            indent=1,
            default=float,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
