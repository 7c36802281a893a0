"""Draws docs/training/curves.png from the GPU run of fuse-small: training losses (tqdm logs) and validation figures.

Inputs (the run's own files, not in the repository): ``RUN1`` = phase 1 (beats/, vae-magnitude/, diffusion/ up to
step 1510, logs/*.log) and ``RUN2`` = phase 2 (diffusion/ resumed to 2983, logs/diffusion2.log). Also prints
the numbers docs/training/README.md quotes (steps, wall minutes, final figures) as JSON.

The diffusion validation logged the noisy input's SI-SDR only; with ``--corpus`` the script rebuilds the same 8
validation pairs (``make_validation_pairs`` of the valid splits, 65280 samples, seed 1, as
scripts/train_small_gpu.sh ran it) and scores the noisy input with ESTOI and PESQ-WB as well, checking that its
SI-SDR equals the logged one.

    python docs/training/make_curves.py --run1 /tmp/gpu1 --run2 /tmp/gpu2 --out docs/training/curves.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

# tqdm line: "train vae:   0%|   | 1942/1000000 [03:24<26:09:34, 10.60it/s, loss=1.043, lr=0.001]"
TQDM = re.compile(
    r"\|\s*(\d+)/\d+ \[(\d+):(\d+)(?::(\d+))?<[^\]]*?(?:loss=([-+\d.eE]+))?(?:, lr=[^,\]]+)?"
    r"(?:, accuracy=([-+\d.eE]+))?\]"
)


def parse_log(path: Path) -> dict[str, np.ndarray]:
    """tqdm log -> arrays step, loss (and accuracy if logged), plus the elapsed wall seconds of the last update.

    The postfix of the update that shows ``n/total`` carries the loss of step n; the last one printed wins.
    """
    by_step: dict[int, tuple] = {}
    elapsed = 0.0
    for line in path.read_text(errors="replace").replace("\r", "\n").splitlines():
        match = TQDM.search(line)
        if not match:
            continue
        step, a, b, c, loss, accuracy = match.groups()
        elapsed = (int(a) * 3600 + int(b) * 60 + int(c)) if c else (int(a) * 60 + int(b))
        if loss is not None:
            by_step[int(step)] = (float(loss), float(accuracy) if accuracy else np.nan)
    steps = np.array(sorted(by_step))
    values = np.array([by_step[s] for s in steps]).reshape(-1, 2)
    return {"step": steps, "loss": values[:, 0], "accuracy": values[:, 1], "elapsed_s": elapsed}


def read_history(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: np.ndarray, window: int = 50) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[lo]) / (idx - lo)


def noisy_baseline(corpus: Path, logged_si_sdr: float, n: int = 8, samples: int = 65280, seed: int = 1) -> dict:
    """Scores the noisy inputs of the diffusion stage's validation pairs (mean PESQ-WB, ESTOI, SI-SDR)."""
    from fuse_hf.data import list_audio_files, make_validation_pairs
    from fuse_hf.metrics import compute_metrics, nanmean

    pairs = make_validation_pairs(
        list_audio_files(corpus / "speech" / "valid"),
        list_audio_files(corpus / "noise" / "valid"),
        n,
        samples,
        seed=seed,
    )
    rows = [compute_metrics(p["clean"], p["noisy"], 16000, ("pesq", "estoi", "si_sdr")) for p in pairs]
    out = {k: nanmean([r[k] for r in rows]) for k in rows[0]}
    if abs(out["si_sdr"] - logged_si_sdr) > 0.01:
        raise ValueError(
            f"noisy baseline: SI-SDR {out['si_sdr']:.3f} dB, but the run logged {logged_si_sdr:.3f} dB. "
            "These are not the run's validation pairs (other corpus, seed or length?)."
        )
    return out


