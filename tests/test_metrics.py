"""Tests of fuse_hf.metrics and fuse_hf.evaluate (with `fuse-hf evaluate`), corpus-free, < 60 s on 2 cores. The
baselines of `benchmarks.peers` are tested in test_benchmarks.py."""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

from fuse_hf import metrics as M
from fuse_hf.commands import main as fuse_hf_main
from fuse_hf.commands.evaluate import add_parser
from fuse_hf.evaluate import evaluate_folders, find_pairs

SR = 16000


def voiced(seconds: float = 3.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a gliding harmonic source (f0 100-160 Hz, 1/k spectrum) with two
    moving formant peaks, gated into ~4 "syllables" per second. float32, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formant1 = 500 + 200 * np.sin(2 * np.pi * 1.3 * t)
    formant2 = 1500 + 500 * np.sin(2 * np.pi * 0.9 * t + 1.0)
    x = np.zeros_like(t)
    for k in range(1, 40):
        fk = k * f0
        gain = np.exp(-(((fk - formant1) / 150) ** 2)) + 0.5 * np.exp(-(((fk - formant2) / 250) ** 2)) + 0.05
        x += gain / k * np.sin(k * phase)
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 0.7  # syllables with pauses
    x = x * envelope
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def add_noise(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    noise *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (clean + noise).astype(np.float32)


# ---------------------------------------------------------------------------------------- SI-SDR
def test_si_sdr_scaled_copy_is_very_high():
    x = voiced(1.0)
    assert M.si_sdr(x, 0.3 * x) > 80.0
    assert M.si_sdr(x, -2.0 * x + 0.01) > 80.0  # scale- and offset-invariant (means removed)


def test_si_sdr_known_snr():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(16000)
    ref -= ref.mean()
    noise = rng.standard_normal(16000)
    noise -= noise.mean()
    noise -= np.dot(noise, ref) / np.dot(ref, ref) * ref  # orthogonal: SI-SDR is then exactly the SNR
    for snr in (-5.0, 0.0, 7.5, 20.0):
        scaled = noise * np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 10 ** (snr / 10))
        assert abs(M.si_sdr(ref, ref + scaled) - snr) < 0.1


def test_inputs_are_checked_and_cropped():
    x = voiced(1.0)
    assert M.si_sdr(x, np.concatenate([x, np.zeros(500, np.float32)])) > 80.0  # cropped to the shorter
    bad = x.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.si_sdr(x, bad)
    with pytest.raises(ValueError, match="sample rate"):
        M.compute_metrics(x, x, SR, metrics=("si_sdr",), enhanced_sr=48000)
    with pytest.raises(ValueError, match="1-D"):
        M.si_sdr(np.zeros((2, 100)), np.zeros((2, 100)))
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute_metrics(x, x, SR, metrics=("mos",))


def test_waveform_checks_name_the_signal():
    x = voiced(0.5)
    with pytest.raises(
        ValueError, match=r"estimate \(enhanced\): expected a 1-D waveform \(samples,\), got shape \(2,"
    ):
        M.si_sdr(x, np.stack([x, x]))
    with pytest.raises(ValueError, match=r"reference \(clean\): expected float samples"):
        M.si_sdr((x * 32767).astype(np.int16), x)  # integer PCM would be scored on the wrong scale
    with pytest.raises(ValueError, match=r"reference \(clean\): holds no samples"):
        M.si_sdr(np.zeros(0, np.float32), x)
    assert M.si_sdr(x[None], x) > 80.0  # (1, samples) is one channel


def test_sample_rates_are_checked_like_everywhere_else():
    pytest.importorskip("pystoi", reason="pystoi not installed (pip install fuse-hf[metrics])")
    x = voiced(2.0)
    noisy = add_noise(x, 5.0)
    # An integral float rate is a rate (fuse_hf.audio.check_sampling_rate): the same score as the int.
    assert M.estoi(x, noisy, 16000.0) == M.estoi(x, noisy, SR)
    assert M.compute_metrics(x, noisy, 16000.0, metrics=("estoi",), enhanced_sr=np.int64(16000)) == M.compute_metrics(
        x, noisy, SR, metrics=("estoi",)
    )
    for rate in (16000.5, 0, None, "16000"):
        with pytest.raises(ValueError, match="sr "):
            M.estoi(x, noisy, rate)
    with pytest.raises(ValueError, match="enhanced_sr must be a positive integer"):
        M.compute_metrics(x, x, SR, metrics=("si_sdr",), enhanced_sr=-1)


def test_nanmean_is_the_mean_of_the_finite_values():
    assert M.nanmean([1.0, math.nan, 2.0, None, 6.0]) == 3.0
    assert M.nanmean([2.0, math.inf, -math.inf, 4.0]) == 3.0
    assert math.isnan(M.nanmean([math.nan, None])) and math.isnan(M.nanmean([]))
    values = [0.1, 0.2, 0.3, math.nan, 0.4]
    assert M.nanmean(values) == float(np.mean([0.1, 0.2, 0.3, 0.4]))  # numpy's sum, bit for bit
    assert M.nanmean(iter([5.0])) == 5.0


# ---------------------------------------------------------------------------------- PESQ, ESTOI
def test_pesq_identical_and_noisy():
    pytest.importorskip("pesq", reason="pesq not installed (pip install fuse-hf[metrics])")
    x = voiced(3.0)
    assert M.pesq_wb(x, x) == pytest.approx(4.64, abs=0.01)
    noisy_score = M.pesq_wb(x, add_noise(x, 5.0))
    assert 1.0 <= noisy_score < 3.0
    # 48 kHz input is resampled to 16 kHz internally.
    import soxr

    x48 = soxr.resample(x, SR, 48000).astype(np.float32)
    assert M.pesq_wb(x48, x48, sr=48000) == pytest.approx(4.64, abs=0.01)


def test_pesq_too_short_is_nan_with_warning():
    pytest.importorskip("pesq", reason="pesq not installed")
    x = voiced(0.1)
    with pytest.warns(RuntimeWarning, match="pesq_wb"):
        assert np.isnan(M.pesq_wb(x, x))


def test_estoi_identical_and_noisy():
    pytest.importorskip("pystoi", reason="pystoi not installed (pip install fuse-hf[metrics])")
    x = voiced(3.0)
    assert M.estoi(x, x, SR) == pytest.approx(1.0, abs=1e-3)
    assert M.estoi(x, add_noise(x, 0.0), SR) < 0.9


# ------------------------------------------------------------------------------------- DNSMOS
def test_dnsmos_three_scores_in_range():
    pytest.importorskip("speechmos", reason="speechmos not installed (pip install fuse-hf[metrics])")
    scores = M.dnsmos(voiced(2.0), SR)
    assert set(scores) == {"SIG", "BAK", "OVRL"}
    for value in scores.values():
        assert isinstance(value, float) and 1.0 <= value <= 5.0
    # Overshooting input is scaled, not rejected (speechmos itself refuses |x| > 1).
    loud = M.dnsmos(4.0 * voiced(2.0), SR)
    assert all(1.0 <= v <= 5.0 for v in loud.values())


def test_compute_metrics_keys():
    x = voiced(2.0)
    scores = M.compute_metrics(x, add_noise(x, 10.0), SR)
    assert set(scores) == {"pesq", "estoi", "si_sdr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    assert all(isinstance(v, float) for v in scores.values())
    assert abs(scores["si_sdr"] - 10.0) < 0.3


def test_missing_package_warns_once_and_keeps_the_rest(monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # `import pesq` now raises ImportError
    monkeypatch.setattr(M, "_WARNED_MISSING", set())
    x = voiced(1.5)
    with pytest.warns(UserWarning, match=r"'pesq' skipped.*pesq.*pip install fuse-hf\[metrics\]"):
        scores = M.compute_metrics(x, x, SR, metrics=("pesq", "estoi", "si_sdr"))
    assert "pesq" not in scores and {"estoi", "si_sdr"} <= set(scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must not warn again
        M.compute_metrics(x, x, SR, metrics=("pesq", "si_sdr"))


# ----------------------------------------------------------------------------------- evaluate
def main(argv):
    """`fuse-hf evaluate ARGV`."""
    return fuse_hf_main(["evaluate", *argv])


def _write(path, audio, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr)


@pytest.fixture
def folders(tmp_path):
    clean_a, clean_b = voiced(2.0, seed=1), voiced(2.0, seed=2)
    _write(tmp_path / "clean/sub/a.wav", clean_a)
    _write(tmp_path / "clean/b.wav", clean_b)
    _write(tmp_path / "clean/only_clean.wav", clean_b)
    _write(tmp_path / "noisy/sub/a.wav", add_noise(clean_a, 0.0))
    _write(tmp_path / "noisy/b.wav", add_noise(clean_b, 0.0))
    _write(tmp_path / "enhanced/sub/a.flac", add_noise(clean_a, 15.0))  # other extension, same path
    _write(tmp_path / "enhanced/flat/b.wav", add_noise(clean_b, 15.0))  # other folder, unique name
    return tmp_path


def test_find_pairs(folders):
    pairs, unpaired = find_pairs(folders / "clean", folders / "enhanced", folders / "noisy")
    assert [p["name"] for p in pairs] == ["b", "sub/a"]
    assert pairs[0]["enhanced"].name == "b.wav" and pairs[1]["enhanced"].suffix == ".flac"
    assert unpaired["clean"] == ["only_clean"] and unpaired["enhanced"] == []


def test_evaluate_cli_end_to_end(folders, capsys):
    out = folders / "results"
    argv = [
        "--clean",
        str(folders / "clean"),
        "--enhanced",
        str(folders / "enhanced"),
        "--noisy",
        str(folders / "noisy"),
        "--out",
        str(out / "r.json"),
        "--csv",
        str(out / "r.csv"),
        "--plot",
        str(out / "box.png"),
        "--no-progress",
    ]
    with pytest.warns(UserWarning, match="only_clean"):
        assert main(argv) == 0
    report = json.loads((out / "r.json").read_text())
    assert report["num_files"] == 2
    assert report["mean"]["delta_si_sdr"] == pytest.approx(15.0, abs=0.5)
    assert report["mean"]["delta_pesq"] > 0
    assert (out / "r.csv").read_text().splitlines()[0].startswith("file,pesq,estoi,si_sdr,dnsmos_sig")
    assert len((out / "r.csv").read_text().splitlines()) == 3
    assert (out / "box.png").read_bytes()[:4] == b"\x89PNG"
    assert "mean (2 files)" in capsys.readouterr().out


def test_evaluate_no_pairs_is_a_clear_error(tmp_path, capsys):
    _write(tmp_path / "clean/a.wav", voiced(1.0))
    _write(tmp_path / "enhanced/z.wav", voiced(1.0))
    assert main(["--clean", str(tmp_path / "clean"), "--enhanced", str(tmp_path / "enhanced"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no file pairs" in err and len(err.strip().splitlines()) == 1
    assert main(["--clean", str(tmp_path / "nope"), "--enhanced", str(tmp_path / "enhanced")]) == 1


def test_evaluate_api_without_noisy(folders):
    with pytest.warns(UserWarning):
        report = evaluate_folders(folders / "clean", folders / "enhanced", metrics=("si_sdr",), progress=False)
    assert report["metrics"] == ["si_sdr"] and report["num_files"] == 2


def test_add_parser_registers_subcommand():
    import argparse

    parser = argparse.ArgumentParser(prog="fuse-hf")
    sub = add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--clean", "c", "--enhanced", "e"])
    assert args.func.__name__ == "run" and args.noisy is None
    assert all(option in sub.format_help() for option in ("--noisy", "--out", "--csv", "--plot", "--metrics"))
