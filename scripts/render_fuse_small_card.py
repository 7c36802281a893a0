#!/usr/bin/env python
"""Renders pipelines/fuse-small/README.md from the quality benchmark's JSON (docs/bench_quality.json)."""

import json
from pathlib import Path

from fuse_hf.model_card import write_model_card

REPO = Path(__file__).resolve().parents[1]


def main():
    bench = json.loads((REPO / "docs" / "bench_quality.json").read_text())
    fuse, dfn = bench["summary"]["fuse@6"], bench["summary"]["deepfilternet3"]
    noisy = bench["summary"]["identity"]
    rtf, rtf_dfn = bench["timing"]["fuse@6"]["rtf"], bench["timing"]["deepfilternet3"]["rtf"]

    def row(name, s, t=None):
        o, d = s["overall"], s["out_of_domain"]
        return (f"| {name} | {o['pesq']:.2f} | {o['estoi']:.3f} | {o['si_sdr']:.2f} | {o['dnsmos_ovrl']:.2f} | "
                f"{d['pesq']:.2f} | {d['estoi']:.3f} | {d['si_sdr']:.2f} | {d['dnsmos_ovrl']:.2f} | {t or '-'} |")

    table = "\n".join([
        "| system | PESQ-WB | ESTOI | SI-SDR dB | DNSMOS OVRL | OOD PESQ-WB | OOD ESTOI | OOD SI-SDR | OOD OVRL | RTF (2 cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        row("noisy input", noisy),
        row("noisereduce", bench["summary"]["noisereduce"], f"{bench['timing']['noisereduce']['rtf']:.3f}"),
        row("DeepFilterNet3", dfn, f"{rtf_dfn:.3f}"),
        row("**fuse-small, 6 steps**", fuse, f"{rtf:.3f}"),
        row("fuse-small, 1 step", bench["summary"]["fuse@1"], f"{bench['timing']['fuse@1']['rtf']:.3f}"),
        row("fuse-small, 6 steps, no BEATs guidance", bench["summary"]["fuse@6-g0"]),
    ])
    description = (
        "A small FUSE trained end to end with this package on about 100 minutes of speech and 13 minutes of "
        "ambient noise (Debian-packaged game and IVR audio, see the corpus notes), with on-the-fly mixing, "
        "synthetic noises, reverberation and band-limiting: a BEATs conditioner (4 layers x 256) pre-trained with "
        "the BEATs iteration-1 recipe, a magnitude spectral VAE (32-64-128, 8 latent channels) and a 4-level UNet "
        "(64-128-128-128). About 10 minutes of training on one NVIDIA H200. Weights are stored in fp16 and "
        "run in fp32 (or bf16 autocast).\n\n"
        f"The results below are from `benchmarks/bench_quality.py` ({len(bench['pairs'])} seeded pairs: 60 in-domain "
        "from the corpus valid splits, SNR -5..15 dB, and 20 out-of-domain (OOD) with narrowband French speech)."
    )
    limitations = (
        "- Under-trained: the UNet saw 95k two-second crops. ESTOI at 6 steps is below the noisy input's "
        "(0.483 vs 0.501 in-domain, 0.597 vs 0.641 out-of-domain); 1-2 steps score better than 6 or 10.\n"
        "- The magnitude VAE reuses the noisy phase, which caps quality at low SNR.\n"
        "- BEATs guidance changes little (guidance off scores within 0.01 of on).\n"
        "- Trained on few voices (mostly two Dutch speakers plus 13 cartoon voice packs) and outdoor ambiences: "
        "expect artefacts on other voices, languages and noises, and a loss of high frequencies on band-limited input.\n"
        "- Generative: like any diffusion enhancer it can smear or invent phonemes at very low SNR."
    )
    metrics = {k: fuse["overall"][k] for k in ("pesq", "estoi", "si_sdr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}
    write_model_card(
        REPO / "pipelines" / "fuse-small", metrics=metrics, repo_id="fuse-hf/fuse-small",
        dataset_name="fuse corpus valid mixtures (60 pairs, SNR -5..15 dB)",
        description=description + "\n\n" + table, limitations=limitations,
        training_command="make train-small   # or: bash scripts/train_small_gpu.sh on a GPU",
        training_description=(
            "Three stages with `accelerate launch train.py {beats,vae,diffusion}` and `configs/fuse-small/*.yaml`; "
            "see docs/training/README.md for the curves."
        ),
    )
    print((REPO / "pipelines" / "fuse-small" / "README.md").read_text()[:600])


if __name__ == "__main__":
    main()
