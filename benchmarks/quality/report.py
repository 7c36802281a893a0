"""The quality benchmark's report: summaries of the scores, the markdown of ``results.md`` and the plots.

Everything here is a function of a run's result (the JSON that `python -m benchmarks.bench_quality` writes), so that
``--render-only`` can rewrite ``results.md`` from the JSON of an earlier run without enhancing anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fuse_hf.audio import SAMPLE_RATE
from fuse_hf.metrics import nanmean

from ..common import markdown_table
from .evaluation_set import NOISE_TYPES, SNRS_DB, SOURCES
from .run import FUSE_STEPS, MAIN_FUSE, PEER_SYSTEMS, REFERENCE

# Column order of every table: (result key, header, format).
COLUMNS = (
    ("pesq", "PESQ-WB", "{:.2f}"),
    ("estoi", "ESTOI", "{:.3f}"),
    ("si_sdr", "SI-SDR dB", "{:.2f}"),
    ("dnsmos_sig", "SIG", "{:.2f}"),
    ("dnsmos_bak", "BAK", "{:.2f}"),
    ("dnsmos_ovrl", "OVRL", "{:.2f}"),
)
METRIC_KEYS = tuple(c[0] for c in COLUMNS)


# ================================================================================================
# summaries and tables
# ================================================================================================
def summarise(scores: dict[str, list[dict]], pairs: list[dict]) -> dict:
    """Mean of each metric per system (`fuse_hf.metrics.nanmean`: unscorable pairs left out), overall (in-domain) and
    by SNR, noise, source, subset."""

    def mean_over(system, keep):
        rows = [s for s, p in zip(scores[system], pairs) if keep(p)]
        out = {k: nanmean([r.get(k, math.nan) for r in rows]) for k in METRIC_KEYS}
        out["n"] = len(rows)
        return out

    def in_domain_with(field, value):
        return lambda p: p["subset"] == "in-domain" and p[field] == value

    summary = {}
    for system in scores:
        summary[system] = {
            "overall": mean_over(system, lambda p: p["subset"] == "in-domain"),
            "out_of_domain": mean_over(system, lambda p: p["subset"] == "out-of-domain"),
            "by_snr": {str(s): mean_over(system, in_domain_with("snr_db", s)) for s in SNRS_DB},
            "by_noise": {n: mean_over(system, in_domain_with("noise_type", n)) for n in NOISE_TYPES},
            "by_source": {src: mean_over(system, in_domain_with("source", src)) for src in SOURCES},
        }
    return summary


def _fmt(value, fmt="{:.2f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _ratio(value, ref) -> str:
    if any(v is None or math.isnan(v) for v in (value, ref)) or ref == 0:
        return ""
    return f" ({value / ref:.2f}×)"


def table(
    summary: dict, part: str, systems: Sequence[str], timing: dict | None = None, clean_dnsmos: dict | None = None
) -> str:
    """Markdown table of one summary part; fuse rows carry their ratio to DeepFilterNet3."""
    headers = ["system"] + [c[1] for c in COLUMNS] + (["RTF"] if timing else [])
    rows = []
    for system in systems:
        row, ref = summary[system][part], summary.get(REFERENCE, {}).get(part)
        cells = [system]
        for key, _, fmt in COLUMNS:
            cell = _fmt(row[key], fmt)
            if system.startswith("fuse") and ref:
                cell += _ratio(row[key], ref[key])
            cells.append(cell)
        if timing:
            t = timing.get(system, {}).get("rtf", math.nan)
            cell = _fmt(t, "{:.3f}")
            if system.startswith("fuse") and REFERENCE in timing:
                cell += _ratio(t, timing[REFERENCE]["rtf"])
            cells.append(cell)
        rows.append(cells)
    if clean_dnsmos:
        dnsmos = [_fmt(clean_dnsmos[k]) for k in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")]
        cells = ["clean reference"] + ["–"] * 3 + dnsmos
        rows.append(cells + (["–"] if timing else []))
    return markdown_table(headers, rows)


def group_table(summary: dict, part: str, groups: Sequence[str], key: str, systems: Sequence[str], fmt: str) -> str:
    """Markdown table of one metric: systems as rows, groups (SNRs, noise types, ...) as columns."""
    rows = [[system] + [_fmt(summary[system][part][g][key], fmt) for g in groups] for system in systems]
    return markdown_table(["system", *groups], rows)


def acceptance(summary: dict, timing: dict) -> list[str]:
    """Issue 6's acceptance checks as markdown bullet lines (only when fuse@6 ran)."""
    if MAIN_FUSE not in summary:
        return ["- fuse@6 was not run: no acceptance check."]
    lines = []
    for part, label in (("overall", "in-domain"), ("out_of_domain", "out-of-domain")):
        for other in ("identity", "noisereduce"):
            if other not in summary:
                continue
            for key in ("pesq", "estoi", "si_sdr", "dnsmos_ovrl"):
                a, b = summary[MAIN_FUSE][part][key], summary[other][part][key]
                ok = not math.isnan(a) and not math.isnan(b) and a > b
                lines.append(f"- [{'x' if ok else ' '}] {label}: fuse@6 {key} {_fmt(a)} > {other} {_fmt(b)}")
    if MAIN_FUSE in timing and REFERENCE in timing:
        ratio = timing[MAIN_FUSE]["rtf"] / timing[REFERENCE]["rtf"]
        lines.append(
            f"- [{'x' if ratio <= 3.0 else ' '}] RTF fuse@6 {timing[MAIN_FUSE]['rtf']:.3f} <= 3 x "
            f"DeepFilterNet3 {timing[REFERENCE]['rtf']:.3f} (ratio {ratio:.2f})"
        )
    if "fuse@6-g0" in summary:
        a, b = summary[MAIN_FUSE]["overall"]["pesq"], summary["fuse@6-g0"]["overall"]["pesq"]
        # Differences below ~0.05 PESQ are within what 60 pairs can resolve: do not call them a win.
        verdict = "no measurable difference" if abs(a - b) < 0.05 else ("guidance helps" if a > b else "guidance hurts")
        lines.append(
            f"- guidance on vs off (in-domain PESQ-WB): {_fmt(a)} vs {_fmt(b)}: {verdict} (reported as measured)"
        )
    if "fuse@6-n1" in summary:
        for part, label in (("overall", "in-domain"), ("out_of_domain", "out-of-domain")):
            main, full = summary[MAIN_FUSE][part], summary["fuse@6-n1"][part]
            lines.append(
                f"- default noise scale vs noise scale 1 ({label}): "
                f"PESQ-WB {_fmt(main['pesq'])} vs {_fmt(full['pesq'])}, "
                f"ESTOI {_fmt(main['estoi'], '{:.3f}')} vs {_fmt(full['estoi'], '{:.3f}')}, "
                f"OVRL {_fmt(main['dnsmos_ovrl'])} vs {_fmt(full['dnsmos_ovrl'])} (reported as measured)"
            )
    return lines


