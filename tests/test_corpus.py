"""Tests of the corpus v2 builder (scripts/corpus): quality measures on synthetic signals with known answers,
bandwidth cutoffs of low-passed noise, splits by whole units, the stranger split, the reserved-package refusal,
source listing, licences and the stranger mixtures. No downloads, no network, no corpus: everything is generated.
"""

import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "corpus"))

import build_corpus  # noqa: E402
from fuse_corpus import debian, licences, mixtures, process, quality, sources, splits  # noqa: E402

SR = 16000


def _white(seconds=3.0, scale=0.1, seed=0):
    return (scale * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float64)


def _brickwall(x, cutoff):
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / SR) > cutoff] = 0
    return np.fft.irfft(spectrum, len(x))


def _sine(seconds, freq=440.0, amplitude=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return amplitude * np.sin(2 * np.pi * freq * t)


# ----------------------------------------------------------------------------------------------- quality


def test_level_and_peak_of_a_sine():
    x = _sine(1.0, amplitude=0.5)
    assert quality.rms_db(x) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert quality.peak(x) == pytest.approx(0.5, abs=1e-3)
    assert quality.rms_db(np.zeros(100)) == quality.FLOOR_DB  # silence is a number, not -inf
    assert quality.peak(np.zeros(0)) == 0.0


def test_clip_fraction_of_a_clipped_sine():
    x = np.clip(_sine(3.0, freq=101.7, amplitude=2.0), -1, 1)  # many phases: the fraction is the integral
    # |2 sin| >= 0.99 over a fraction 1 - (2/pi) asin(0.495) of the period
    expected = 1 - 2 / math.pi * math.asin(0.99 / 2)
    assert quality.clip_fraction(x) == pytest.approx(expected, abs=0.005)
    assert quality.clip_fraction(_sine(1.0, amplitude=0.5)) == 0.0
    stereo = np.stack([np.zeros(1000), np.r_[np.ones(10), np.zeros(990)]])
    assert quality.clip_fraction(stereo) == pytest.approx(10 / 2000)


def _bands(x):
    return quality.band_powers(*quality.stft_power(x, SR))


def test_stft_power_sums_to_the_mean_square():
    x = _white(scale=0.1)
    freqs, power = quality.stft_power(x, SR)
    assert power.sum(axis=1).mean() == pytest.approx(0.01, rel=0.02)
    bands = quality.band_powers(freqs, power)
    assert bands.shape == (power.shape[0], 8)
    np.testing.assert_allclose(bands.sum(axis=1), power.sum(axis=1))


@pytest.mark.parametrize("snr_db", [5.0, 20.0, 40.0])
def test_snr_estimate_of_a_tone_in_noise(snr_db):
    noise = _white(4.0, scale=0.001, seed=1)
    tone = _sine(4.0, amplitude=1.0)
    tone[:SR] = 0  # 1 s of noise only, then the tone: like a word after a pause
    tone *= math.sqrt(1e-6 * 10 ** (snr_db / 10) / 0.5)  # tone power = noise power * 10^(snr/10)
    bands = _bands(noise + tone)
    expected = 10 * math.log10(1 + 10 ** (snr_db / 10))  # active frames hold tone + noise
    assert quality.snr_estimate_db(bands) == pytest.approx(expected, abs=2.0)  # reads 1-2 dB high: see quality
    assert quality.noise_floor_db(bands) == pytest.approx(-60.0, abs=1.5)


def test_snr_estimate_of_speech_without_pauses():
    """Vowel-like tones and fricative-like hiss back to back, no pause: the floor is found band by band."""
    t = np.arange(SR // 10) / SR
    vowel = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 12)) * 0.1
    hiss = sps.sosfilt(sps.butter(6, 4500, "high", fs=SR, output="sos"), _white(0.1, scale=0.2, seed=2))
    speech = np.concatenate([vowel, hiss] * 15)
    noise = _white(3.0, scale=10 ** (-75 / 20), seed=3)  # -75 dBFS white noise
    bands = _bands(speech + noise)
    assert quality.noise_floor_db(bands) == pytest.approx(-75.0, abs=2.0)
    assert quality.snr_estimate_db(bands) > 50
    # broadband frame levels cannot see that floor: every 20 ms frame holds speech
    assert np.percentile(quality.frame_levels_db(speech + noise, SR), 10) > -40


