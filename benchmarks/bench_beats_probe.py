"""Linear probe of the bundled BEATs conditioner: did self-supervised pre-training teach it anything?

The BEATs issue (section 3) asks for a probe on held-out mixtures, pre-trained vs. the same architecture with
random weights. This script builds a fixed, seeded set of noisy mixtures from the corpus *valid* splits only
(valid speech; valid noise recordings or synthetic white/pink/babble noise; SNR -5..20 dB; `--split dev_stranger`
takes corpus v2's stranger split instead: languages, voices and noises no training split holds), extracts frozen
features per 160 ms patch row, and fits closed-form ridge probes
(:func:`benchmarks.linear_probe.fit_linear_probe`) for

* ``vad``: row-level speech / non-speech, the label being "clean-speech energy of the row above
  ``--vad_threshold_db`` (-40 dB) relative to the clip's loudest row";
* ``row_snr``: row-level local SNR in dB (clean vs. added noise power over the row, clipped to [-20, 30] dB),
  on the speech rows only (non-speech rows have no finite SNR);
* ``utt_snr``: utterance-level mixing SNR in dB from the row features averaged over the clip.

Feature sets: the pre-trained conditioner (and `--compare`, a second one), the same configuration with seeded random
weights, and two trivial baselines computed from the same filterbank the model sees: the 128 log-mel bins averaged
over the row's 16 frames, and the row's mean log-mel energy alone (one number).

The mixtures are split by speech file (even file index vs. odd), so no recording is on both sides; the 5 valid
noise recordings are shared by both halves (there are only 5). Each probe is fitted twice, train on one half and
test on the other, then the other way round; the table shows the mean of the two folds and the JSON each fold.

It also reports the masked-token accuracy curve of pre-training (from the run's ``validation_history.jsonl``)
beside two references computed here with the same frozen tokenizer (the iteration-1 random projection, or the
distilled one of iteration 2 with ``--tokenizer``): chance (1 / codebook size) and "always predict the most
frequent token".

    nice -n 10 python -m benchmarks.bench_beats_probe --out benchmarks/results/beats_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from fuse_hf.audio import list_audio_files
from fuse_hf.data import make_validation_pairs
from fuse_hf.models.beats import BEATsConfig, BEATsModel, BEATsTokenizer
from fuse_hf.models.beats_pretraining import RandomProjectionTokenizer

from .common import DEFAULT_CORPUS, RESULTS_DIR, write_json
from .linear_probe import fit_linear_probe, probe_features, row_targets_from_samples

PATCH = 16  # fbank frames (and mel bins) per patch; one row = 16 frames = 160 ms
ROW_HOP = 2560  # samples between rows (16 frames x 10 ms)
ROW_SPAN = 2800  # samples a row covers (15 hops + one 25 ms window)
SNR_CLIP_DB = (-20.0, 30.0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditioner", default="pipelines/fuse-small/conditioner", help="pre-trained BEATs folder")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument(
        "--split",
        default="valid",
        choices=("valid", "dev_stranger"),
        help="where the mixtures come from: the valid split, or corpus v2's stranger split (never trained on)",
    )
    parser.add_argument(
        "--compare", default=None, help="a second pre-trained BEATs folder, probed on the same mixtures"
    )
    parser.add_argument(
        "--history",
        default="/tmp/gpu1/beats/validation_history.jsonl",
        help="pre-training validation history (masked-token accuracy); skipped if missing",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="the distilled tokenizer (`train.py beats_tokenizer` output) whose labels --history was trained on; "
        "default: the iteration-1 random projection",
    )
    parser.add_argument("--num_mixtures", type=int, default=104, help="one per valid speech file by default")
    parser.add_argument("--seconds", type=float, default=4.0, help="mixture length (short files are zero-padded)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--random_seed", type=int, default=0, help="seed of the random-weights control")
    parser.add_argument("--vad_threshold_db", type=float, default=-40.0)
    parser.add_argument("--ridge", type=float, default=1e-2, help="fit_linear_probe's ridge (relative to rows)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS_DIR / "beats_probe.json"))
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ data


def build_mixtures(corpus: Path, n: int, seconds: float, seed: int, split: str = "valid") -> list[dict]:
    """Seeded noisy/clean pairs from one split's speech and noise only (`valid`, or `dev_stranger` of corpus v2),
    each tagged with its speech file index."""
    speech = list_audio_files(corpus / "speech" / split)
    noise = list_audio_files(corpus / "noise" / split)
    if not speech:
        raise ValueError(f"corpus: no {split} speech under {corpus / 'speech' / split}. Build the corpus first.")
    pairs = make_validation_pairs(
        speech,
        noise,
        n,
        int(seconds * 16000),
        seed=seed,
        snr_db=(-5.0, 20.0),
        synthetic_noises=("white", "pink", "babble"),
    )
    for i, pair in enumerate(pairs):
        # make_validation_pairs uses file i * len // n (shifted past unreadable files; none in this corpus).
        pair["file_index"] = i * len(speech) // n
    return pairs


def row_targets(clean: torch.Tensor, noisy: torch.Tensor, rows: int, vad_threshold_db: float):
    """Per-row targets `(batch, rows)`: speech flag (bool) and local SNR in dB (clipped; NaN where no speech)."""
    noise = noisy - clean
    clean_power = row_targets_from_samples(clean.double() ** 2, rows, PATCH).double()
    noise_power = row_targets_from_samples(noise.double() ** 2, rows, PATCH).double()
    clean_db = 10 * torch.log10(clean_power.clamp_min(1e-20))
    relative_db = clean_db - clean_db.max(dim=1, keepdim=True).values
    speech = relative_db > vad_threshold_db
    snr = 10 * torch.log10(clean_power.clamp_min(1e-20) / noise_power.clamp_min(1e-20)).clamp(*SNR_CLIP_DB)
    return speech, torch.where(speech, snr, torch.full_like(snr, math.nan)).float()


def fbank_row_features(model: BEATsModel, waveform: torch.Tensor) -> torch.Tensor:
    """Trivial baseline: the model's normalised log-mel filterbank averaged over each row -> `(batch, rows, 128)`."""
    fb = model.preprocess(waveform)
    rows = fb.shape[1] // PATCH
    return fb[:, : rows * PATCH].reshape(fb.shape[0], rows, PATCH, fb.shape[2]).mean(dim=2)


