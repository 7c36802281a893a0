"""The quality benchmark's report: summaries of the scores, the markdown of ``results.md`` and the plots.

Everything here is a function of a run's result (the JSON that `python -m benchmarks.bench_quality` writes), so that
``--render-only`` can rewrite ``results.md`` from the JSON of an earlier run without enhancing anything. The
stranger split (corpus v2) comes first, with the acceptance checks of issue 12; the v1 corpus' in-domain and
out-of-domain pairs second, with those of issue 6. A JSON holding only one of them renders only its sections.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fuse_hf.audio import SAMPLE_RATE
from fuse_hf.metrics import nanmean

from ..common import markdown_table
from .evaluation_set import NOISE_TYPES, NOISY_BUCKETS, SNRS_DB, SOURCES, STRANGER_BUCKETS
from .run import FUSE_STEPS, HIGH_BAND_HZ, MAIN_FUSE, PEER_SYSTEMS, REFERENCE, guidance_variants

# Column order of every table: (result key, header, format).
COLUMNS = (
    ("pesq", "PESQ-WB", "{:.2f}"),
    ("estoi", "ESTOI", "{:.3f}"),
    ("si_sdr", "SI-SDR dB", "{:.2f}"),
    ("dnsmos_sig", "SIG", "{:.2f}"),
    ("dnsmos_bak", "BAK", "{:.2f}"),
    ("dnsmos_ovrl", "OVRL", "{:.2f}"),
)
# Averaged per part: the metrics and the output's high-band energy against the clean speech's (`run.high_band_db`).
METRIC_KEYS = tuple(c[0] for c in COLUMNS) + ("hf4k_db",)
# The four metrics of the acceptance checks, and their columns.
ACCEPT_KEYS = ("pesq", "estoi", "si_sdr", "dnsmos_ovrl")
ACCEPT_COLUMNS = tuple(c for c in COLUMNS if c[0] in ACCEPT_KEYS)
HIGH_BAND_FORMAT = "{:+.1f}"


def _noisy_stranger(p: dict) -> bool:
    return p["subset"] == "stranger" and p["snr_bucket"] != "clean"


# Summary parts over whole subsets: name -> which pairs. "stranger" is the stranger split's noisy mixtures (-5..20
# dB; clean inputs are their own bucket: the noisy input's SI-SDR there is unbounded); "overall" is the v1 in-domain
# set (its name kept for the JSON of earlier runs).
PARTS: dict[str, Callable[[dict], bool]] = {
    "stranger": _noisy_stranger,
    "overall": lambda p: p["subset"] == "in-domain",
    "out_of_domain": lambda p: p["subset"] == "out-of-domain",
}


# Parts of the plots, in their order: (summary part, label).
PARTS_LABELS = (("stranger", "stranger"), ("overall", "in-domain"), ("out_of_domain", "out-of-domain"))


# ================================================================================================
# summaries and tables
# ================================================================================================
def summarise(scores: dict[str, list[dict]], pairs: list[dict]) -> dict:
    """Mean of each metric per system (`fuse_hf.metrics.nanmean`: unscorable pairs left out), in flat parts.

    v1 pairs (when there are any): ``overall`` (in-domain), ``out_of_domain``, and in-domain ``by_snr``,
    ``by_noise``, ``by_source``. Stranger pairs (when there are any): ``stranger`` (the noisy mixtures),
    ``stranger_by_snr`` (the buckets -5..20 and clean), ``stranger_by_language``, ``stranger_by_noise`` and
    ``stranger_by_bandwidth`` (noisy mixtures; groups as found, sorted) and ``stranger_wideband_by_snr`` (wideband
    speech only: each bucket, ``noisy`` and ``all``, for the high-band energy). Every entry has ``n``, its pair count.
    """

    def mean_over(system, keep):
        rows = [s for s, p in zip(scores[system], pairs) if keep(p)]
        out = {k: nanmean([r.get(k, math.nan) for r in rows]) for k in METRIC_KEYS}
        out["n"] = len(rows)
        return out

    def by(system, keep, field, values):
        return {str(v): mean_over(system, lambda p, v=v: keep(p) and p[field] == v) for v in values}

    def found(field):
        return sorted({p[field] for p in pairs if _noisy_stranger(p)})

    in_domain = PARTS["overall"]
    stranger = [p for p in pairs if p["subset"] == "stranger"]
    wideband = lambda p: p["subset"] == "stranger" and p["bandwidth"] == "wideband"  # noqa: E731
    summary = {}
    for system in scores:
        part = summary[system] = {}
        if len(stranger) < len(pairs):
            part.update(
                overall=mean_over(system, in_domain),
                out_of_domain=mean_over(system, PARTS["out_of_domain"]),
                by_snr=by(system, in_domain, "snr_db", SNRS_DB),
                by_noise=by(system, in_domain, "noise_type", NOISE_TYPES),
                by_source=by(system, in_domain, "source", SOURCES),
            )
        if stranger:
            part.update(
                stranger=mean_over(system, _noisy_stranger),
                stranger_by_snr=by(system, lambda p: p["subset"] == "stranger", "snr_bucket", STRANGER_BUCKETS),
                stranger_by_language=by(system, _noisy_stranger, "language", found("language")),
                stranger_by_noise=by(system, _noisy_stranger, "noise_kind", found("noise_kind")),
                stranger_by_bandwidth=by(system, _noisy_stranger, "bandwidth", found("bandwidth")),
                stranger_wideband_by_snr={
                    **by(system, wideband, "snr_bucket", STRANGER_BUCKETS),
                    "noisy": mean_over(system, lambda p: wideband(p) and _noisy_stranger(p)),
                    "all": mean_over(system, wideband),
                },
            )
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


def group_table(
    summary: dict,
    part: str,
    groups: Sequence[str],
    key: str,
    systems: Sequence[str],
    fmt: str,
    labels: Sequence[str] | None = None,
) -> str:
    """Markdown table of one metric: systems as rows, groups (SNRs, noise types, ...) as columns, headed by
    ``labels`` (default: the group names)."""
    rows = [[system] + [_fmt(summary[system][part][g][key], fmt) for g in groups] for system in systems]
    return markdown_table(["system", *(labels or groups)], rows)


def measured(summary: dict, part: str, columns: Sequence[tuple] = ACCEPT_COLUMNS) -> list[tuple]:
    """The ``columns`` that some system scored in some group of ``part`` (a run without DNSMOS has no OVRL tables)."""
    groups = [g for s in summary.values() for g in s[part].values()]
    return [c for c in columns if any(not math.isnan(g[c[0]]) for g in groups)]


def restore_nans(value):
    """``value`` with every None that a strict JSON wrote for NaN turned back into NaN (`common.write_json`)."""
    if isinstance(value, dict):
        return {k: restore_nans(v) for k, v in value.items()}
    return math.nan if value is None else value


def group_labels(summary: dict, part: str, groups: Sequence[str], unit: str = "") -> list[str]:
    """Column headers with the pair count of each group: ``"it (n=12)"``, ``"-5 dB (n=12)"``."""
    first = next(iter(summary.values()))[part]
    return [f"{g}{unit if g not in ('clean', 'noisy', 'all') else ''} (n={first[g]['n']})" for g in groups]


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


def _compare(ours: dict, theirs: dict, keys: Sequence[str] = ACCEPT_KEYS) -> tuple[list[str], str]:
    """(the keys where ``ours`` is higher, "PESQ-WB 1.50 vs 1.40, ESTOI 0.600 vs 0.620 (lower), ...")."""
    wins, cells = [], []
    for key, label, fmt in (c for c in COLUMNS if c[0] in keys):
        a, b = ours[key], theirs[key]
        won = not math.isnan(a) and not math.isnan(b) and a > b
        wins += [key] * won
        cells.append(f"{label} {_fmt(a, fmt)} vs {_fmt(b, fmt)}" + ("" if won else " (not higher)"))
    return wins, ", ".join(cells)


def stranger_acceptance(summary: dict, silence: dict | None = None) -> list[tuple[bool | None, str]]:
    """Issue 12's acceptance checks on the stranger split, as ``(passed, text)``; ``passed`` is None for lines that
    report without checking (guidance). A metric that was not measured fails its check."""
    fuse = summary.get(MAIN_FUSE, {})
    if "stranger" not in fuse:
        return [(None, "fuse@6 was not run on the stranger split: no acceptance check.")]
    checks: list[tuple[bool | None, str]] = []
    by_snr, wide = fuse["stranger_by_snr"], fuse["stranger_wideband_by_snr"]
    if "identity" in summary:
        noisy = summary["identity"]
        parts = [("overall (-5..20 dB)", fuse["stranger"], noisy["stranger"])]
        parts += [(f"{b} dB", by_snr[b], noisy["stranger_by_snr"][b]) for b in NOISY_BUCKETS[:-1]]
        for where, ours, theirs in parts:
            wins, text = _compare(ours, theirs)
            checks.append((len(wins) == len(ACCEPT_KEYS), f"{where}: fuse@6 beats the noisy input on all four: {text}"))
        d_estoi, d_pesq = (by_snr["20"][k] - noisy["stranger_by_snr"]["20"][k] for k in ("estoi", "pesq"))
        text = f"ESTOI {_fmt(d_estoi, '{:+.3f}')}, PESQ-WB {_fmt(d_pesq, '{:+.2f}')}"
        checks.append((d_estoi >= -0.02 and d_pesq >= -0.1, f"20 dB: loses at most 0.02 ESTOI, 0.1 PESQ-WB: {text}"))
    # Over all wideband pairs, and on clean input alone: there no residual noise can make up for a lost high band.
    hf, hf_clean = wide["all"]["hf4k_db"], wide["clean"]["hf4k_db"]
    text = (
        f"{_fmt(hf, HIGH_BAND_FORMAT)} dB over {wide['all']['n']} pairs, {_fmt(hf_clean, HIGH_BAND_FORMAT)} dB on "
        f"{wide['clean']['n']} clean inputs"
    )
    checks.append(
        (
            abs(hf) <= 3.0 and abs(hf_clean) <= 3.0,
            f"wideband speech: energy above 4 kHz within 3 dB of the clean speech's: {text}",
        )
    )
    pesq, si_sdr = by_snr["clean"]["pesq"], by_snr["clean"]["si_sdr"]
    text = f"PESQ-WB {_fmt(pesq)} >= 3.8 and SI-SDR {_fmt(si_sdr)} >= 15 dB"
    checks.append((pesq >= 3.8 and si_sdr >= 15.0, f"clean input comes back: {text}"))
    quiet = (silence or {}).get(MAIN_FUSE, {"rms_dbfs": math.nan, "peak_dbfs": math.nan})
    text = f"RMS {_fmt(quiet['rms_dbfs'], '{:.1f}')} dBFS < -70 (peak {_fmt(quiet['peak_dbfs'], '{:.1f}')} dBFS)"
    checks.append((quiet["rms_dbfs"] < -70.0, f"digital silence stays silent: {text}"))
    if REFERENCE in summary:
        wins, text = _compare(fuse["stranger"], summary[REFERENCE]["stranger"])
        checks.append((len(wins) >= 2, f"beats DeepFilterNet3 on at least two of four overall ({len(wins)}): {text}"))
    scales = guidance_variants(list(summary))
    if len(scales) >= 2:
        cells = [
            f"{g:g}: "
            + ", ".join(f"{label} {_fmt(summary[s]['stranger'][k], fmt)}" for k, label, fmt in ACCEPT_COLUMNS)
            for g, s in scales
        ]
        best = max(scales, key=lambda gs: np.nan_to_num(summary[gs[1]]["stranger"]["pesq"], nan=-1.0))
        checks.append(
            (
                None,
                f"guidance scale at 6 steps (0: off, 1: as trained, above 1: classifier-free): {'; '.join(cells)}. "
                f"Best PESQ-WB: {best[0]:g}",
            )
        )
    return checks


def checklist(checks: Sequence[tuple[bool | None, str]]) -> list[str]:
    """Markdown bullets of ``(passed, text)``: ``- [x] ...``, ``- [ ] ...``, or ``- ...`` when not a check."""
    return [f"- {'' if ok is None else '[x] ' if ok else '[ ] '}{text}" for ok, text in checks]


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


def _stranger_sections(result: dict) -> list[str]:
    """The stranger split's sections of ``results.md``: overall, by SNR, language, noise kind, bandwidth, the high
    band and digital silence."""
    summary, timing, systems = result["summary"], result["timing"], result["systems"]
    n_clean = summary[systems[0]]["stranger_by_snr"]["clean"]["n"]
    md = [
        "## Stranger split: overall",
        "",
        f"The {summary[systems[0]]['stranger']['n']} noisy mixtures (-5..20 dB; clean inputs ({n_clean}) are the "
        "last column of the SNR tables: the noisy input's SI-SDR is unbounded there).",
        "",
        table(summary, "stranger", systems, timing, result.get("clean_dnsmos", {}).get("stranger")),
        "",
    ]
    for part, what, unit in (
        ("stranger_by_snr", "input SNR", " dB"),
        ("stranger_by_language", "language (noisy mixtures)", ""),
        ("stranger_by_noise", "noise kind (noisy mixtures)", ""),
        ("stranger_by_bandwidth", "speech bandwidth (noisy mixtures)", ""),
    ):
        groups = list(summary[systems[0]][part])
        labels = group_labels(summary, part, groups, unit)
        md += [f"## Stranger split by {what}", ""]
        for key, label, fmt in measured(summary, part):
            md += [f"{label}:", "", group_table(summary, part, groups, key, systems, fmt, labels), ""]
    groups = STRANGER_BUCKETS + ("noisy", "all")
    md += [
        "## High band (stranger split, wideband speech)",
        "",
        f"Energy above {HIGH_BAND_HZ / 1000:g} kHz of each output relative to the clean speech's, in dB, mean over "
        "the wideband pairs of each bucket (noisy: all noisy mixtures; all: with the clean inputs). 0: as much high "
        "band as the clean speech; below 0 the output is band-limited; the noisy input sits above 0 where the noise "
        "adds high band.",
        "",
        group_table(
            summary,
            "stranger_wideband_by_snr",
            groups,
            "hf4k_db",
            systems,
            HIGH_BAND_FORMAT,
            group_labels(summary, "stranger_wideband_by_snr", groups, " dB"),
        ),
        "",
    ]
    silence = result.get("silence")
    if silence:
        rows = [[s, f"{v['rms_dbfs']:.1f}", f"{v['peak_dbfs']:.1f}"] for s, v in silence.items()]
        md += [
            "## Digital silence",
            "",
            f"{result['config'].get('silence_seconds', 2):g} s of zeros through each FUSE system: the output's RMS "
            "and peak level (dBFS; a full-scale sine is -3 dBFS RMS, -200 means exact zeros).",
            "",
            markdown_table(["system", "RMS dBFS", "peak dBFS"], rows, right_align=True),
            "",
        ]
    return md


def _v1_sections(result: dict, headline: bool) -> list[str]:
    """The v1 corpus' sections of ``results.md``: in-domain overall (with the RTF column when it is the
    ``headline``), out-of-domain, by SNR, noise type and speech source, and what fuse-small does badly there."""
    summary, timing, systems = result["summary"], result["timing"], result["systems"]
    clean = result.get("clean_dnsmos", {})
    md = [
        "## In-domain (corpus v1 valid splits): overall",
        "",
        table(summary, "overall", systems, timing if headline else None, clean.get("overall")),
        "",
        "## Out-of-domain (narrowband French prompts)",
        "",
        table(summary, "out_of_domain", systems, None, clean.get("out_of_domain")),
        "",
        "## By SNR (in-domain)",
        "",
    ]
    snr_groups = [str(s) for s in SNRS_DB]
    for key, label, fmt in measured(summary, "by_snr"):
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
        md += ["## What fuse-small does badly (v1 corpus)", ""] + bad + [""]
    return md


def write_markdown(path: Path, result: dict, plots: dict[str, str]) -> None:
    """``results.md``: the stranger split's tables (when it ran), then the v1 corpus' (when it ran), the acceptance
    checks and links to the plots."""
    result = {**result, "summary": restore_nans(result["summary"])}
    summary, timing = result["summary"], result["timing"]
    cfg, pairs = result["config"], result["pairs"]
    n_stranger = sum(p["subset"] == "stranger" for p in pairs)
    n_in = sum(p["subset"] == "in-domain" for p in pairs)
    n_ood = sum(p["subset"] == "out-of-domain" for p in pairs)
    sets = []
    if n_stranger:
        sets.append(
            f"{n_stranger} pairs of corpus v2's **stranger split** (languages, voices and noise recordings that no "
            "training split contains), a seeded subset stratified by SNR bucket (-5, 0, 5, 10, 15, 20 dB and clean "
            "input) and balanced over languages and noise kinds"
        )
    if n_in + n_ood:
        sets.append(
            f"{n_in} in-domain pairs from the v1 corpus valid splits (speech: hedgewars wideband voices and Dutch "
            "fillets lines; noise: recorded valid noise, white, pink, 4-talker babble; SNR "
            f"{', '.join(f'{s:g}' for s in SNRS_DB)} dB) and {n_ood} out-of-domain pairs with narrowband French "
            "prompts as speech"
        )
    md = [
        "# Quality benchmark: fuse-small vs noisy input, noisereduce and DeepFilterNet3",
        "",
        f"Generated by `benchmarks/bench_quality.py` on {cfg['date']} ({cfg['machine']}, torch threads "
        f"{cfg['threads']}). Seed {cfg['seed']}; {'; '.join(sets)}. Whole run: {result['runtime_s']['total']:.0f} s.",
        "",
        "PESQ-WB (1.04-4.64), ESTOI (0-1), SI-SDR (dB) against the clean reference; DNSMOS P.835 SIG/BAK/OVRL (1-5) "
        "of the output alone. RTF = wall time / audio duration on 4 s clips (median of "
        f"{cfg['timing_repeats']} repeats x {cfg['timing_clips']} clips; lower is faster). "
        "fuse-small figures carry their ratio to DeepFilterNet3's in brackets (for SI-SDR, a ratio of dB values; "
        "for RTF, below 1 is faster). identity is the noisy input.",
        "",
    ]
    if n_stranger:
        md += _stranger_sections(result)
    if n_in + n_ood:
        md += _v1_sections(result, headline=not n_stranger)
    md += ["Listen for yourself: `--save-audio DIR` writes every clean, noisy and enhanced file of the run.", ""]
    if n_stranger:
        md += ["## Acceptance (issue 12, stranger split)", ""]
        md += checklist(stranger_acceptance(summary, result.get("silence"))) + [""]
    if n_in + n_ood:
        md += ["## Acceptance (issue 6, v1 corpus)", ""] + acceptance(summary, timing) + [""]
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
    "metrics vs input SNR (stranger split)": "quality_stranger_vs_snr.png",
    "metrics vs steps": "quality_vs_steps.png",
    "guidance scale (6 steps)": "quality_guidance.png",
    "PESQ-WB vs input SNR (in-domain)": "quality_pesq_vs_snr.png",
    "spectrograms of two examples": "quality_spectrograms.png",
}
PANELS = (("pesq", "PESQ-WB"), ("estoi", "ESTOI"), ("si_sdr", "SI-SDR (dB)"), ("dnsmos_ovrl", "DNSMOS OVRL"))
SI_SDR_PLOT_MAX = 40.0  # the noisy input's SI-SDR on clean input is unbounded: drawn at the top of the axis


def make_plots(out_dir: Path, result: dict, examples: dict[str, dict[str, np.ndarray]]) -> dict[str, str]:
    """Write the PNGs that the available systems and sets allow; returns {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, systems = restore_nans(result["summary"]), result["systems"]
    plots = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    first = summary[systems[0]]
    parts = [(p, label) for p, label in PARTS_LABELS if p in first]  # stranger first, when it ran

    def save(fig, title, dpi=110):
        fig.tight_layout(), fig.savefig(out_dir / PLOT_FILES[title], dpi=dpi), plt.close(fig)
        plots[title] = PLOT_FILES[title]

    if "stranger_by_snr" in first:
        x = np.arange(len(STRANGER_BUCKETS))
        keys = {c[0] for c in measured(summary, "stranger_by_snr")}
        panels = [p for p in PANELS if p[0] in keys] + [("hf4k_db", "high band re clean (dB, wideband)")]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.6), squeeze=False)
        for ax, (key, label) in zip(axes[0], panels):
            part = "stranger_wideband_by_snr" if key == "hf4k_db" else "stranger_by_snr"
            for system in systems:
                values = np.array([summary[system][part][b][key] for b in STRANGER_BUCKETS], float)
                if key == "si_sdr":
                    values = np.minimum(values, SI_SDR_PLOT_MAX)
                ax.plot(x, values, "o-" if system.startswith("fuse") else "s--", label=system, ms=4)
            ax.set_xticks(x, [b if b == "clean" else f"{b} dB" for b in STRANGER_BUCKETS], fontsize=7)
            ax.set_title(label), ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        save(fig, "metrics vs input SNR (stranger split)")

    steps = [s for s in FUSE_STEPS if f"fuse@{s}" in summary]
    if len(steps) >= 2:
        part = parts[0][0]
        fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
        for ax, (key, label) in zip(axes, PANELS):
            ax.plot(steps, [summary[f"fuse@{s}"][part][key] for s in steps], "o-", label="fuse-small")
            for peer, style in zip(PEER_SYSTEMS, (":", "--", "-.")):
                if peer in summary:
                    ax.axhline(summary[peer][part][key], ls=style, color="gray", label=peer)
            ax.set_xlabel("DDIM steps"), ax.set_title(f"{label}, {parts[0][1]}"), ax.set_xticks(steps)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        save(fig, "metrics vs steps")

    scales = guidance_variants(systems)
    if len(scales) >= 2:
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
        width = 0.8 / len(scales)
        for ax, (key, label) in zip(axes, PANELS):
            for i, (part, _) in enumerate(parts):
                for j, (_, system) in enumerate(scales):
                    ax.bar(i - 0.4 + (j + 0.5) * width, summary[system][part][key], width=width, color=f"C{j}")
            ax.set_xticks(range(len(parts)), [label for _, label in parts], fontsize=7)
            ax.set_title(label), ax.grid(axis="y", alpha=0.3)
        axes[0].legend(
            handles=[plt.Rectangle((0, 0), 1, 1, color=f"C{j}") for j in range(len(scales))],
            labels=[f"guidance {g:g}" for g, _ in scales],
            fontsize=7,
        )
        save(fig, "guidance scale (6 steps)")

    if "by_snr" in first:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for system in systems:
            ax.plot(SNRS_DB, [summary[system]["by_snr"][str(s)]["pesq"] for s in SNRS_DB], "o-", label=system)
        ax.set_xlabel("input SNR (dB)"), ax.set_ylabel("PESQ-WB"), ax.grid(alpha=0.3), ax.legend(fontsize=7)
        save(fig, "PESQ-WB vs input SNR (in-domain)")

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
        save(fig, "spectrograms of two examples", dpi=100)
    return plots