def weaknesses(summary: dict) -> list[str]:
    """What fuse@6 does badly, as markdown bullets computed from the summary (issue 6 asks to show it)."""
    if MAIN_FUSE not in summary or "identity" not in summary:
        return []
    fuse, noisy = summary[MAIN_FUSE], summary["identity"]
    lines = []
    if REFERENCE in summary:
        ours, theirs = fuse["out_of_domain"], summary[REFERENCE]["out_of_domain"]
        behind = [
            f"{label} {_fmt(ours[key], fmt)} vs {_fmt(theirs[key], fmt)}"
            for key, label, fmt in COLUMNS
            if ours[key] < theirs[key]
        ]
        if behind:
            lines.append(
                "- Out-of-domain (other language, narrowband speech) it trails DeepFilterNet3 on "
                + ", ".join(behind)
                + "."
            )
    gains = {snr: fuse["by_snr"][snr]["estoi"] - noisy["by_snr"][snr]["estoi"] for snr in fuse["by_snr"]}
    worst = min(gains, key=gains.get)
    by_snr = ", ".join(f"{float(k):g} dB {v:+.3f}" for k, v in gains.items())
    lines.append(
        f"- Intelligibility gains are small and smallest at {float(worst):g} dB input SNR: "
        f"ESTOI {gains[worst]:+.3f} over the noisy input there (by SNR: {by_snr})."
    )
    if "hedgewars" in fuse["by_source"] and "fillets-nl" in fuse["by_source"]:
        wide, narrow = fuse["by_source"]["hedgewars"]["pesq"], fuse["by_source"]["fillets-nl"]["pesq"]
        lines.append(
            f"- Wideband voices gain less than band-limited ones (PESQ-WB {_fmt(wide)} on hedgewars vs "
            f"{_fmt(narrow)} on fillets-nl); likely causes, not measured apart: the noisy phase the magnitude "
            "VAE reuses, and training voices that are mostly band-limited."
        )
    if "fuse@6-n1" in summary:
        full = summary["fuse@6-n1"]["overall"]["estoi"]
        lines.append(
            f"- Sampled at full temperature (`noise_scale=1`) it loses intelligibility: ESTOI {full:.3f} "
            f"against the noisy input's {noisy['overall']['estoi']:.3f}; the default noise scale keeps it "
            "above."
        )
    return lines