def test_snr_estimate_of_digital_silence_is_capped():
    assert quality.snr_estimate_db(_bands(np.r_[np.zeros(SR), _sine(1.0)])) == quality.MAX_SNR_DB


def test_frame_levels_of_a_clip_shorter_than_a_frame():
    levels = quality.frame_levels_db(np.full(100, 0.1), SR)
    assert levels.shape == (1,) and levels[0] == pytest.approx(-20.0, abs=0.01)


def test_band_energies_of_white_noise():
    freqs, power = quality.power_spectrum(_white(), SR)
    assert freqs[-1] == SR / 2 and len(freqs) == quality.N_FFT // 2 + 1
    assert quality.band_energy_db(freqs, power, 4000) == pytest.approx(10 * math.log10(0.5), abs=0.3)
    assert quality.band_energy_db(freqs, power, 7000) == pytest.approx(10 * math.log10(1 / 8), abs=0.5)
    assert quality.band_energy_db(freqs, np.zeros_like(power), 4000) == quality.FLOOR_DB


@pytest.mark.parametrize("cutoff", [2000, 3400, 4000, 5500, 7000])
def test_cutoff_of_brickwall_lowpassed_noise(cutoff):
    freqs, power = quality.power_spectrum(_brickwall(_white(), cutoff), SR)
    assert quality.cutoff_hz(freqs, power) == pytest.approx(cutoff, abs=100)
    assert quality.band_energy_db(freqs, power, 7000) < -60 or cutoff >= 7000


@pytest.mark.parametrize("cutoff", [3400, 4000, 6000])
def test_cutoff_of_butterworth_lowpassed_noise_over_a_noise_floor(cutoff):
    sos = sps.butter(8, cutoff, fs=SR, output="sos")
    x = sps.sosfiltfilt(sos, _white()) + _white(scale=1e-4, seed=3)  # a floor 60 dB down, as in real recordings
    freqs, power = quality.power_spectrum(x, SR)
    assert quality.cutoff_hz(freqs, power) == pytest.approx(cutoff, rel=0.08)


def test_cutoff_of_a_fading_high_band_is_where_it_sinks_below_content_level():
    """Low-bitrate codecs fade the high band out without a steep edge: the cutoff is where content ends."""
    x = _white(seed=7)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    fade_db = np.where(freqs > 3000, -12.0 * (freqs - 3000) / 1000, 0.0)  # -12 dB per kHz above 3 kHz
    faded = np.fft.irfft(spectrum * 10 ** (fade_db / 20), len(x))
    f, power = quality.power_spectrum(faded, SR)
    expected = 3000 + 1000 * quality.CONTENT_BELOW_REF_DB / 12  # where the fade crosses content level
    assert quality.cutoff_hz(f, power) == pytest.approx(expected, abs=300)


def test_cutoff_ignores_the_fall_above_a_low_voice():
    """A strong 150 Hz voice over faint full-band hiss: the fall above its harmonics is not a band limit."""
    hum = sum(_sine(2.0, 150.0 * h, 0.3 / h) for h in range(1, 4))
    f, power = quality.power_spectrum(hum + _white(2.0, scale=0.003, seed=8), SR)
    assert quality.cutoff_hz(f, power) >= quality.MIN_CUTOFF_HZ