def plot(run1: Path, run2: Path, out: Path, corpus: Path = None, probe: Path = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = {
        "beats": parse_log(run1 / "logs" / "beats.log"),
        "vae": parse_log(run1 / "logs" / "vae-magnitude.log"),
        "diffusion1": parse_log(run1 / "logs" / "diffusion.log"),
        "diffusion2": parse_log(run2 / "logs" / "diffusion2.log"),
    }
    vae_hist = read_history(run1 / "vae-magnitude" / "validation_history.jsonl")
    beats_hist = read_history(run1 / "beats" / "validation_history.jsonl")
    diff_hist = read_history(run2 / "diffusion" / "validation_history.jsonl")
    noisy = noisy_baseline(corpus, diff_hist[-1]["noisy_si_sdr"]) if corpus else None
    diff_step = np.concatenate([logs["diffusion1"]["step"], logs["diffusion2"]["step"]])
    diff_loss = np.concatenate([logs["diffusion1"]["loss"], logs["diffusion2"]["loss"]])

    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    fig.suptitle("fuse-small on one NVIDIA H200 (bf16, batch 32): training loss (top), validation (bottom)")

    def loss_panel(ax, steps, loss, title, log_y=True):
        ax.plot(steps, loss, color="0.8", lw=0.6, label="per step")
        ax.plot(steps, smooth(loss), color="C0", lw=1.5, label="mean of 50 steps")
        ax.set(title=title, xlabel="step", ylabel="training loss")
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    loss_panel(axes[0, 0], logs["vae"]["step"], logs["vae"]["loss"], "VAE (magnitude): L1+MSE+log-mag+MR-STFT+KL")
    loss_panel(
        axes[0, 1],
        logs["beats"]["step"],
        logs["beats"]["loss"],
        "BEATs iter-1: masked-token cross-entropy",
        log_y=False,
    )
    loss_panel(axes[0, 2], diff_step, diff_loss, "diffusion UNet: v-prediction MSE")
    axes[0, 2].axvline(logs["diffusion1"]["step"][-1], color="k", ls="--", lw=0.8)
    axes[0, 2].text(
        logs["diffusion1"]["step"][-1], axes[0, 2].get_ylim()[1], " resumed (phase 2)", va="top", fontsize=8
    )

    ax = axes[1, 0]
    steps = [h["step"] for h in vae_hist]
    ax.plot(steps, [h["si_sdr"] for h in vae_hist], "o-", color="C1", label="SI-SDR (dB)")
    ax.axhline(5.0, color="C1", ls=":", lw=1, label="gate SI-SDR 5 dB")
    ax.axhline(10.0, color="C1", ls="--", lw=0.8, label="aim 10 dB")
    ax.set(
        title="VAE round trip of clean valid speech (clean phase)", xlabel="step", ylabel="SI-SDR (dB)", ylim=(0, 22)
    )
    twin = ax.twinx()
    twin.plot(steps, [h["estoi"] for h in vae_hist], "s-", color="C2", label="ESTOI")
    twin.set(ylabel="ESTOI", ylim=(0.9, 1.0))
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[1, 1]
    ax.plot(
        [h["step"] for h in beats_hist],
        [h["masked_accuracy"] for h in beats_hist],
        "o-",
        color="C3",
        label="valid masked accuracy",
    )
    train_acc = logs["beats"]["accuracy"]
    ax.plot(logs["beats"]["step"], smooth(train_acc, 200), color="C3", alpha=0.4, label="train (mean of 200)")
    ax.axhline(1 / 1024, color="0.5", ls=":", lw=1, label="chance 1/1024")
    if probe is not None and probe.is_file():
        # From benchmarks/bench_beats_probe.py: the tokenizer's commonest token on valid mixtures.
        frequent = json.loads(probe.read_text())["masked_token_accuracy"]["most_frequent_token"]
        ax.axhline(frequent, color="0.3", ls="--", lw=1, label=f"always the commonest token ({frequent:.2f})")
    ax.set(
        title="BEATs masked-token accuracy (1024 tokens, 75% masked)", xlabel="step", ylabel="accuracy", ylim=(0, 0.5)
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1, 2]
    steps = [h["step"] for h in diff_hist]
    ax.plot(steps, [h["si_sdr"] for h in diff_hist], "o-", color="C1", label="SI-SDR, guidance on (dB)")
    ax.plot(
        steps,
        [h["guidance_off_si_sdr"] for h in diff_hist],
        "x--",
        color="C1",
        alpha=0.6,
        label="SI-SDR, guidance off (dB)",
    )
    ax.axhline(diff_hist[-1]["noisy_si_sdr"], color="0.4", ls=":", label="noisy input SI-SDR")
    ax.set(
        title="FUSE (6 DDIM steps) on noisy valid mixtures",
        xlabel="step",
        ylabel="SI-SDR (dB)",
        xlim=(0, steps[-1] * 1.1),
        ylim=(-2, 8),
    )
    twin = ax.twinx()
    twin.plot(steps, [h["estoi"] for h in diff_hist], "s-", color="C2", label="ESTOI")
    if noisy:
        twin.axhline(noisy["estoi"], color="C2", ls=":", label="noisy input ESTOI")
    twin.set(ylabel="ESTOI", ylim=(0, 0.6))
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(
        handles, [h.get_label() for h in handles], fontsize=7, loc="center left", bbox_to_anchor=(0.0, 0.36), ncol=2
    )
    ax.grid(alpha=0.3)

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)

    def tail_mean(log, n=100):
        return float(np.mean(log["loss"][-n:]))

    return {
        name: {
            "last_step": int(log["step"][-1]),
            "wall_min": round(log["elapsed_s"] / 60, 2),
            "first_loss": float(log["loss"][0]),
            "loss_last_100_mean": round(tail_mean(log), 4),
        }
        for name, log in logs.items()
    } | {
        "diffusion_noisy_input": noisy,
        "vae_history": vae_hist,
        "beats_history": beats_hist,
        "diffusion_history": diff_hist,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run1", default="/tmp/gpu1")
    parser.add_argument("--run2", default="/tmp/gpu2")
    parser.add_argument("--out", default="docs/training/curves.png")
    parser.add_argument(
        "--probe",
        default="benchmarks/results/beats_probe.json",
        help="bench_beats_probe.py output, for the commonest-token reference (optional)",
    )
    parser.add_argument(
        "--corpus",
        default=str(Path("~/.cache/fuse-corpus").expanduser()),
        help="to score the noisy inputs of the diffusion validation pairs; '' to skip",
    )
    args = parser.parse_args(argv)
    summary = plot(
        Path(args.run1), Path(args.run2), Path(args.out), Path(args.corpus) if args.corpus else None, Path(args.probe)
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