def write_markdown(path: Path, result: dict, plots: dict[str, str]) -> None:
    """``results.md``: the tables, the acceptance checks and links to the plots."""
    summary, timing, systems = result["summary"], result["timing"], result["systems"]
    cfg = result["config"]
    n_in = sum(p["subset"] == "in-domain" for p in result["pairs"])
    n_ood = len(result["pairs"]) - n_in
    md = [
        "# Quality benchmark: fuse-small vs noisy input, noisereduce and DeepFilterNet3",
        "",
        f"Generated by `benchmarks/bench_quality.py` on {cfg['date']} ({cfg['machine']}, torch threads "
        f"{cfg['threads']}). Seed {cfg['seed']}; {n_in} in-domain pairs from the corpus valid splits (speech: "
        "hedgewars wideband voices and Dutch fillets lines; noise: recorded valid noise, white, pink, 4-talker "
        f"babble; SNR {', '.join(f'{s:g}' for s in SNRS_DB)} dB), {n_ood} out-of-domain pairs with narrowband French "
        f"prompts as speech. Whole run: {result['runtime_s']['total']:.0f} s.",
        "",
        "PESQ-WB (1.04-4.64), ESTOI (0-1), SI-SDR (dB) against the clean reference; DNSMOS P.835 SIG/BAK/OVRL (1-5) "
        "of the output alone. RTF = wall time / audio duration on 4 s clips (median of "
        f"{cfg['timing_repeats']} repeats x {cfg['timing_clips']} clips; lower is faster). "
        "fuse-small figures carry their ratio to DeepFilterNet3's in brackets (for SI-SDR, a ratio of dB values; "
        "for RTF, below 1 is faster).",
        "",
        "## Overall (in-domain)",
        "",
        table(summary, "overall", systems, timing, result.get("clean_dnsmos", {}).get("overall")),
        "",
        "## Out-of-domain (narrowband French prompts)",
        "",
        table(summary, "out_of_domain", systems, None, result.get("clean_dnsmos", {}).get("out_of_domain")),
        "",
        "## By SNR (in-domain)",
        "",
    ]
    snr_groups = [str(s) for s in SNRS_DB]
    for key, label, fmt in COLUMNS[:3] + COLUMNS[5:]:
        md += [f"{label} by input SNR (dB):", "", group_table(summary, "by_snr", snr_groups, key, systems, fmt), ""]
    md += ["## By noise type (in-domain)", ""]
    for key, label, fmt in (COLUMNS[0], COLUMNS[2]):
        md += [f"{label}:", "", group_table(summary, "by_noise", NOISE_TYPES, key, systems, fmt), ""]
    md += [
        "## By speech source (in-domain)",
        "",
        "hedgewars voices are wideband; the Dutch fillets lines are band-limited near 4 kHz (see the corpus README).",
        "",
    ]
    for key, label, fmt in (COLUMNS[0], COLUMNS[5]):
        md += [f"{label}:", "", group_table(summary, "by_source", SOURCES, key, systems, fmt), ""]
    bad = weaknesses(summary)
    if bad:
        md += (
            ["## What fuse-small does badly", ""]
            + bad
            + [
                "",
                "Listen for yourself: `--save-audio DIR` writes every clean, noisy and enhanced file of the run.",
                "",
            ]
        )
    md += ["## Acceptance (issue 6)", ""] + acceptance(summary, timing) + [""]
    if timing.get(REFERENCE, {}).get("setup_s") is not None:
        md += [
            "DeepFilterNet3's RTF excludes creating its streaming processor "
            f"({timing[REFERENCE]['setup_s'] * 1000:.0f} ms per file, the model being unpacked), as fuse-small's "
            "excludes loading the pipeline.",
            "",
        ]
    if plots:
        md += ["## Plots", ""] + [f"![{title}]({name})" for title, name in plots.items()] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(md))