def test_cutoff_of_full_band_and_of_natural_slopes_is_nyquist():
    freqs, power = quality.power_spectrum(_white(), SR)
    assert quality.cutoff_hz(freqs, power) == SR / 2
    # Brown-ish noise falls ~6 dB per octave: a slope, not an edge.
    brown = np.cumsum(_white())
    brown -= np.convolve(brown, np.ones(400) / 400, mode="same")
    freqs, power = quality.power_spectrum(brown / np.abs(brown).max(), SR)
    assert quality.cutoff_hz(freqs, power) == SR / 2


def test_measure_classifies_bandwidth():
    wide = quality.measure(_white(), SR)
    narrow = quality.measure(_brickwall(_white(), 3800), SR)
    assert (wide.bandwidth, narrow.bandwidth) == ("wideband", "narrowband")
    assert narrow.cutoff_hz == pytest.approx(3800, abs=100)
    assert narrow.hf4k_db < -40 < wide.hf4k_db
    assert quality.bandwidth_class(quality.WIDEBAND_MIN_CUTOFF_HZ) == "wideband"
    assert quality.bandwidth_class(quality.WIDEBAND_MIN_CUTOFF_HZ - 1) == "narrowband"
    row = wide.as_row()
    assert row["seconds"] == "3.000" and row["bandwidth"] == "wideband" and row["cutoff_hz"] == "8000"


def _quality(**changes):
    good = dict(
        seconds=2.0,
        rms_dbfs=-25.0,
        peak=0.5,
        clip_fraction=0.0,
        noise_floor_dbfs=-70.0,
        snr_db=45.0,
        hf4k_db=-20.0,
        hf7k_db=-30.0,
        cutoff_hz=7600.0,
        bandwidth="wideband",
    )
    return quality.Quality(**{**good, **changes})


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({}, None),
        ({"seconds": quality.MIN_SPEECH_S - 0.01}, "short"),
        ({"rms_dbfs": quality.MIN_SPEECH_RMS_DBFS - 1}, "quiet"),
        ({"clip_fraction": 2 * quality.MAX_CLIP_FRACTION}, "clipped"),
        ({"snr_db": quality.MIN_SPEECH_SNR_DB - 1}, "noisy"),
    ],
)
def test_drop_reasons_of_speech(changes, reason):
    assert quality.drop_reason(_quality(**changes), "speech") == reason


def test_noise_is_dropped_only_when_short_or_silent():
    assert quality.drop_reason(_quality(snr_db=2.0, clip_fraction=0.5), "noise") is None
    assert quality.drop_reason(_quality(seconds=0.5), "noise") == "short"
    assert quality.drop_reason(_quality(rms_dbfs=-70.0), "noise") == "quiet"
    with pytest.raises(ValueError, match="kind"):
        quality.drop_reason(_quality(), "music")


# ----------------------------------------------------------------------------------------------- splits


def _items():
    """Three tuxpaint languages (ro is a stranger), a stranger voice, a package with many units, noise."""
    items = []
    for language in ("fr", "ro", "es"):
        for unit in range(30):
            items.append(
                splits.Item(
                    "tuxpaint-stamps-default",
                    f"tuxpaint/{language}",
                    f"{language}/c{unit}",
                    language,
                    f"tuxpaint-{language}",
                    10.0 + unit,
                )
            )
    for pack in ("Classic", "British", "Pirate"):
        items += [splits.Item("hedgewars-data", "hedgewars-data", pack, "en", f"hedgewars-{pack}", 2.0)] * 5
    # ktuberling's ro words carry the stranger language into another package
    items.append(splits.Item("ktuberling-data", "ktuberling-data", "ro", "ro", "ktuberling-ro", 1.0))
    items.append(splits.Item("ktuberling-data", "ktuberling-data", "de", "de", "ktuberling-de", 1.0))
    for rec in range(40):
        items.append(splits.Item("0ad-data", "0ad-data", f"rec{rec}", "", "", 30.0))
    items.append(splits.Item("lincity-ng-data", "lincity-ng-data", "Traffic1.wav", "", "", 5.0))
    return items


