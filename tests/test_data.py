"""Tests of the fuse_hf.data package: paired folders, on-the-fly mixing, Hugging Face datasets, augmentations,
bad data.

All audio is generated in tmp_path (tones and noise), a second or less per file, so the file runs in seconds.
"""

import argparse
import io
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from fuse_hf import data as D

SR = 16000
SEG = 4000  # 0.25 s crops


def _write(path, audio, sr=SR, subtype="FLOAT"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr, subtype=subtype)
    return path


def _tone(seconds, freq=220.0, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _wav_bytes(audio, sr=SR):
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _snr_db(clean, noisy):
    clean, noise = clean.double(), (noisy - clean).double()
    return 10 * math.log10(float((clean**2).sum() / (noise**2).sum()))


def _epoch(dataset, batch_size=2, num_workers=0, seed_epoch=None):
    if seed_epoch is not None:
        dataset.set_epoch(seed_epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=D.collate, num_workers=num_workers)
    return list(loader)


@pytest.fixture
def paired_root(tmp_path):
    """root/{clean,noisy}/ with 4 pairs; noisy = 2 * clean + 0.1, so alignment can be checked sample by sample."""
    root = tmp_path / "vb"
    for k in range(4):
        clean = _tone(0.6 + 0.1 * k, 150 + 50 * k, seed=k)
        _write(root / "clean" / f"p{k}.wav", clean)
        _write(root / "noisy" / f"p{k}.wav", 2 * clean + 0.1)
    return root


@pytest.fixture
def speech_noise(tmp_path):
    speech = [_write(tmp_path / "speech" / f"s{k}.wav", _tone(0.5 + 0.2 * k, 120 + 40 * k, seed=k)) for k in range(5)]
    rng = np.random.default_rng(7)
    noise = [
        _write(tmp_path / "noise" / f"n{k}.wav", (0.1 * rng.standard_normal(SR // 2)).astype(np.float32))
        for k in range(3)
    ]
    return tmp_path / "speech", tmp_path / "noise", speech, noise


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def test_manifest_rows_and_wideband_weights(tmp_path):
    rows = [("speech/train/a.wav", -15.0), ("speech/train/b.wav", -45.0), ("speech/valid/c.wav", "")]
    lines = ["path,source_package,license,seconds,split,rms_dbfs,hf4k_db,origin"]
    lines += [f"{p},pkg,GPL,0.1,train,-20,{hf},x" for p, hf in rows]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")

    manifest = D.read_manifest(tmp_path / "manifest.csv")
    assert sorted(manifest) == [str(tmp_path / p) for p, _ in rows]  # absolute paths, relative to the manifest
    assert manifest[str(tmp_path / "speech/train/b.wav")]["hf4k_db"] == "-45.0"
    files = [tmp_path / p for p, _ in rows] + [tmp_path / "speech/train/unlisted.wav"]
    weights = D.wideband_weights(files, tmp_path / "manifest.csv", factor=4.0, min_hf4k_db=-30.0)
    # a.wav is wideband (x4); b.wav is band-limited, c.wav has no hf4k_db and unlisted.wav no row (x1 each).
    np.testing.assert_allclose(weights, np.array([4.0, 1.0, 1.0, 1.0]) / 7.0)
    assert D.find_manifest(tmp_path / "speech" / "train") == tmp_path / "manifest.csv"
    assert D.find_manifest(tmp_path / "speech" / "train", max_up=1) is None
    (tmp_path / "bad.csv").write_text("file,split\nx.wav,train\n")
    with pytest.raises(ValueError, match="no `path` column"):
        D.read_manifest(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="file not found"):
        D.read_manifest(tmp_path / "missing.csv")


def test_package_face_reexports_the_audio_layer():
    from fuse_hf import audio

    # The same objects, not copies: one home for listing, extensions, warnings and the peak limiter.
    assert D.list_audio_files is audio.list_audio_files and D.AUDIO_EXTENSIONS is audio.AUDIO_EXTENSIONS
    assert D.avoid_clipping is audio.avoid_clipping and D.AudioDataWarning is audio.AudioDataWarning
    assert set(D.__all__) <= set(dir(D))


def test_decode_audio_is_the_training_loader_and_reports_bad_data(tmp_path):
    stereo = np.stack([_tone(0.5, sr=22050, seed=1), _tone(0.5, 300.0, sr=22050, seed=2)], axis=1)
    path = _write(tmp_path / "st.wav", stereo, sr=22050)
    decoded = D.decode_audio(path)
    assert decoded.dtype == np.float32 and decoded.shape == (SR // 2,)
    from fuse_hf.audio import load_mono

    np.testing.assert_array_equal(decoded, load_mono(path, SR))  # float32 read, mean and resampling
    np.testing.assert_array_equal(D.decode_audio(path.read_bytes()), decoded)
    np.testing.assert_array_equal(D.decode_audio_value({"bytes": path.read_bytes(), "path": None}), decoded)
    array = {"array": stereo.T, "sampling_rate": 22050}  # datasets' (channels, samples) layout
    np.testing.assert_allclose(D.decode_audio_value(array), decoded, atol=1e-6)
    with pytest.raises(D.BadAudioError, match="<bytes>: cannot be read as audio"):
        D.decode_audio(b"RIFF garbage")
    with pytest.raises(D.BadAudioError, match="an `array` but no `sampling_rate`"):
        D.decode_audio_value({"array": stereo.T})
    nan = _write(tmp_path / "nan.wav", np.array([0.1, np.nan] * 50, np.float32))
    with pytest.raises(D.BadAudioError, match="nan.wav: contains NaN"):
        D.load_segment(nan, SEG, np.random.default_rng(0))
    with pytest.raises(D.BadAudioError, match=r"st.wav: too short \(8000 samples < 9000\)"):
        D.load_segment(path, SEG, np.random.default_rng(0), min_samples=9000)


def test_load_segment_reads_a_crop_or_pads_at_a_random_place(tmp_path):
    clip = _tone(0.5, seed=3)
    path = _write(tmp_path / "a.wav", clip)
    segment, region = D.load_segment(path, SEG, np.random.default_rng(0))
    start = D.random_crop_offset(len(clip), SEG, np.random.default_rng(0))
    np.testing.assert_array_equal(segment, clip[start : start + SEG])  # only the crop is read, the same samples
    assert region == slice(0, SEG)
    padded, region = D.load_segment(path, SR, np.random.default_rng(1))
    assert padded.shape == (SR,) and region.stop - region.start == len(clip)
    np.testing.assert_array_equal(padded[region], clip)
    assert not padded[: region.start].any() and not padded[region.stop :].any()


# ---------------------------------------------------------------------------------------------------------------
# Paired folders
# ---------------------------------------------------------------------------------------------------------------


def test_paired_batches_shape_and_determinism(paired_root):
    ds = D.PairedFolderDataset(paired_root, SEG, seed=0)
    assert len(ds) == 4
    first = _epoch(ds)
    assert first[0]["clean"].shape == (2, SEG) and first[0]["noisy"].dtype == torch.float32
    again = _epoch(D.PairedFolderDataset(paired_root, SEG, seed=0))
    assert all(torch.equal(a["noisy"], b["noisy"]) for a, b in zip(first, again))
    other_seed = _epoch(D.PairedFolderDataset(paired_root, SEG, seed=1))
    other_epoch = _epoch(ds, seed_epoch=1)
    assert not torch.equal(first[0]["clean"], other_seed[0]["clean"])
    assert not torch.equal(first[0]["clean"], other_epoch[0]["clean"])


def test_paired_crop_alignment_and_padding(paired_root):
    ds = D.PairedFolderDataset(paired_root, SEG, seed=3)
    for i in range(len(ds)):
        item = ds[i]
        torch.testing.assert_close(item["noisy"], 2 * item["clean"] + 0.1, atol=1e-6, rtol=0)
    # Longer than every clip: zero-padded at the same position in both.
    long = D.PairedFolderDataset(paired_root, SR, seed=3)[0]
    inside = long["clean"] != 0
    assert 0 < int(inside.sum()) < SR
    assert torch.all(long["noisy"][~inside] == 0)
    torch.testing.assert_close(long["noisy"][inside], 2 * long["clean"][inside] + 0.1, atol=1e-6, rtol=0)


def test_paired_split_layout_resampling_and_stereo(tmp_path):
    base = tmp_path / "base"
    clean = _tone(0.5, sr=8000)
    _write(base / "train" / "clean" / "a.wav", np.stack([clean, clean], axis=1), sr=8000)  # stereo, 8 kHz
    _write(base / "train" / "noisy" / "a.flac", (0.5 * clean), sr=8000, subtype="PCM_24")
    ds = D.PairedFolderDataset(base, None, split="train")
    item = ds[0]
    assert item["clean"].shape == (SR // 2,)  # 0.5 s resampled to 16 kHz
    torch.testing.assert_close(item["noisy"], 0.5 * item["clean"], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="no `clean/` sub-folder"):
        D.PairedFolderDataset(base, SEG)  # split not given


def test_paired_missing_folder_and_unpaired_names(tmp_path, paired_root):
    with pytest.raises(ValueError, match="folder not found"):
        D.PairedFolderDataset(tmp_path / "nope", SEG)
    with pytest.raises(ValueError, match="Split `valid`"):
        D.PairedFolderDataset(paired_root, SEG, split="valid")
    (paired_root / "noisy" / "p3.wav").unlink()
    _write(paired_root / "noisy" / "extra.wav", _tone(0.2))
    with pytest.raises(ValueError, match=r"without a noisy partner \(e\.g\. \['p3'\]\).*\['extra'\]"):
        D.PairedFolderDataset(paired_root, SEG)


def test_paired_bad_files_are_skipped_never_crash(paired_root):
    (paired_root / "clean" / "readme.txt").write_text("x")
    (paired_root / "clean" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    (paired_root / "noisy" / "broken.wav").write_bytes(b"not a wav at all")
    _write(paired_root / "clean" / "tiny.wav", np.zeros(20, np.float32))  # 1.25 ms
    _write(paired_root / "noisy" / "tiny.wav", np.zeros(20, np.float32))
    with pytest.warns(D.AudioDataWarning, match="readme.txt"):
        ds = D.PairedFolderDataset(paired_root, SEG, seed=0)
    assert len(ds) == 6
    with pytest.warns(D.AudioDataWarning) as record:
        batches = _epoch(ds, batch_size=3)
    messages = " ".join(str(w.message) for w in record)
    assert "broken.wav" in messages and "too short" in messages
    assert [b["clean"].shape for b in batches] == [(3, SEG), (3, SEG)]
    for b in batches:  # substitutes are real pairs
        torch.testing.assert_close(b["noisy"], 2 * b["clean"] + 0.1, atol=1e-6, rtol=0)
    # Same items when the bad files are found inside DataLoader worker processes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.AudioDataWarning)
        in_workers = _epoch(D.PairedFolderDataset(paired_root, SEG, seed=0), batch_size=3, num_workers=2)
    assert all(torch.equal(a["clean"], b["clean"]) for a, b in zip(batches, in_workers))


# ---------------------------------------------------------------------------------------------------------------
# Mixing
# ---------------------------------------------------------------------------------------------------------------


def test_mixing_batches_shape_and_determinism(speech_noise):
    speech_dir, noise_dir, _, _ = speech_noise
    ds = D.MixingDataset(speech_dir, noise_dir, SEG, seed=0, length=6)
    first = _epoch(ds, batch_size=3)
    assert [b["noisy"].shape for b in first] == [(3, SEG), (3, SEG)]
    assert all(float(b["noisy"].abs().max()) <= 0.99 and float(b["clean"].abs().max()) <= 0.99 for b in first)
    again = _epoch(D.MixingDataset(speech_dir, noise_dir, SEG, seed=0, length=6), batch_size=3)
    assert all(
        torch.equal(a["noisy"], b["noisy"]) and torch.equal(a["clean"], b["clean"]) for a, b in zip(first, again)
    )
    other_seed = _epoch(D.MixingDataset(speech_dir, noise_dir, SEG, seed=1, length=6), batch_size=3)
    assert not torch.equal(first[0]["noisy"], other_seed[0]["noisy"])
    other_epoch = _epoch(ds, batch_size=3, seed_epoch=1)
    assert not torch.equal(first[0]["noisy"], other_epoch[0]["noisy"])
    assert torch.equal(_epoch(ds, batch_size=3, seed_epoch=0)[1]["noisy"], first[1]["noisy"])


def test_mixing_snr_matches_request_without_augmentation(speech_noise):
    speech_dir, noise_dir, _, _ = speech_noise
    ds = D.MixingDataset(speech_dir, noise_dir, SEG, snr_db=(-5, 20), augment=False, seed=0, length=12)
    for i in range(len(ds)):
        out = ds.mix(ds.rng(i))
        snr = _snr_db(torch.from_numpy(out["clean"]), torch.from_numpy(out["noisy"]))
        assert abs(snr - out["snr_db"]) < 0.1
        assert -5 <= out["snr_db"] <= 20
    fixed = D.MixingDataset(speech_dir, noise_dir, SEG, snr_db=(7.5, 7.5), augment=False, length=3)
    for i in range(3):
        item = fixed[i]
        assert abs(_snr_db(item["clean"], item["noisy"]) - 7.5) < 0.1


def test_mixing_full_augmentation_never_clips_and_weights_files(tmp_path, speech_noise):
    speech_dir, noise_dir, speech, _ = speech_noise
    loud = _write(tmp_path / "speech" / "loud.wav", np.clip(3 * _tone(0.6), -1, 1))
    config = D.AugmentConfig(
        synthetic_noise_prob=0.5,
        second_noise_prob=0.5,
        reverb_prob=0.5,
        eq_prob=0.5,
        lowpass_prob=0.5,
        level_dbfs=(-3.0, 0.0),
    )  # very loud: forces the clip guard
    weights = np.zeros(6)
    weights[0] = 1.0  # only loud.wav (first in sorted order)
    ds = D.MixingDataset(speech_dir, noise_dir, SEG, augment=config, speech_weights=weights, length=16)
    assert ds.speech_files[0] == loud
    kinds = set()
    for i in range(len(ds)):
        out = ds.mix(ds.rng(i))
        kinds.add(out["noise_kind"].split("+")[0])
        assert out["speech"] == loud
        assert np.max(np.abs(out["noisy"])) <= 0.99 + 1e-6 and np.max(np.abs(out["clean"])) <= 0.99 + 1e-6
        assert np.all(np.isfinite(out["noisy"])) and out["clean"].dtype == np.float32
    assert "recorded" in kinds and len(kinds) >= 3


def _band_energy_db(x, low_hz, sr=SR):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    return 10 * np.log10(spectrum[freqs >= low_hz].sum() / spectrum.sum() + 1e-20)


def test_clean_items_give_the_target_back_unchanged(speech_noise):
    speech_dir, noise_dir, _, _ = speech_noise
    ds = D.MixingDataset(speech_dir, noise_dir, SEG, augment=D.AugmentConfig(clean_prob=0.5), seed=0, length=40)
    outs = [ds.mix(ds.rng(i)) for i in range(len(ds))]
    clean = [o for o in outs if o["noise_kind"] == "none"]
    assert 8 <= len(clean) <= 32  # about half
    assert all(np.array_equal(o["noisy"], o["clean"]) and o["snr_db"] == float("inf") for o in clean)
    assert all(not np.array_equal(o["noisy"], o["clean"]) for o in outs if o["noise_kind"] != "none")
    with pytest.raises(ValueError, match="clean_prob"):
        D.AugmentConfig(clean_prob=1.5)


def test_clean_prob_zero_keeps_the_random_stream(speech_noise):
    speech_dir, noise_dir, _, _ = speech_noise
    default = D.MixingDataset(speech_dir, noise_dir, SEG, seed=3, length=4)
    explicit = D.MixingDataset(speech_dir, noise_dir, SEG, seed=3, length=4, augment=D.AugmentConfig(clean_prob=0.0))
    assert all(torch.equal(default[i]["noisy"], explicit[i]["noisy"]) for i in range(4))


def test_noisy_input_is_band_limited_at_the_targets_cutoff(tmp_path):
    rng = np.random.default_rng(0)
    speech = _write(tmp_path / "corpus" / "speech" / "a.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32))
    noise = _write(tmp_path / "corpus" / "noise" / "n.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32))
    (tmp_path / "corpus" / "manifest.csv").write_text("path,cutoff_hz,hf4k_db\nspeech/a.wav,4000,-20\n")
    manifest = tmp_path / "corpus" / "manifest.csv"
    assert D.manifest_cutoffs([speech, noise], manifest) == [4000.0, None]
    config = D.AugmentConfig.none(snr_db=(0.0, 0.0), band_limit_to_target=True)
    limited = D.MixingDataset(speech.parent, noise.parent, SEG, augment=config, manifest=manifest, length=1)
    plain = D.MixingDataset(
        speech.parent, noise.parent, SEG, augment=False, snr_db=(0.0, 0.0), manifest=manifest, length=1
    )
    out, ref = limited.mix(limited.rng(0)), plain.mix(plain.rng(0))
    # The target is the same speech (the level is set on the band-limited input, so only its gain differs).
    gain = float(out["clean"] @ ref["clean"] / (ref["clean"] @ ref["clean"]))
    np.testing.assert_allclose(out["clean"], gain * ref["clean"], atol=1e-6)
    assert _band_energy_db(ref["noisy"], 4500) > -10  # white noise input: wideband
    assert _band_energy_db(out["noisy"], 5000) < -30  # nothing left above the target's 4 kHz cutoff


def test_mixing_bad_speech_is_skipped_and_synthetic_only(tmp_path, speech_noise):
    speech_dir, _, _, _ = speech_noise
    (speech_dir / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt junk junk")
    _write(speech_dir / "short.wav", np.zeros(8, np.float32))
    ds = D.MixingDataset(speech_dir, None, SEG, length=24, speech_weights=[10, 1, 1, 1, 1, 1, 1])  # favour corrupt.wav
    with pytest.warns(D.AudioDataWarning) as record:
        batches = _epoch(ds, batch_size=8)
    messages = " ".join(str(w.message) for w in record)
    assert "corrupt.wav" in messages and "short.wav: too short" in messages
    assert [b["noisy"].shape for b in batches] == [(8, SEG)] * 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no speech audio files"):
        D.MixingDataset(tmp_path / "empty", None, SEG)


def test_make_validation_pairs_is_fixed(speech_noise):
    _, _, speech, noise = speech_noise
    a = D.make_validation_pairs(speech, noise, n=7, segment_samples=SEG, seed=5)
    b = D.make_validation_pairs(speech, noise, n=7, segment_samples=SEG, seed=5)
    assert len(a) == 7 and [p["name"] for p in a] == [p["name"] for p in b]
    assert all(np.array_equal(p["noisy"], q["noisy"]) for p, q in zip(a, b))
    assert a[0]["clean"].shape == (SEG,) and a[0]["noisy"].dtype == np.float32
    assert all(-5 <= p["snr_db"] <= 15 for p in a)
    assert a[0]["name"].startswith("val000_s0_")
    for p in a:
        if p["name"].split("_")[2] == "recorded":  # plain mixing: the SNR is exact
            assert abs(_snr_db(torch.from_numpy(p["clean"]), torch.from_numpy(p["noisy"])) - p["snr_db"]) < 0.1


# ---------------------------------------------------------------------------------------------------------------
# Augmentations
# ---------------------------------------------------------------------------------------------------------------


def _band_power(x, lo, hi, sr=SR):
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    return spectrum[(freqs >= lo) & (freqs < hi)].sum()


def test_augmentation_functions():
    rng = np.random.default_rng(0)
    n = SR
    speech, noise = _tone(1.0), D.white_noise(n, rng)
    mixture, scaled = D.mix_at_snr(speech, noise, 3.0)
    assert abs(10 * math.log10(D.power(speech) / D.power(scaled)) - 3.0) < 1e-6
    np.testing.assert_allclose(mixture, speech + scaled)
    # Pink: -3 dB/octave, so equal power per octave; brown falls faster.
    pink, brown = D.pink_noise(4 * n, rng), D.brown_noise(4 * n, rng)
    ratio_pink = _band_power(pink, 500, 1000) / _band_power(pink, 2000, 4000)
    assert 0.7 < ratio_pink < 1.4 and _band_power(brown, 500, 1000) / _band_power(brown, 2000, 4000) > 3
    hum = D.mains_hum(n, rng, fundamental_hz=50.0)
    assert abs(np.fft.rfftfreq(n, 1 / SR)[np.argmax(np.abs(np.fft.rfft(hum)))] - 50) < 2
    low = D.apply_lowpass(noise, 3400.0)
    assert _band_power(low, 4500, 8000) < 1e-3 * _band_power(noise, 4500, 8000)
    assert abs(_band_power(low, 100, 2500) / _band_power(noise, 100, 2500) - 1) < 0.1  # passband kept
    # High-pass at 20 Hz: an offset and white noise's own content below 10 Hz go, the speech band stays.
    long_noise = D.white_noise(4 * n, rng)
    high, middle = D.apply_highpass(long_noise + 0.5, 20.0)[n : 3 * n], long_noise[n : 3 * n]
    hann = np.hanning(2 * n)  # against leakage from above 20 Hz into the 1 Hz bins
    assert abs(high.mean()) < 1e-3 and _band_power(high * hann, 1, 10) < 1e-5 * _band_power(middle * hann, 1, 10)
    assert abs(_band_power(high, 60, 8000) / _band_power(middle, 60, 8000) - 1) < 1e-3
    rir = D.synth_rir(0.5, rng, drr_db=0.0)
    assert rir[0] == 1.0 and abs(np.sum(rir[1:] ** 2) - 1.0) < 1e-4
    assert np.sum(rir[int(0.25 * SR) :] ** 2) < 0.1 * np.sum(rir[1 : int(0.25 * SR)] ** 2)
    wet, early = D.apply_rir(speech, rir)
    assert wet.shape == early.shape == speech.shape


def _band_gain_db(x, y, centre_hz, octaves):
    """Gain of `y` over `x` in dB, in the band `octaves` wide centred (geometrically) on `centre_hz`."""
    lo, hi = centre_hz * 2 ** (-octaves / 2), centre_hz * 2 ** (octaves / 2)
    return 10 * math.log10(_band_power(y, lo, hi) / _band_power(x, lo, hi))


def _eq_draws(seed, max_gain_db=8.0):
    """The parameters random_eq draws for one bell, in its order: tilt (dB/octave), centre (Hz), width (octaves),
    gain (dB)."""
    draws = np.random.default_rng(seed)
    slope = draws.uniform(-max_gain_db, max_gain_db) / 4
    centre_hz = math.exp(draws.uniform(math.log(100.0), math.log(0.4 * SR)))
    return slope, centre_hz, draws.uniform(0.3, 1.5), draws.uniform(-max_gain_db, max_gain_db)


@pytest.fixture(scope="module")
def white():
    return D.white_noise(4 * SR, np.random.default_rng(100))


@pytest.mark.parametrize("seed", [3, 4, 10])  # tilts of -1.66, +1.77 and +1.82 dB/octave
def test_random_eq_tilt_is_the_drawn_slope_through_0_db_at_1_khz(white, seed):
    slope = _eq_draws(seed)[0]
    assert abs(slope) > 1.5
    eq = D.random_eq(white, np.random.default_rng(seed), max_gain_db=8.0, bands=0)
    assert eq.shape == white.shape and eq.dtype == np.float32
    for centre in (125, 250, 500, 1000, 2000, 4000, 6300):  # third-octave bands
        assert _band_gain_db(white, eq, centre, 1 / 3) == pytest.approx(slope * math.log2(centre / 1000), abs=0.1)


@pytest.mark.parametrize("seed", [0, 2, 8])  # bells: 307 Hz -7.7 dB narrow, 346 Hz -6.5 dB wide, 6.1 kHz +4.6 dB
def test_random_eq_bell_has_the_drawn_centre_width_and_gain(white, seed):
    slope, centre_hz, width, gain = _eq_draws(seed)
    eq = D.random_eq(white, np.random.default_rng(seed), max_gain_db=8.0, bands=1)

    def bell_db(f):  # measured gain in a twelfth-octave band, the drawn tilt taken out
        return _band_gain_db(white, eq, f, 1 / 12) - slope * math.log2(f / 1000)

    assert bell_db(centre_hz) == pytest.approx(gain, abs=0.3)
    for side in (-1, 1):  # Gaussian in log-frequency: exp(-1/2) of the gain one width away, ~0 four widths away
        for widths, expected in ((1, gain * math.exp(-0.5)), (4, 0.0)):
            f = centre_hz * 2 ** (side * widths * width)
            if 60 < f < 7000:
                assert bell_db(f) == pytest.approx(expected, abs=0.3), (side, widths)


def test_random_eq_is_zero_phase_and_bounded_by_twice_the_max_gain():
    impulse = np.zeros(8192)
    impulse[0] = 1.0
    for seed in range(10):
        response = D.random_eq(impulse, np.random.default_rng(seed), max_gain_db=6.0, bands=3)
        # Zero phase: the impulse response is even (h[k] == h[-k]), so the input stays aligned with the target.
        np.testing.assert_allclose(response[1:], response[1:][::-1], atol=1e-6)
        gain_db = 20 * np.log10(np.abs(np.fft.rfft(response)))
        assert np.all(np.abs(gain_db) <= 12.0 + 1e-3)
    # Many bells add up beyond +-12 dB; the gain is clipped there, on both sides.
    many = D.random_eq(impulse, np.random.default_rng(4), max_gain_db=6.0, bands=60)
    many = 20 * np.log10(np.abs(np.fft.rfft(many)))
    assert many.max() == pytest.approx(12.0, abs=1e-3) and many.min() == pytest.approx(-12.0, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def hf_saved(tmp_path):
    """A `save_to_disk` dataset with Audio columns as a Hub dataset has them (decode=True, which needs torchcodec).

    Row k has a constant clean level (k + 1) / 40, so a crop tells which row it came from; noisy = clean + 0.05.
    Row 5 holds corrupted bytes.
    """
    datasets = pytest.importorskip("datasets")
    rows = []
    for k in range(8):
        clean = np.full(int(0.3 * SR) + 100 * k, (k + 1) / 40, dtype=np.float32)
        noisy = _wav_bytes(clean + 0.05) if k != 5 else b"RIFF corrupted"
        rows.append(({"bytes": _wav_bytes(clean), "path": None}, {"bytes": noisy, "path": None}))
    ds = datasets.Dataset.from_dict({"clean": [r[0] for r in rows], "noisy": [r[1] for r in rows]})
    ds = ds.cast_column("clean", datasets.Audio()).cast_column("noisy", datasets.Audio())
    path = tmp_path / "hf"
    ds.save_to_disk(str(path))
    return path


def _row_ids(batches):
    return [round(float(v) * 40) - 1 for b in batches for v in b["clean"][:, 0]]


def test_hf_dataset_from_disk(hf_saved):
    ds = D.HFAudioDataset(str(hf_saved), segment_samples=SEG, seed=0)
    assert len(ds) == 8
    with pytest.warns(D.AudioDataWarning, match="row 5, column 'noisy': <bytes>: cannot be read as audio"):
        batches = _epoch(ds, batch_size=4)
    assert [b["clean"].shape for b in batches] == [(4, SEG), (4, SEG)]
    for b in batches:
        torch.testing.assert_close(b["noisy"], b["clean"] + 0.05, atol=1e-6, rtol=0)
    assert 5 not in _row_ids(batches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.AudioDataWarning)
        again = _epoch(D.HFAudioDataset(str(hf_saved), segment_samples=SEG, seed=0), batch_size=4)
    assert all(torch.equal(a["clean"], b["clean"]) for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="no column"):
        D.HFAudioDataset(str(hf_saved), segment_samples=SEG, noisy_column="degraded")


def test_hf_split_by_node_gives_disjoint_shards(hf_saved):
    ids = []
    for rank in range(2):
        ds = D.HFAudioDataset(str(hf_saved), segment_samples=SEG, rank=rank, world_size=2)
        assert len(ds) == 4
        ids.append({round(float(D.decode_audio_value(row["clean"])[0]) * 40) - 1 for row in ds.dataset})
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(8))


def test_hf_streaming_parquet_and_split_by_node(tmp_path, hf_saved):
    datasets = pytest.importorskip("datasets")
    parquet = tmp_path / "train.parquet"
    datasets.load_from_disk(str(hf_saved)).to_parquet(str(parquet))
    stream = datasets.load_dataset("parquet", data_files=str(parquet), split="train", streaming=True)
    stream = stream.cast_column("clean", datasets.Audio()).cast_column("noisy", datasets.Audio())  # as on the Hub
    seen = []
    with pytest.warns(D.AudioDataWarning, match="cannot be read as audio"):  # the corrupted row is skipped
        for rank in range(2):
            ds = D.HFStreamingAudioDataset(None, segment_samples=SEG, rank=rank, world_size=2, dataset=stream)
            batches = _epoch(ds, batch_size=2)
            seen.append(set(_row_ids(batches)))
            for b in batches:
                torch.testing.assert_close(b["noisy"], b["clean"] + 0.05, atol=1e-6, rtol=0)
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(8)) - {5}
    # A saved folder streams too (to_iterable_dataset), deterministically.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.AudioDataWarning)
        runs = [
            _epoch(D.HFStreamingAudioDataset(str(hf_saved), segment_samples=SEG, seed=3), batch_size=7)
            for _ in range(2)
        ]
    assert torch.equal(runs[0][0]["clean"], runs[1][0]["clean"]) and runs[0][0]["clean"].shape == (7, SEG)


def test_hf_speech_only_with_mixing(tmp_path, speech_noise):
    datasets = pytest.importorskip("datasets")
    _, noise_dir, speech, _ = speech_noise
    ds = datasets.Dataset.from_dict({"audio": [{"bytes": p.read_bytes(), "path": None} for p in speech]})
    ds = ds.cast_column("audio", datasets.Audio())
    mixed = D.HFAudioDataset(
        None,
        segment_samples=SEG,
        clean_column="audio",
        noisy_column=None,
        noise=noise_dir,
        augment=False,
        snr_db=(10, 10),
        dataset=ds,
    )
    item = mixed[2]
    assert item["noisy"].shape == (SEG,) and abs(_snr_db(item["clean"], item["noisy"]) - 10) < 0.1
    with pytest.raises(ValueError, match="needs `noise`"):
        D.HFAudioDataset(None, segment_samples=SEG, clean_column="audio", noisy_column=None, dataset=ds)


# ---------------------------------------------------------------------------------------------------------------
# Factory and collate
# ---------------------------------------------------------------------------------------------------------------


def test_mixing_from_several_speech_and_noise_folders(tmp_path, speech_noise):
    speech_dir, noise_dir, speech, noise = speech_noise
    extra = _write(tmp_path / "narrowband" / "x.wav", _tone(0.6, 200, seed=9))
    rows = "path,hf4k_db,cutoff_hz\nspeech/s0.wav,-15,8000\nnarrowband/x.wav,-60,3400\n"
    (tmp_path / "manifest.csv").write_text(rows)
    ds = D.build_dataset(speech_dir=[speech_dir, extra.parent], noise_dir=[noise_dir], segment_samples=SEG)
    assert ds.speech_files == [*speech, extra] and ds.mixer.noise_files == noise  # folders listed in the order given
    # The manifest above the first folder is read: s0 is wideband (x4), the narrowband file is not.
    assert ds.weights is not None and ds.weights[0] == 4 * ds.weights[-1]
    with pytest.raises(ValueError, match=r"Speech files: 1 path\(s\) not found"):
        D.build_dataset(speech_dir=[speech_dir, tmp_path / "missing"], noise_dir=noise_dir, segment_samples=SEG)


def test_build_dataset_needs_exactly_one_source(paired_root, speech_noise, hf_saved):
    speech_dir, noise_dir, _, _ = speech_noise
    with pytest.raises(ValueError, match="exactly one"):
        D.build_dataset(segment_samples=SEG)
    with pytest.raises(ValueError, match="exactly one"):
        D.build_dataset(train_data_dir=paired_root, speech_dir=speech_dir, segment_samples=SEG)
    assert isinstance(D.build_dataset(train_data_dir=paired_root, segment_samples=SEG), D.PairedFolderDataset)
    assert isinstance(D.build_dataset(dataset_name=str(hf_saved), segment_samples=SEG), D.HFAudioDataset)
    assert isinstance(
        D.build_dataset(dataset_name=str(hf_saved), segment_samples=SEG, streaming=True), D.HFStreamingAudioDataset
    )
    args = argparse.Namespace(
        speech_dir=str(speech_dir),
        noise_dir=str(noise_dir),
        train_data_dir=None,
        dataset_name=None,
        segment_seconds=0.25,
        seed=4,
    )
    ds = D.build_train_dataset(args)
    assert isinstance(ds, D.MixingDataset) and ds.segment_samples == SEG and ds.seed == 4 and ds.weights is None
    args.snr_db_max = 30.0
    args.augmentation = {"clean_prob": 0.1, "band_limit_to_target": True, "lowpass_hz": [3000, 7000]}
    config = D.build_train_dataset(args).mixer.config
    assert (config.clean_prob, config.band_limit_to_target, config.lowpass_hz) == (0.1, True, (3000, 7000))
    assert config.snr_db == (-5.0, 30.0) and config.reverb_prob == D.AugmentConfig.reverb_prob
    args.augmentation = {"clean_probability": 0.1}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['clean_probability'\]"):
        D.build_train_dataset(args)
    with pytest.raises(ValueError, match="different lengths"):
        D.collate(
            [{"clean": torch.zeros(3), "noisy": torch.zeros(3)}, {"clean": torch.zeros(4), "noisy": torch.zeros(4)}]
        )