# ------------------------------------------------------------------------------------------------ probes


def run_probes(
    features: torch.Tensor,
    speech: torch.Tensor,
    snr: torch.Tensor,
    utt_snr: torch.Tensor,
    train: torch.Tensor,
    ridge: float,
) -> dict[str, dict[str, float]]:
    """One fold. features `(clips, rows, dim)`; speech/snr `(clips, rows)`; utt_snr `(clips,)`; train `(clips,)` bool
    (probe-train clips; the others are probe-test)."""
    test = ~train
    dim = features.shape[-1]
    out = {}
    x_tr, x_te = features[train].reshape(-1, dim), features[test].reshape(-1, dim)
    out["vad"] = fit_linear_probe(
        x_tr, speech[train].reshape(-1).long(), x_te, speech[test].reshape(-1).long(), "classification", ridge
    )

    s_tr, s_te = snr[train].reshape(-1), snr[test].reshape(-1)
    keep_tr, keep_te = ~torch.isnan(s_tr), ~torch.isnan(s_te)
    row = fit_linear_probe(x_tr[keep_tr], s_tr[keep_tr], x_te[keep_te], s_te[keep_te], "regression", ridge)
    row["rmse_db"] = math.sqrt(row["mse"])
    row["target_std_db"] = float(s_te[keep_te].std(unbiased=False))
    out["row_snr"] = row

    pooled = features.mean(dim=1)
    utt = fit_linear_probe(pooled[train], utt_snr[train], pooled[test], utt_snr[test], "regression", ridge)
    utt["rmse_db"] = math.sqrt(utt["mse"])
    utt["target_std_db"] = float(utt_snr[test].std(unbiased=False))
    out["utt_snr"] = utt
    return out


