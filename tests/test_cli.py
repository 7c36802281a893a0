"""The `fuse-hf` command line end to end on temporary folder trees, with the tiny random pipeline of conftest.

Most cases call `fuse_hf.commands.main([...])` in-process (fast, output through capsys); the installed console script
and `accelerate launch` run as real subprocesses once each, because only they show real exit codes and ranks.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import free_port
from fuse_hf.commands import build_parser, main

BIN = Path(sys.executable).parent
SUMMARY = re.compile(
    r"enhanced (\d+) file\(s\), ([\d.]+) s of audio in ([\d.]+) s \(real-time factor ([\d.]+|nan)\); "
    r"(\d+) skipped, (\d+) failed"
)
# Short clips keep every case cheap; 1.2 s still spans several 0.5 s windows of the test pipeline.
FAST = ["--steps", "1", "--device", "cpu"]


# ------------------------------------------------------------------------------------------ helpers


def write(path: Path, audio: np.ndarray, rate: int, subtype=None) -> Path:
    """Writes `(channels, samples)` audio, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.T, rate, subtype=subtype)
    return path


@pytest.fixture
def tree(tmp_path, make_speech):
    """A nested input tree in three formats, plus a file that is not audio (it must be ignored)."""
    root = tmp_path / "noisy"
    write(root / "a.wav", make_speech(0.5, 44100, channels=2, seed=1), 44100, "PCM_16")
    write(root / "sub" / "b.flac", make_speech(0.4, 48000, seed=2), 48000, "PCM_24")
    write(root / "sub" / "deeper" / "c.wav", make_speech(1.2, 8000, seed=3), 8000, "PCM_16")
    (root / "sub" / "notes.txt").write_text("not audio")
    return root


def enhance(capsys, *args, model):
    """Runs `fuse-hf enhance ARGS --model MODEL` in-process; returns `(exit code, stdout, stderr)`."""
    code = main(["enhance", *map(str, args), "--model", str(model)])
    out, err = capsys.readouterr()
    return code, out, err


def summary(out: str):
    match = SUMMARY.search(out)
    assert match, f"no summary line in:\n{out}"
    files, seconds, wall, rtf, skipped, failed = match.groups()
    return dict(
        files=int(files),
        seconds=float(seconds),
        wall=float(wall),
        rtf=float(rtf),
        skipped=int(skipped),
        failed=int(failed),
    )


def error_lines(err: str):
    assert "Traceback" not in err, f"a traceback reached the user:\n{err}"
    return [line for line in err.splitlines() if "error" in line.lower()]


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0].T


# --------------------------------------------------------------------------------------------- help


def _subcommands():
    """`{name: subparser}` of `fuse-hf`, read from the parser so that new subcommands are tested too."""
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return actions[0].choices


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    choices = _subcommands()
    assert {"enhance", "evaluate", "convert-beats"} <= set(choices)
    for name in choices:
        assert name in out