# ================================================================================================
# plots
# ================================================================================================
PLOT_FILES = {
    "metrics vs steps": "quality_vs_steps.png",
    "guidance on vs off (6 steps)": "quality_guidance.png",
    "PESQ-WB vs input SNR (in-domain)": "quality_pesq_vs_snr.png",
    "spectrograms of two examples": "quality_spectrograms.png",
}


def make_plots(out_dir: Path, result: dict, examples: dict[str, dict[str, np.ndarray]]) -> dict[str, str]:
    """Write the PNGs that the available systems allow; returns {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, systems = result["summary"], result["systems"]
    plots = {}
    panels = (("pesq", "PESQ-WB"), ("estoi", "ESTOI"), ("si_sdr", "SI-SDR (dB)"), ("dnsmos_ovrl", "DNSMOS OVRL"))
    out_dir.mkdir(parents=True, exist_ok=True)

    steps = [s for s in FUSE_STEPS if f"fuse@{s}" in summary]
    if len(steps) >= 2:
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
        for ax, (key, label) in zip(axes, panels):
            ax.plot(steps, [summary[f"fuse@{s}"]["overall"][key] for s in steps], "o-", label="fuse-small")
            for peer, style in zip(PEER_SYSTEMS, (":", "--", "-.")):
                if peer in summary:
                    ax.axhline(summary[peer]["overall"][key], ls=style, color="gray", label=peer)
            ax.set_xlabel("DDIM steps"), ax.set_title(label), ax.set_xticks(steps), ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout(), fig.savefig(out_dir / "quality_vs_steps.png", dpi=110), plt.close(fig)
        plots["metrics vs steps"] = "quality_vs_steps.png"

    if MAIN_FUSE in summary and "fuse@6-g0" in summary:
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
        for ax, (key, label) in zip(axes, panels):
            for i, part in enumerate(("overall", "out_of_domain")):
                vals = [summary[MAIN_FUSE][part][key], summary["fuse@6-g0"][part][key]]
                ax.bar([i - 0.2, i + 0.2], vals, width=0.38, color=["C0", "C1"])
            ax.set_xticks([0, 1], ["in-domain", "out-of-domain"]), ax.set_title(label), ax.grid(axis="y", alpha=0.3)
        axes[0].legend(
            handles=[plt.Rectangle((0, 0), 1, 1, color="C0"), plt.Rectangle((0, 0), 1, 1, color="C1")],
            labels=["guidance on (1.0)", "guidance off (0.0)"],
            fontsize=7,
        )
        fig.tight_layout(), fig.savefig(out_dir / "quality_guidance.png", dpi=110), plt.close(fig)
        plots["guidance on vs off (6 steps)"] = "quality_guidance.png"

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for system in systems:
        ax.plot(SNRS_DB, [summary[system]["by_snr"][str(s)]["pesq"] for s in SNRS_DB], "o-", label=system)
    ax.set_xlabel("input SNR (dB)"), ax.set_ylabel("PESQ-WB"), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    fig.tight_layout(), fig.savefig(out_dir / "quality_pesq_vs_snr.png", dpi=110), plt.close(fig)
    plots["PESQ-WB vs input SNR (in-domain)"] = "quality_pesq_vs_snr.png"

    if examples:
        rows = [r for r in ("noisy", REFERENCE, MAIN_FUSE, "clean") if any(r in ex for ex in examples.values())]
        fig, axes = plt.subplots(
            len(rows), len(examples), figsize=(5.5 * len(examples), 2.2 * len(rows)), squeeze=False
        )
        for col, (title, ex) in enumerate(examples.items()):
            for row, name in enumerate(rows):
                ax = axes[row][col]
                if name in ex:
                    ax.specgram(
                        ex[name] + 1e-7, NFFT=512, Fs=SAMPLE_RATE, noverlap=384, cmap="magma", vmin=-130, vmax=-30
                    )
                ax.set_title(f"{title}: {name}", fontsize=8)
                ax.set_ylabel("Hz", fontsize=7)
                ax.tick_params(labelsize=6)
        fig.tight_layout(), fig.savefig(out_dir / "quality_spectrograms.png", dpi=100), plt.close(fig)
        plots["spectrograms of two examples"] = "quality_spectrograms.png"
    return plots