def test_splits_keep_units_whole_and_are_deterministic():
    items = _items()
    first = splits.assign_splits(items)
    again = splits.assign_splits(list(reversed(items)))
    assert first == again
    assert set(first) == {i.unit_id for i in items}
    assert set(first.values()) == set(splits.SPLITS)
    # valid: about 5 % of every non-stranger pool, never empty, never every unit
    for pool in ("tuxpaint/fr", "tuxpaint/es", "0ad-data"):
        seconds = {s: sum(i.seconds for i in items if i.pool == pool and first[i.unit_id] == s) for s in splits.SPLITS}
        total = sum(seconds.values())
        assert 0 < seconds["valid"] <= 1.5 * splits.VALID_FRACTION * total
        assert seconds["train"] > 0.9 * total


def test_stranger_split_shares_no_unit_language_or_voice_with_training():
    items = _items()
    assignment = splits.assign_splits(items)
    splits.check_disjoint(items, assignment)
    stranger = [i for i in items if assignment[i.unit_id] == "dev_stranger"]
    training = [i for i in items if assignment[i.unit_id] != "dev_stranger"]
    assert {i.language for i in stranger if i.language} == {"ro", "en"}
    assert not {i.language for i in training} & set(splits.STRANGER_LANGUAGES)
    assert not {i.speaker for i in stranger} - {""} & {i.speaker for i in training}
    assert not {i.unit_id for i in stranger} & {i.unit_id for i in training}
    assert ("ktuberling-data", "ro") in {i.unit_id for i in stranger}
    assert ("lincity-ng-data", "Traffic1.wav") in {i.unit_id for i in stranger}
    assert {i.speaker for i in stranger if i.package == "hedgewars-data"} == {"hedgewars-British"}


def test_stranger_closure_follows_a_shared_voice():
    items = [
        splits.Item("p", "p", "a", "ro", "voice-x", 1.0),  # a stranger language spoken by voice-x
        splits.Item("p", "p", "b", "fr", "voice-x", 1.0),  # ... who also speaks French elsewhere
        splits.Item("p", "p", "c", "fr", "voice-y", 1.0),
        splits.Item("p", "p", "d", "fr", "voice-z", 1.0),
    ]
    assert splits.stranger_units(items) == {("p", "a"), ("p", "b")}


def test_check_disjoint_refuses_a_shared_voice():
    items = [splits.Item("p", "p", "a", "fr", "voice-x", 1.0), splits.Item("p", "p", "b", "fr", "voice-x", 1.0)]
    with pytest.raises(ValueError, match="speaker"):
        splits.check_disjoint(items, {("p", "a"): "train", ("p", "b"): "dev_stranger"})


def test_choose_valid_of_one_unit_pool_is_empty():
    assert splits.choose_valid("pool", {"only": 10.0}) == set()
    assert len(splits.choose_valid("pool", {"a": 10.0, "b": 10.0})) == 1


# ----------------------------------------------------------------------------------------------- reserved


@pytest.mark.parametrize(
    "name",
    [
        "fillets-ng-data-cs",
        "pocketsphinx-testdata",
        "wesnoth-1.16-data",
        "klettres-data",
        "gcin-voice",
        "asterisk-core-sounds-en-wav",
        "asterisk-core-sounds-en-gsm",
        "asterisk-core-sounds-es-g722",
        "asterisk-moh-opsound-wav",
        "Asterisk-Core-Sounds-EN-G722",
    ],
)
def test_reserved_packages_are_refused(name):
    assert sources.is_reserved(name)
    with pytest.raises(sources.ReservedPackageError, match="reserved for independent evaluation"):
        sources.check_allowed(name)
    table = (*sources.PACKAGES, sources.Package(name, "GPL-2", ("./x/*",), (), "evaluation material"))
    with pytest.raises(AssertionError):
        sources.check_table(table)


