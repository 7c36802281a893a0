#!/usr/bin/env python
"""Renders pipelines/fuse-small/README.md from the quality benchmark's JSON (docs/bench_quality.json).

Every figure in the card comes from that JSON; only the training facts below are written by hand.
"""

import json
from pathlib import Path

from fuse_hf.model_card import write_model_card

REPO = Path(__file__).resolve().parents[1]

# How the bundled weights were made (docs/training/README.md has the logs and curves).
TRAINING = (
    "BEATs, VAE and a first UNet in about 10 minutes on one NVIDIA H200 (`scripts/train_small_gpu.sh`, batch 32), then "
    "the UNet fine-tuned for {finetune} more steps on a 2-core CPU (batch 8, learning rate 2e-4 with cosine decay)"
)
FINETUNE_STEPS = 2000


def main():
    bench = json.loads((REPO / "docs" / "bench_quality.json").read_text())
    summary, timing = bench["summary"], bench["timing"]
    fuse, dfn, noisy = summary["fuse@6"], summary["deepfilternet3"], summary["identity"]

    def row(name, s, t=None):
        o, d = s["overall"], s["out_of_domain"]
        return (
            f"| {name} | {o['pesq']:.2f} | {o['estoi']:.3f} | {o['si_sdr']:.2f} | {o['dnsmos_ovrl']:.2f} | "
            f"{d['pesq']:.2f} | {d['estoi']:.3f} | {d['si_sdr']:.2f} | {d['dnsmos_ovrl']:.2f} | {t or '-'} |"
        )

    rows = [
        "| system | PESQ-WB | ESTOI | SI-SDR dB | DNSMOS OVRL | OOD PESQ-WB | OOD ESTOI | OOD SI-SDR | OOD OVRL "
        "| RTF (2 cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        row("noisy input", noisy),
        row("noisereduce", summary["noisereduce"], f"{timing['noisereduce']['rtf']:.3f}"),
        row("DeepFilterNet3", dfn, f"{timing['deepfilternet3']['rtf']:.3f}"),
        row("**fuse-small, 6 steps**", fuse, f"{timing['fuse@6']['rtf']:.3f}"),
        row("fuse-small, 1 step", summary["fuse@1"], f"{timing['fuse@1']['rtf']:.3f}"),
        row("fuse-small, 6 steps, no BEATs guidance", summary["fuse@6-g0"]),
    ]
    if "fuse@6-n1" in summary:
        rows.append(row("fuse-small, 6 steps, noise scale 1", summary["fuse@6-n1"]))
    description = (
        "A small FUSE trained end to end with this package on about 100 minutes of speech and 13 minutes of "
        "ambient noise (Debian-packaged game and IVR audio, see the corpus notes), with on-the-fly mixing, "
        "synthetic noises, reverberation and band-limiting: a BEATs conditioner (4 layers x 256) pre-trained with "
        "the BEATs iteration-1 recipe, a magnitude spectral VAE (32-64-128, 8 latent channels) and a 4-level UNet "
        f"(64-128-128-128). Training: {TRAINING.format(finetune=FINETUNE_STEPS)}. Weights are stored in fp16 and "
        "run in fp32 (or bf16 autocast). It samples with `noise_scale=0.25` (the initial noise's standard "
        "deviation), chosen on dev mixtures that are not the benchmark's.\n\n"
        f"The results below are from `benchmarks/bench_quality.py` ({len(bench['pairs'])} seeded pairs: in-domain "
        "from the corpus valid splits, SNR -5..15 dB, and out-of-domain (OOD) with narrowband French speech)."
    )

    def gap(key, part):
        return fuse[part][key] - noisy[part][key]

    lines = [
        f"- Modest intelligibility gains: ESTOI {gap('estoi', 'overall'):+.3f} against the noisy input in-domain and "
        f"{gap('estoi', 'out_of_domain'):+.3f} out-of-domain; DeepFilterNet3 reaches "
        f"{dfn['out_of_domain']['estoi']:.3f} "
        f"OOD against our {fuse['out_of_domain']['estoi']:.3f}, and {dfn['out_of_domain']['dnsmos_ovrl']:.2f} DNSMOS "
        f"OVRL against our {fuse['out_of_domain']['dnsmos_ovrl']:.2f}.",
    ]
    if "fuse@6-n1" in summary:
        full = summary["fuse@6-n1"]["overall"]
        lines.append(
            f"- Sampling at full temperature (`noise_scale=1`) costs intelligibility: ESTOI {full['estoi']:.3f} and "
            f"PESQ-WB {full['pesq']:.2f} against {fuse['overall']['estoi']:.3f} and "
            f"{fuse['overall']['pesq']:.2f} at the "
            "default 0.25: a diffusion sample trades faithfulness to the words for diversity."
        )
    g0 = summary["fuse@6-g0"]["overall"]
    lines += [
        f"- BEATs guidance changes little: guidance off scores PESQ-WB {g0['pesq']:.2f} and ESTOI {g0['estoi']:.3f} "
        f"against {fuse['overall']['pesq']:.2f} and {fuse['overall']['estoi']:.3f} with it.",
        "- The magnitude VAE reuses the noisy phase, which caps quality at low SNR.",
        "- Trained on few voices (mostly two Dutch speakers plus 13 cartoon voice packs) and outdoor ambiences: "
        "expect artefacts on other voices, languages and noises, and a loss of high frequencies on band-limited input.",
        "- Generative: like any diffusion enhancer it can smear or invent phonemes at very low SNR.",
    ]
    metrics = {k: fuse["overall"][k] for k in ("pesq", "estoi", "si_sdr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}
    write_model_card(
        REPO / "pipelines" / "fuse-small",
        metrics=metrics,
        repo_id="fuse-hf/fuse-small",
        dataset_name=f"fuse corpus valid mixtures ({sum(p['subset'] == 'in-domain' for p in bench['pairs'])} pairs, "
        "SNR -5..15 dB)",
        description=description + "\n\n" + "\n".join(rows),
        limitations="\n".join(lines),
        training_command="make train-small   # or: bash scripts/train_small_gpu.sh on a GPU",
        training_description=(
            "Three stages with `accelerate launch train.py {beats,vae,diffusion}` and `configs/fuse-small/*.yaml`; "
            "see docs/training/README.md for the curves and the fine-tuning command."
        ),
    )
    print((REPO / "pipelines" / "fuse-small" / "README.md").read_text()[:600])


if __name__ == "__main__":
    main()