def token_references(waveforms: torch.Tensor, model: BEATsModel, tokenizer=None) -> dict[str, float]:
    """Accuracy of "always the most frequent token" for the pre-training labels: those of `tokenizer` (a
    `BEATsTokenizer`, iteration 2) or of the iteration-1 random projection (codebook 1024, seed 0)."""
    tokenizer = tokenizer or RandomProjectionTokenizer(PATCH, 1024, 256, seed=0)
    labels = tokenizer.tokenize(model.preprocess(waveforms)).reshape(-1)
    counts = torch.bincount(labels, minlength=tokenizer.codebook_size).double()
    return {
        "tokenizer": type(tokenizer).__name__,
        "codebook_size": tokenizer.codebook_size,
        "chance": 1 / tokenizer.codebook_size,
        "most_frequent_token": float(counts.max() / counts.sum()),
        "tokens_used": int((counts > 0).sum()),
    }


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ report


def mean_of_folds(folds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Averages each probe's figures over the folds, and keeps their spread (max - min) as ``<key>_spread``."""
    out = {}
    for task in folds[0]:
        out[task] = {}
        for key in folds[0][task]:
            values = [f[task][key] for f in folds]
            out[task][key] = float(np.mean(values))
            out[task][key + "_spread"] = float(np.max(values) - np.min(values))
    return out


def print_table(results: dict[str, dict], counts: dict[str, int]) -> None:
    print(
        f"\n{counts['clips']} clips x {counts['rows_per_clip']} rows, split in two halves by speech file "
        f"({counts['half_clips'][0]}/{counts['half_clips'][1]} clips); speech rows {counts['speech_rows']}, "
        f"non-speech fraction {counts['nonspeech_fraction']:.2f}. Mean of the 2 folds (train on one half, test on "
        "the other):"
    )
    header = (
        f"{'features':<22}{'dim':>5} | {'VAD acc':>8}{'bal.acc':>8} | {'row SNR R2':>11}{'RMSE dB':>9}"
        f" | {'utt SNR R2':>11}{'RMSE dB':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        dim, r = r["dim"], r["mean"]
        print(
            f"{name:<22}{dim:>5} | {r['vad']['accuracy']:>8.3f}{r['vad']['balanced_accuracy']:>8.3f} | "
            f"{r['row_snr']['r2']:>11.3f}{r['row_snr']['rmse_db']:>9.2f} | "
            f"{r['utt_snr']['r2']:>11.3f}{r['utt_snr']['rmse_db']:>9.2f}"
        )
    first = next(iter(results.values()))["mean"]
    print(
        f"{'(reference)':<22}{'':>5} | {first['vad']['chance']:>8.3f}{0.5:>8.3f} | {0.0:>11.3f}"
        f"{first['row_snr']['target_std_db']:>9.2f} | {0.0:>11.3f}{first['utt_snr']['target_std_db']:>9.2f}"
        "   (majority class; predict-the-mean)"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    pairs = build_mixtures(Path(args.corpus), args.num_mixtures, args.seconds, args.seed, args.split)
    clean = torch.from_numpy(np.stack([p["clean"] for p in pairs]))
    noisy = torch.from_numpy(np.stack([p["noisy"] for p in pairs]))
    utt_snr = torch.tensor([p["snr_db"] for p in pairs], dtype=torch.float32)
    even = torch.tensor([p["file_index"] % 2 == 0 for p in pairs])

    pretrained = BEATsModel.from_pretrained(args.conditioner).eval()
    torch.manual_seed(args.random_seed)
    random_model = BEATsModel(BEATsConfig.from_pretrained(args.conditioner)).eval()

    feature_sets = {}
    with torch.inference_mode():
        feature_sets["BEATs pre-trained"] = probe_features(pretrained, noisy)
        if args.compare:
            feature_sets["BEATs --compare"] = probe_features(BEATsModel.from_pretrained(args.compare).eval(), noisy)
        feature_sets["BEATs random weights"] = probe_features(random_model, noisy)
        fbank_rows = fbank_row_features(pretrained, noisy)
        feature_sets["log-mel 128 (row mean)"] = fbank_rows
        feature_sets["log-mel energy (1)"] = fbank_rows.mean(dim=-1, keepdim=True)
        tokenizer = BEATsTokenizer.from_pretrained(args.tokenizer).eval() if args.tokenizer else None
        references = token_references(torch.cat([noisy, clean]), pretrained, tokenizer)

    rows = feature_sets["BEATs pre-trained"].shape[1]
    # Every row lies inside the (unpadded) mixture: probe_features' rows end at 2560 t + 2800 <= samples.
    assert ROW_HOP * (rows - 1) + ROW_SPAN <= noisy.shape[1]
    speech, snr = row_targets(clean, noisy, rows, args.vad_threshold_db)

    results = {}
    for name, feats in feature_sets.items():
        assert feats.shape[1] == rows, (name, feats.shape)
        folds = [run_probes(feats.float(), speech, snr, utt_snr, half, args.ridge) for half in (even, ~even)]
        results[name] = {"dim": int(feats.shape[-1]), "mean": mean_of_folds(folds), "folds": folds}

    counts = {
        "clips": len(pairs),
        "rows_per_clip": rows,
        "half_clips": [int(even.sum()), int((~even).sum())],
        "speech_rows": int(speech.sum()),
        "nonspeech_fraction": float(1 - speech.float().mean()),
    }
    print_table(results, counts)

    history = read_history(Path(args.history))
    if history:
        print(
            f"\nmasked-token accuracy on valid mixtures during pre-training (75% masked, "
            f"{references['codebook_size']} tokens of the {references['tokenizer']}):"
        )
        for h in history:
            print(f"  step {h['step']:>5}: accuracy {h['masked_accuracy']:.3f}, loss {h['masked_loss']:.3f}")
    print(
        f"  references on these mixtures: chance {references['chance']:.4f}, always the most frequent token "
        f"{references['most_frequent_token']:.3f} ({references['tokens_used']} of {references['codebook_size']} "
        "tokens used)"
    )

    noise_kinds: dict[str, int] = {}
    for p in pairs:
        kind = p["name"].split("_")[-2]
        noise_kinds[kind] = noise_kinds.get(kind, 0) + 1
    report = {
        "benchmark": "beats_linear_probe",
        "conditioner": args.conditioner,
        "compare": args.compare,
        "data": {
            "source": f"corpus {args.split} split only (speech/{args.split}, noise/{args.split}, synthetic "
            "white/pink/babble)",
            "mixtures": len(pairs),
            "seconds": args.seconds,
            "snr_db": [-5.0, 20.0],
            "seed": args.seed,
            "level_dbfs": -25.0,
            "noise_kinds": noise_kinds,
            "split": "by speech file (even / odd file index); fold 0 trains on even, fold 1 on odd",
            "row": "16 fbank frames = 160 ms hop, 175 ms span; features averaged over the 8 frequency patches",
            "vad_target": f"clean row energy > {args.vad_threshold_db} dB relative to the clip's loudest row",
            "row_snr_target": f"local SNR of speech rows, clipped to {list(SNR_CLIP_DB)} dB",
            "utt_snr_target": "mixing SNR of the clip (dB), features mean-pooled over rows",
            **counts,
        },
        "probe": {"method": "closed-form ridge on standardised features (fit_linear_probe)", "ridge": args.ridge},
        "random_weights_seed": args.random_seed,
        "results": results,
        "masked_token_accuracy": {
            "history": history,
            "history_file": args.history,
            "tokenizer_path": args.tokenizer,
            **references,
        },
        "seconds": time.perf_counter() - start,
    }
    out = write_json(args.out, report)
    print(f"\nwrote {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