def test_the_source_table_names_no_reserved_package():
    sources.check_table(sources.PACKAGES)
    assert not any(sources.is_reserved(p.name) for p in sources.PACKAGES)
    assert sources.check_allowed("asterisk-core-sounds-it-g722") == "asterisk-core-sounds-it-g722"
    assert not sources.is_reserved("fillets-ng-data-nl")
    with pytest.raises(ValueError, match="more than once"):
        sources.check_table((sources.PACKAGES[0], sources.PACKAGES[0]))


def test_reserved_package_is_refused_before_any_download(tmp_path, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("apt-get must not run for a reserved package")

    monkeypatch.setattr(debian.subprocess, "run", no_subprocess)
    with pytest.raises(sources.ReservedPackageError):
        debian.fetch("asterisk-core-sounds-en-wav", tmp_path)
    assert not (tmp_path / "debs").exists()


# ----------------------------------------------------------------------------------------------- sources


def _touch(root, rel):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_tuxpaint_lister_reads_languages_and_leaves_out_nynorsk(tmp_path):
    base = "usr/share/tuxpaint/stamps/animals/birds"
    for name in ("owl_desc.ogg", "owl_desc_fr.ogg", "owl_desc_pt_BR.wav", "owl_desc_nn.ogg", "owl.ogg"):
        _touch(tmp_path, f"{base}/{name}")
    package = next(p for p in sources.PACKAGES if p.name == "tuxpaint-stamps-default")
    found = sources.list_tuxpaint(package, tmp_path)
    assert sorted(s.language for s in found) == ["en", "fr", "pt"]
    fr = next(s for s in found if s.language == "fr")
    assert (fr.unit, fr.pool, fr.speaker) == ("fr/animals/birds", "tuxpaint/fr", "tuxpaint-fr")
    assert fr.origin == f"tuxpaint-stamps-default:/{base}/owl_desc_fr.ogg"
    _touch(tmp_path, "usr/share/tuxpaint/stamps/symbols/clock_desc_ro.ogg")  # one folder deep: the unit is it
    ro = [s for s in sources.list_tuxpaint(package, tmp_path) if s.language == "ro"]
    assert [s.unit for s in ro] == ["ro/symbols"]


def test_ktuberling_lister_skips_nynorsk_and_serbian_copies(tmp_path):
    for rel in ("de/ball.ogg", "nn/ball.opus", "sr/lopta.ogg", "sr@latin/lopta.ogg", "it/palla.wav"):
        _touch(tmp_path, f"usr/share/ktuberling/sounds/{rel}")
    package = next(p for p in sources.PACKAGES if p.name == "ktuberling-data")
    assert sorted(s.language for s in sources.list_ktuberling(package, tmp_path)) == ["de", "it", "sr"]


def test_asterisk_lister_groups_prompts_and_skips_silence_and_beeps(tmp_path):
    voice = "usr/share/asterisk/sounds/it_IT_m_Carlo"
    for rel in ("vm-next.g722", "vm-intro.g722", "digits/1.g722", "silence/1.g722", "beep.g722"):
        _touch(tmp_path, f"{voice}/{rel}")
    package = next(p for p in sources.PACKAGES if p.name == "asterisk-core-sounds-it-g722")
    found = package.listers[0](package, tmp_path)
    assert sorted(s.unit for s in found) == ["it_IT_m_Carlo/digits", "it_IT_m_Carlo/vm", "it_IT_m_Carlo/vm"]
    assert {s.decoder for s in found} == {"g722"} and {s.language for s in found} == {"it"}


def test_carve_riff_finds_the_wave_files_of_a_container():
    def wave(payload):
        body = b"WAVE" + payload
        return b"RIFF" + len(body).to_bytes(4, "little") + body

    blob = b"header" + wave(b"fmt one") + b"junk RIFF" + wave(b"two")
    assert sources.carve_riff(blob) == [wave(b"fmt one"), wave(b"two")]


@pytest.mark.parametrize(
    "origin, kind",
    [
        ("lincity-ng-data:/usr/share/games/lincity-ng/sounds/TraficHigh1.wav", "traffic"),
        ("lincity-ng-data:/usr/share/games/lincity-ng/sounds/WindMill1.wav", "machine"),
        ("supertuxkart-data:/data/sfx/lenautile_restaurant.ogg", "babble"),
        ("0ad-data:/public.zip:audio/ambient/weather/rain_11.ogg", "weather"),
        ("sonic-pi-samples:/usr/share/sonic-pi/samples/loop_amen.flac", "music"),
        ("x:/nothing_known.wav", "ambience"),
    ],
)
def test_noise_kind_keywords(origin, kind):
    assert sources.noise_kind(origin) == kind


# ----------------------------------------------------------------------------------------------- licences


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: game

Files: *
Copyright: someone
License: GPL-2+

Files: data/sfx/rain.ogg
 data/sfx/river.ogg
Copyright: someone else
License: CC0

Files: etc/samples/loop.flac
License: CC-BY-3.0

Files: share/game/Data/Sounds/*
License: GFDL-1.3

Files: game/*
License: GPL-2
"""


def test_file_licence_from_a_dep5_copyright_file():
    stanzas = licences.dep5_stanzas(COPYRIGHT)
    assert stanzas[1] == (("data/sfx/rain.ogg", "data/sfx/river.ogg"), "CC0")
    assert licences.file_licence(stanzas, "usr/share/games/g/data/sfx/river.ogg", "GPL-2+") == "CC0"
    assert licences.file_licence(stanzas, "usr/share/sonic-pi/samples/loop.flac", "GPL-2+") == "CC-BY-3.0"
    # only "Files: *" matches: the package licence of the source table wins
    assert licences.file_licence(stanzas, "usr/share/games/g/data/sfx/wind.ogg", "CC-BY-SA-3.0") == "CC-BY-SA-3.0"
    # the most specific stanza wins: Data/Sounds/* (2 components) over game/* (1), though game/* comes later
    assert licences.file_licence(stanzas, "usr/share/games/game/Data/Sounds/voices/a.ogg", "x") == "GFDL-1.3"
    assert licences.file_licence(stanzas, "usr/share/games/game/Data/Maps/a.txt", "x") == "GPL-2"
    assert licences.match_score("*", "a/b.ogg") == 0 and licences.match_score("b.ogg", "a/b.ogg") == 1
    assert licences.dep5_stanzas("This package was debianized by ...") == []


# ----------------------------------------------------------------------------------------------- mixtures


def _speech_rows(groups=3, per_group=200):
    return [
        {
            "path": f"speech/dev_stranger/{g}_{i}.wav",
            "seconds": "2.0",
            "language": f"l{g}",
            "package": f"pkg{g}",
            "origin": f"pkg{g}:/{i}",
            "speaker": f"s{g}",
            "bandwidth": "wideband",
            "cutoff_hz": "7600",
        }
        for g in range(groups)
        for i in range(per_group)
    ]


def _noise_rows():
    return [
        {
            "path": f"noise/dev_stranger/{k}_{r}.wav",
            "unit": f"{k}{r}",
            "noise_kind": k,
            "package": "n",
            "origin": f"n:/{k}{r}",
        }
        for k in ("typing", "babble", "music")
        for r in range(1 + 5 * (k == "babble"))
    ]


def test_mixture_plan_is_deterministic_and_balanced():
    plan = mixtures.plan(_speech_rows(), _noise_rows(), per_condition=10)
    assert plan == mixtures.plan(_speech_rows(), _noise_rows(), per_condition=10)
    conditions = [p["condition"] for p in plan]
    assert all(conditions.count(c) == 10 for c in mixtures.CONDITIONS)
    assert all((p["noise"] is None) == (p["condition"] == "clean") for p in plan)
    languages = [p["speech"]["language"] for p in plan]
    assert max(languages.count(g) for g in set(languages)) - min(languages.count(g) for g in set(languages)) <= 1
    kinds = [p["noise"]["noise_kind"] for p in plan if p["noise"]]
    assert max(kinds.count(k) for k in set(kinds)) - min(kinds.count(k) for k in set(kinds)) <= 1
    assert len({p["speech"]["path"] for p in plan}) == len(plan)  # every speech clip used once
    with pytest.raises(ValueError, match="usable speech"):
        mixtures.plan(_speech_rows(1, 5), _noise_rows(), per_condition=10)


@pytest.mark.parametrize("condition", ["-5", "0", "10", "20"])
def test_render_mixes_at_the_requested_snr(condition):
    clean, noise = _sine(2.0, amplitude=0.3), _white(1.3, seed=4)
    out_clean, out_noisy = mixtures.render(clean, noise, condition, -25.0, seed=1)
    assert quality.rms_db(out_clean) == pytest.approx(-25.0, abs=0.01)
    residual = out_noisy - out_clean
    snr = 10 * math.log10(np.mean(out_clean**2) / np.mean(residual**2))
    assert snr == pytest.approx(float(condition), abs=0.01)
    assert out_clean.dtype == np.float32 and np.abs(out_noisy).max() <= 0.99 + 1e-6


def test_render_clean_condition_and_narrowband_noise():
    clean = _sine(1.0, amplitude=0.3)
    out_clean, out_noisy = mixtures.render(clean, _white(), "clean", -20.0, seed=0)
    np.testing.assert_array_equal(out_clean, out_noisy)
    out_clean, out_noisy = mixtures.render(
        _brickwall(_white(seed=5), 3500), _white(seed=6), "0", -20.0, seed=0, lowpass_hz=3500.0
    )
    freqs, power = quality.power_spectrum(out_noisy - out_clean, SR)
    assert quality.band_energy_db(freqs, power, 5000) < -40  # the noise was band-limited with the speech


# ----------------------------------------------------------------------------------------------- processing


def test_stitched_typing_is_deterministic_and_sized():
    click = (np.hanning(400) * _white(0.025, scale=0.3)).astype(np.float32)
    presses = [(click, 0.5 * click)] * 3
    a = process.stitch_typing(presses, 5.0, np.random.default_rng(0))
    b = process.stitch_typing(presses, 5.0, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5 * SR,) and a.dtype == np.float32
    active = np.mean(quality.frame_levels_db(a, SR) > -60)
    assert 0.2 < active < 0.95  # clicks with gaps between them, not silence and not a wall of sound


def test_process_removes_drift_below_hearing_and_keeps_speech_band(tmp_path):
    # A 44.1 kHz file: a 200 Hz tone over a 4 Hz drift as strong as the tone and a DC offset, as some game stamps carry.
    rate = 44100
    t = np.arange(3 * rate) / rate
    tone = 0.1 * np.sin(2 * np.pi * 200 * t)
    path = tmp_path / "stamp.wav"
    sf.write(path, (tone + 0.1 * np.sin(2 * np.pi * 4 * t) + 0.05).astype(np.float32), rate, subtype="FLOAT")
    source = sources.Source("pkg", "speech", str(path), "pkg:/stamp.wav", "stamp", "ro", "v", "pool:u", "pool")
    record = process.process(source, tmp_path / "cache")
    out, out_rate = sf.read(tmp_path / "cache" / "files" / "pkg" / record["outputs"][0]["file"])
    assert out_rate == SR and len(out) == 3 * SR
    spectrum = np.abs(np.fft.rfft(out[SR // 2 : -SR // 2])) ** 2  # 2 s: 0.5 Hz bins
    freqs = np.fft.rfftfreq(2 * SR, 1 / SR)
    assert spectrum[freqs < 12].sum() < 1e-5 * spectrum.sum()  # drift and DC: -50 dB
    ref = 0.1 * np.sin(2 * np.pi * 200 * np.arange(3 * SR) / SR)
    gain_db = 10 * np.log10(np.mean(out[SR // 2 : -SR // 2] ** 2) / np.mean(ref[SR // 2 : -SR // 2] ** 2))
    assert abs(gain_db) < 0.1  # 200 Hz comes through (PCM16) unchanged


def test_segment_bounds_cover_the_recording_in_equal_parts():
    assert process.segment_bounds(100, 30) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert process.segment_bounds(20, 30) == [(0, 20)]


# ----------------------------------------------------------------------------------------------- the builder


def test_builder_refuses_reserved_and_unknown_packages_before_doing_anything(tmp_path, capsys):
    for name, message in (("asterisk-core-sounds-en-wav", "reserved"), ("no-such-package", "not in the source")):
        with pytest.raises(SystemExit) as exit_info:
            build_corpus.main([str(tmp_path / "out"), "--packages", name])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_near_duplicate_noise_keeps_the_first_recording():
    rng = np.random.default_rng(0)
    envelope = list(rng.normal(size=200))
    other = list(rng.normal(size=200))
    candidates = [
        ("a", 10.0, envelope),
        ("b", 10.1, [v + 0.01 for v in envelope]),
        ("c", 10.0, other),
        ("d", 20.0, envelope),
    ]
    assert build_corpus.near_duplicate_noise(candidates) == {"b": "a"}


def _fake(package, kind, name, language, speaker, unit, cutoff, seconds=2.0, snr=40.0, sha1=None):
    source = sources.Source(
        package=package,
        kind=kind,
        path="/nowhere",
        origin=f"{package}:/{name}",
        name=name,
        language=language,
        speaker=speaker,
        unit=unit,
        pool=package,
    )
    q = _quality(seconds=seconds, snr_db=snr, cutoff_hz=cutoff)
    record = {
        "key": "",
        "sha1": sha1 or name,
        "seconds": seconds,
        "error": "",
        "outputs": [{"file": f"{name}.wav", "segment": None, "quality": asdict(q), "envelope": []}],
    }
    return source, record


def test_selection_and_placement_put_files_by_bandwidth_split_and_reason():
    fakes = [_fake("tux", "speech", f"fr{i}", "fr", "tux-fr", f"fr/c{i}", 7600.0) for i in range(40)]
    fakes += [_fake("tux", "speech", f"ro{i}", "ro", "tux-ro", "ro/c", 4000.0) for i in range(3)]
    fakes += [
        _fake("tux", "speech", "noisy", "fr", "tux-fr", "fr/c0", 7600.0, snr=10.0),
        _fake("tux", "speech", "copy", "fr", "tux-fr", "fr/c1", 7600.0, sha1="fr1"),
    ]
    found = sorted((s for s, _ in fakes), key=lambda s: s.origin)
    records = {s.origin: r for s, r in fakes}
    info = {"tux": {"stanzas": [], "licence": "GPL-2"}}
    kept, dropped = build_corpus.select(found, records, info)
    # byte-identical files: the first in origin order ("copy") is kept
    assert sorted((d["origin"], d["reason"], d["duplicate_of"]) for d in dropped) == [
        ("tux:/fr1", "duplicate", "tux:/copy"),
        ("tux:/noisy", "noisy", ""),
    ]
    rows = build_corpus.place(kept)
    by_name = {Path(r["path"]).stem: r for r in rows}
    assert by_name["ro0"]["path"] == "speech_narrowband/dev_stranger/ro0.wav"
    assert {r["split"] for r in rows if r["language"] == "fr"} == {"train", "valid"}
    assert all(r["path"].startswith(f"speech/{r['split']}/") for r in rows if r["language"] == "fr")
    assert rows == sorted(rows, key=lambda r: r["path"]) and by_name["fr3"]["licence"] == "GPL-2"
