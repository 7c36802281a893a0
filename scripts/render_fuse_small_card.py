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
    "BEATs, VAE and a first UNet in about 10 minutes on one NVIDIA H200 (`scripts/train_small_gpu.sh`, batch 32) on "
    "corpus v1; the UNet fine-tuned for 2000 steps on a 2-core CPU on corpus v1, then for {finetune} steps on a "
    "2-core CPU (fp32, batch 8 of 1 s crops) on corpus v2 with the generalisation recipe "
    "(`configs/fuse-small-v2/diffusion.yaml`: SNR -5..30 dB, 10 % clean inputs, noisy input band-limited at the "
    "target's measured cutoff); last, the VAE decoder made lighter for CPUs, the encoder frozen: one ResNet block "
    "per up block, fine-tuned alone for {decoder} steps on the same CPU on corpus v2 "
    "(`configs/fuse-small-v2/vae-decoder-lite.yaml`), then its full-resolution levels at 32 channels and one "
    "mid-block ResNet block, fine-tuned alone for {narrow} steps (`configs/fuse-small-v2/vae-decoder-narrow.yaml`); "
    "then the encoder narrowed to 32-32-64 and distilled for {encoder} steps to write the previous encoder's "
    "latents, the decoder frozen (`configs/fuse-small-v2/vae-encoder-narrow.yaml`)"
)
FINETUNE_STEPS = 1100
DECODER_STEPS = 900
NARROW_DECODER_STEPS = 1000
NARROW_ENCODER_STEPS = 1500
METRICS = ("pesq", "estoi", "si_sdr", "dnsmos_ovrl")


def main():
    bench = json.loads((REPO / "docs" / "bench_quality.json").read_text())
    summary, timing, silence = bench["summary"], bench["timing"], bench["silence"]
    fuse, dfn, noisy = summary["fuse@6"], summary["deepfilternet3"], summary["identity"]

    def row(name, system, rtf=True):
        o = summary[system]["stranger"]
        clean = summary[system]["stranger_by_snr"]["clean"]
        t = f"{timing[system]['rtf']:.3f}" if rtf and system in timing else "-"
        return (
            f"| {name} | {o['pesq']:.2f} | {o['estoi']:.3f} | {o['si_sdr']:.2f} | {o['dnsmos_ovrl']:.2f} | "
            f"{clean['pesq']:.2f} | {clean['si_sdr']:.1f} | {t} |"
        )

    rows = [
        "| system | PESQ-WB | ESTOI | SI-SDR dB | DNSMOS OVRL | clean in: PESQ-WB | clean in: SI-SDR dB "
        "| RTF (2 cores, loaded: see Speed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("noisy input", "identity", rtf=False),
        row("noisereduce", "noisereduce"),
        row("DeepFilterNet3", "deepfilternet3"),
        row("**fuse-small, 6 steps**", "fuse@6"),
        row("fuse-small, 1 step", "fuse@1"),
        row("fuse-small, 6 steps, no BEATs guidance", "fuse@6-g0", rtf=False),
    ]
    rows += [
        row(f"fuse-small, 6 steps, {name[7:]}", name, rtf=False)
        for name in summary
        if name.startswith("fuse@6-") and name != "fuse@6-g0"
    ]
    n = fuse["stranger"]["n"]
    training = TRAINING.format(
        finetune=FINETUNE_STEPS, decoder=DECODER_STEPS, narrow=NARROW_DECODER_STEPS, encoder=NARROW_ENCODER_STEPS
    )
    description = (
        "A small FUSE trained end to end with this package on Debian-packaged speech and noise (corpus v2: 472 "
        "minutes of speech in 29 languages, 65 minutes of real noise; `scripts/corpus/`), with on-the-fly mixing, "
        "synthetic noises, reverberation and band-limiting: a BEATs conditioner (4 layers x 256) pre-trained with "
        "the BEATs iteration-1 recipe, a magnitude spectral VAE (32-64-128, 8 latent channels; encoder 32-32-64, "
        "decoder 32-32-128) "
        f"and a 4-level UNet (64-128-128-128). Training: {training}. It "
        "samples with `noise_scale=0.25` and caps each time-frequency bin of the output at the input's "
        "(`max_gain_db=0`).\n\n"
        f"The results below are from `benchmarks/bench_quality.py` on corpus v2's **stranger split** ({n} noisy "
        "mixtures at -5..20 dB plus clean inputs): languages (Belarusian, Romanian, Italian), voices and noise "
        "recordings that no training split contains. Its references are high-passed at 20 Hz (corpus process "
        "version 4): some recordings drift below hearing, which no enhancer reproduces."
    )

    def gap(key, system=fuse):
        return system["stranger"][key] - noisy["stranger"][key]

    worst = min(
        fuse["stranger_by_snr"],
        key=lambda b: fuse["stranger_by_snr"][b]["estoi"] - noisy["stranger_by_snr"][b]["estoi"],
    )
    lines = [
        f"- Against the noisy input on strangers: PESQ-WB {gap('pesq'):+.2f}, ESTOI {gap('estoi'):+.3f}, SI-SDR "
        f"{gap('si_sdr'):+.1f} dB, DNSMOS OVRL {gap('dnsmos_ovrl'):+.2f}; DeepFilterNet3: {gap('pesq', dfn):+.2f}, "
        f"{gap('estoi', dfn):+.3f}, {gap('si_sdr', dfn):+.1f} dB, {gap('dnsmos_ovrl', dfn):+.2f}. Its weakest SNR "
        f"bucket on ESTOI is {worst} ({'dB' if worst != 'clean' else 'input'}).",
        f"- Digital silence comes back at {silence['fuse@6']['rms_dbfs']:.0f} dBFS RMS (exact zeros: the gain cap).",
    ]
    g0 = summary["fuse@6-g0"]["stranger"]
    lines += [
        f"- BEATs guidance changes little: guidance off scores PESQ-WB {g0['pesq']:.2f}, ESTOI {g0['estoi']:.3f} and "
        f"SI-SDR {g0['si_sdr']:.2f} dB against {fuse['stranger']['pesq']:.2f}, {fuse['stranger']['estoi']:.3f} and "
        f"{fuse['stranger']['si_sdr']:.2f} dB with it.",
        "- The magnitude VAE reuses the noisy phase, which caps quality at low SNR.",
        "- Generative: like any diffusion enhancer it can smear or invent phonemes at very low SNR.",
    ]
    metrics = {k: fuse["stranger"][k] for k in ("pesq", "estoi", "si_sdr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")}
    write_model_card(
        REPO / "pipelines" / "fuse-small",
        metrics=metrics,
        repo_id="fuse-hf/fuse-small",
        dataset_name=f"corpus v2 stranger split ({n} mixtures, SNR -5..20 dB, unseen languages, voices and noises)",
        description=description + "\n\n" + "\n".join(rows),
        limitations="\n".join(lines),
        training_command="make train-small   # or: bash scripts/train_small_gpu.sh on a GPU",
        training_description=(
            "Three stages with `accelerate launch train.py {beats,vae,diffusion}` and `configs/fuse-small/*.yaml`, "
            "then the UNet fine-tuned with `configs/fuse-small-v2/diffusion.yaml`; see docs/training/README.md."
        ),
    )
    print((REPO / "pipelines" / "fuse-small" / "README.md").read_text()[:600])


if __name__ == "__main__":
    main()