def test_every_subcommand_help_exits_0_and_mentions_its_options(capsys):
    choices = _subcommands()
    for name, subparser in choices.items():  # `push` too, once it exists
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0, name
        text = capsys.readouterr().out
        for action in subparser._actions:
            for option in action.option_strings:
                assert option in text, f"`fuse-hf {name} --help` does not mention {option}"
            if not action.option_strings:  # positionals appear by metavar or name
                assert (action.metavar or action.dest) in text, f"`fuse-hf {name} --help` lacks {action.dest}"
    # ... and by name, the options the issue asks `enhance` for
    with pytest.raises(SystemExit):
        main(["enhance", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--output-dir",
        "--model",
        "--steps",
        "--seed",
        "--batch-size",
        "--device",
        "--atten-lim-db",
        "--precision",
        "--overwrite",
        "--noise-scale",
    ):
        assert option in text


def test_help_starts_without_torch():
    """Parsing (and every `--help`) imports no torch or diffusers: `fuse-hf --help` answers at once."""
    script = (
        "import sys\n"
        "from fuse_hf.commands import main\n"
        "for argv in (['--help'], ['enhance', '--help'], ['evaluate', '--help'], ['convert-beats', '--help'],\n"
        "             ['push', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, argv\n"
        "print('LOADED', sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    version = subprocess.run(
        [sys.executable, "-m", "fuse_hf", "--version"], capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0 and version.stdout.startswith("fuse-hf "), version.stderr


def test_evaluate_help_lists_the_metrics_of_fuse_hf_metrics():
    from fuse_hf import metrics
    from fuse_hf.commands.evaluate import METRIC_NAMES

    assert METRIC_NAMES == metrics.METRICS


# ------------------------------------------------------------------------------------------ enhance


def test_folder_is_searched_recursively_and_mirrored_in_the_input_format(tree, tmp_path, tiny_pipeline_dir, capsys):
    out_dir = tmp_path / "out"
    code, out, err = enhance(capsys, tree, "-o", out_dir, *FAST, model=tiny_pipeline_dir)
    assert code == 0, err
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert written == ["a.wav", "sub/b.flac", "sub/deeper/c.wav"]
    for name in written:
        source, target = sf.info(tree / name), sf.info(out_dir / name)
        assert (target.samplerate, target.channels, target.subtype, target.frames) == (
            source.samplerate,
            source.channels,
            source.subtype,
            source.frames,
        ), name
        audio = read(out_dir / name)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        assert not np.allclose(audio, read(tree / name), atol=1e-3), f"{name} came back unchanged"

    stats = summary(out)
    assert (stats["files"], stats["skipped"], stats["failed"]) == (3, 0, 0)
    assert stats["seconds"] == pytest.approx(0.5 + 0.4 + 1.2, abs=0.06)
    # The summary prints wall seconds rounded to 0.1 s and the RTF from the unrounded wall time.
    assert stats["rtf"] == pytest.approx(stats["wall"] / stats["seconds"], abs=0.05 / stats["seconds"] + 0.01)
    assert len([line for line in out.splitlines() if SUMMARY.search(line)]) == 1
    assert error_lines(err) == []


def test_files_and_globs(tree, tmp_path, tiny_pipeline_dir, capsys):
    out_dir = tmp_path / "out"
    pattern = str(tree / "**" / "*.flac")  # quoted on a shell: the CLI expands it, recursively
    code, out, err = enhance(capsys, tree / "a.wav", pattern, "-o", out_dir, *FAST, model=tiny_pipeline_dir)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.rglob("*") if p.is_file()) == ["a.wav", "b.flac"]
    assert summary(out)["files"] == 2

    code, _, err = enhance(capsys, str(tree / "*.mp3"), "-o", out_dir, *FAST, model=tiny_pipeline_dir)
    assert code == 1
    [line] = error_lines(err)
    assert "*.mp3" in line and "matches no files" in line


def test_inputs_with_the_same_name_never_overwrite_each_other(tmp_path, tiny_pipeline_dir, make_speech, capsys):
    """Two different inputs must not be written to one output file (the second silently replacing the first):
    either the outputs stay apart, or the command refuses with a message naming the clash."""
    root = tmp_path / "takes"
    write(root / "monday" / "take.wav", make_speech(0.3, seed=1), 16000, "PCM_16")
    write(root / "tuesday" / "take.wav", make_speech(0.3, seed=2), 16000, "PCM_16")
    out_dir = tmp_path / "out"
    code, out, err = enhance(capsys, str(root / "**" / "take.wav"), "-o", out_dir, *FAST, model=tiny_pipeline_dir)
    written = [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.exists() else []
    if code == 0:
        assert len(written) == 2, f"2 inputs, {len(written)} output(s): {written}\n{out}"
    else:
        assert written == [] and "take.wav" in " ".join(error_lines(err))


def test_never_overwrites_without_overwrite(tree, tmp_path, tiny_pipeline_dir, capsys):
    source = tree / "sub" / "b.flac"
    out_dir = tmp_path / "out"
    target = out_dir / "b.flac"
    code, _, err = enhance(capsys, source, "-o", out_dir, *FAST, "--seed", "1", model=tiny_pipeline_dir)
    assert code == 0, err
    before, stamp = target.read_bytes(), target.stat().st_mtime_ns

    code, out, err = enhance(capsys, source, "-o", out_dir, *FAST, "--seed", "2", model=tiny_pipeline_dir)
    assert code == 0
    assert target.read_bytes() == before and target.stat().st_mtime_ns == stamp
    assert str(target) in err and "--overwrite" in err
    assert summary(out)["skipped"] == 1 and summary(out)["files"] == 0

    code, out, err = enhance(
        capsys, source, "-o", out_dir, *FAST, "--seed", "2", "--overwrite", model=tiny_pipeline_dir
    )
    assert code == 0, err
    assert target.read_bytes() != before
    assert summary(out)["files"] == 1 and summary(out)["skipped"] == 0


def test_options_are_accepted_and_the_same_seed_gives_the_same_file(tree, tmp_path, tiny_pipeline_dir, capsys):
    source = tree / "sub" / "deeper" / "c.wav"  # 1.2 s: several windows, so --batch-size matters
    common = ["--steps", "2", "--device", "cpu", "--batch-size", "2"]

    def run(name, *extra):
        out_dir = tmp_path / name
        code, _, err = enhance(capsys, source, "-o", out_dir, *common, *extra, model=tiny_pipeline_dir)
        assert code == 0, err
        return out_dir / "c.wav"

    first, again, other = run("a", "--seed", "7"), run("b", "--seed", "7"), run("c", "--seed", "8")
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()

    # Batching windows must not change the result; exactly so only in fp32 (bf16 kernels depend on the batch).
    batched = run("d", "--seed", "7", "--precision", "fp32")
    one_by_one = run("f", "--seed", "7", "--precision", "fp32", "--batch-size", "1")
    np.testing.assert_allclose(read(one_by_one), read(batched), atol=2e-4)

    limited = run("e", "--seed", "7", "--atten-lim-db", "3")
    noisy = read(source)
    assert np.abs(read(limited) - noisy).mean() < np.abs(read(first) - noisy).mean()

    # --noise-scale 0 makes the seed irrelevant; the default scale keeps it relevant (checked above).
    zero_a, zero_b = run("g", "--seed", "7", "--noise-scale", "0"), run("h", "--seed", "8", "--noise-scale", "0")
    assert zero_a.read_bytes() == zero_b.read_bytes() != first.read_bytes()


def test_evaluate_scores_the_aiff_and_oga_files_enhance_writes(tmp_path, tiny_pipeline_dir, make_speech, capsys):
    from fuse_hf.audio import save_audio

    clean_dir, noisy_dir, out_dir = tmp_path / "clean", tmp_path / "noisy", tmp_path / "enhanced"
    rng = np.random.default_rng(0)
    for name, suffix, seed in (("a", ".aiff", 1), ("sub/b", ".oga", 2)):
        clean = make_speech(0.6, seed=seed)
        save_audio(clean_dir / f"{name}.wav", clean, 16000, subtype="PCM_16")
        save_audio(noisy_dir / f"{name}{suffix}", clean + 0.05 * rng.standard_normal(clean.shape), 16000)
    code, _, err = enhance(capsys, noisy_dir, "-o", out_dir, *FAST, model=tiny_pipeline_dir)
    assert code == 0, err
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.*")) == ["a.aiff", "sub/b.oga"]

    report_file = tmp_path / "scores.json"
    code = main(
        [
            "evaluate",
            "--clean",
            str(clean_dir),
            "--enhanced",
            str(out_dir),
            "--noisy",
            str(noisy_dir),
            "--metrics",
            "si_sdr",
            "--no-progress",
            "--out",
            str(report_file),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(report_file.read_text())
    assert [row["file"] for row in report["files"]] == ["a", "sub/b"]
    assert report["unpaired"] == {"clean": [], "enhanced": [], "noisy": []}
    assert all(np.isfinite(row["si_sdr"]) and np.isfinite(row["noisy_si_sdr"]) for row in report["files"])
    assert "mean (2 files)" in out


# ---------------------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path, tiny_pipeline_dir, capsys):
    missing = tmp_path / "nowhere" / "missing.wav"
    code, _, err = enhance(capsys, missing, "-o", tmp_path / "out", *FAST, model=tiny_pipeline_dir)
    assert code == 1
    [line] = error_lines(err)
    assert str(missing) in line and "no such file" in line


def test_folder_without_audio(tmp_path, tiny_pipeline_dir, capsys):
    folder = tmp_path / "docs"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "readme.txt").write_text("no audio here")
    code, _, err = enhance(capsys, folder, "-o", tmp_path / "out", *FAST, model=tiny_pipeline_dir)
    assert code == 1
    [line] = error_lines(err)
    assert str(folder) in line and "no audio" in line
    assert not (tmp_path / "out").exists()


def test_corrupted_file_among_good_ones(tmp_path, tiny_pipeline_dir, make_speech, capsys):
    folder = tmp_path / "mixed"
    write(folder / "good_1.wav", make_speech(0.3, seed=1), 16000, "PCM_16")
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(200)))
    write(folder / "good_2.flac", make_speech(0.3, seed=2), 16000, "PCM_16")
    out_dir = tmp_path / "out"
    code, out, err = enhance(capsys, folder, "-o", out_dir, *FAST, model=tiny_pipeline_dir)
    assert code == 1
    [line] = error_lines(err)
    assert "broken.wav" in line and "cannot be read" in line
    assert sorted(p.name for p in out_dir.iterdir()) == ["good_1.wav", "good_2.flac"]
    assert (summary(out)["files"], summary(out)["failed"]) == (2, 1)


def test_nan_samples(tmp_path, tiny_pipeline_dir, make_speech, capsys):
    audio = make_speech(0.3)
    audio[0, 1000] = np.nan
    path = write(tmp_path / "nan.wav", audio, 16000, "FLOAT")
    code, _, err = enhance(capsys, path, "-o", tmp_path / "out", *FAST, model=tiny_pipeline_dir)
    assert code == 1
    [line] = error_lines(err)
    assert "nan.wav" in line and "NaN" in line
    assert not (tmp_path / "out" / "nan.wav").exists()


def test_model_folder_with_missing_weights(tree, tmp_path, tiny_pipeline_dir, capsys):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_pipeline_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    code, _, err = enhance(capsys, tree / "a.wav", "-o", tmp_path / "out", *FAST, model=broken)
    assert code == 1
    [line] = error_lines(err)
    assert "unet/diffusion_pytorch_model.safetensors" in line


def test_zero_steps(tree, tmp_path, tiny_pipeline_dir, capsys):
    code, _, err = enhance(capsys, tree / "a.wav", "-o", tmp_path / "out", "--steps", "0", model=tiny_pipeline_dir)
    assert code == 1
    [line] = error_lines(err)
    assert "--steps" in line and "0" in line


def test_without_a_model_the_random_pipeline_is_announced_once(tmp_path, make_speech, capsys, monkeypatch):
    monkeypatch.setattr("fuse_hf.hub.bundled_model_path", lambda: None)
    source = write(tmp_path / "in.wav", make_speech(0.3), 16000, "PCM_16")
    code = main(["enhance", str(source), "-o", str(tmp_path / "out"), *FAST])
    out, err = capsys.readouterr()
    assert code == 0, err
    [line] = [line for line in err.splitlines() if "WARNING" in line]
    assert line.startswith("fuse-hf: WARNING: no trained model") and "RANDOM" in line and "--model" in line
    assert summary(out)["files"] == 1


def test_pipeline_loader(tmp_path, tiny_pipeline_dir, monkeypatch):
    """`fuse_hf.hub.load_pipeline`, the loader of the CLI, the Space and the benchmarks: one-line errors."""
    from fuse_hf.hub import RandomWeightsWarning, load_pipeline

    pipe = load_pipeline(tiny_pipeline_dir, device="cpu")
    assert pipe.device.type == "cpu" and pipe._progress_bar_config.get("disable") is True
    with pytest.raises(ValueError, match="no such pipeline folder") as info:
        load_pipeline(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"^device cuda:99: not usable here \(.+\)\.$") as info:
        load_pipeline(tiny_pipeline_dir, device="cuda:99")
    assert "\n" not in str(info.value)

    monkeypatch.setattr("fuse_hf.hub.bundled_model_path", lambda: None)
    with pytest.raises(ValueError, match="no trained model is installed"):
        load_pipeline()
    with pytest.warns(RandomWeightsWarning, match="RANDOM weights"):
        assert load_pipeline(device="cpu", random_fallback=True).device.type == "cpu"


# --------------------------------------------------------------------------------- real processes


def test_console_script(tree, tmp_path, tiny_pipeline_dir):
    script = BIN / "fuse-hf"
    if not script.exists():
        pytest.skip("the fuse-hf console script is not installed next to this interpreter")
    out_dir = tmp_path / "out"
    result = subprocess.run(
        [
            str(script),
            "enhance",
            str(tree / "sub"),
            "-o",
            str(out_dir),
            "--model",
            str(tiny_pipeline_dir),
            "--steps",
            "1",
            "--seed",
            "3",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.*")) == ["b.flac", "deeper/c.wav"]
    assert summary(result.stdout)["files"] == 2
    assert "Traceback" not in result.stderr


def test_accelerate_launch_shares_files_between_two_cpu_processes(tmp_path, tiny_pipeline_dir, make_speech):
    """`accelerate launch -m fuse_hf enhance` with two CPU processes: each file is enhanced by exactly one.

    `--cpu` is not the flag for this: accelerate then starts a single process (multi-CPU needs mpirun). Without a
    GPU, `--multi_gpu` is accelerate's torchrun launcher; the CLI must still set up a 2-process gloo group.
    """
    launcher = BIN / "accelerate"
    if not launcher.exists():
        pytest.skip("accelerate is not installed next to this interpreter")
    folder = tmp_path / "corpus"
    names = [f"part{i % 2}/clip{i}.wav" for i in range(4)]
    for i, name in enumerate(names):
        write(folder / name, make_speech(0.3, seed=i), 16000, "PCM_16")
    out_dir = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "WORLD_SIZE", "RANK", "LOCAL_"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # no user config
    result = subprocess.run(
        [
            str(launcher),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            "-m",
            "fuse_hf",
            "enhance",
            str(folder),
            "-o",
            str(out_dir),
            "--model",
            str(tiny_pipeline_dir),
            "--steps",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = re.findall(r"\[process (\d+)\] (enhanced .*)", result.stdout)
    ranks = sorted(int(rank) for rank, _ in lines)
    assert ranks == [0, 1], f"expected one summary from each of 2 processes, got:\n{result.stdout}"
    counts = [summary(line)["files"] for _, line in lines]
    assert sum(counts) == len(names) and min(counts) >= 1, f"files were not shared out:\n{result.stdout}"
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.wav")) == sorted(names)


@pytest.mark.parametrize("command", ["enhance", "stream"])
def test_max_gain_db_takes_a_number_or_none(command, capsys):
    parser = build_parser()
    base = [command, "in.wav"] if command == "enhance" else [command]
    assert parser.parse_args(base).max_gain_db == 0.0
    assert parser.parse_args([*base, "--max-gain-db", "-3"]).max_gain_db == -3.0
    assert parser.parse_args([*base, "--max-gain-db", "None"]).max_gain_db is None
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--max-gain-db", "loud"])
    assert "expected a number of dB or 'none', got 'loud'" in capsys.readouterr().err
