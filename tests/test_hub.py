"""Sharing through the Hub, against a Hub look-alike on 127.0.0.1 (tests/hub_server.py) driven by the real
`huggingface_hub` client: push with a model card, load by repo id (revision, cache, offline, token), and load as
Hub remote code in a process where `fuse_hf` cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fuse_hf import FUSEPipeline
from fuse_hf.remote_code import check_remote_code

sys.path.insert(0, str(Path(__file__).parent))
from conftest import free_port  # noqa: E402
from hub_server import WRITE_TOKEN, FakeHub  # noqa: E402

SECONDS, STEPS = 0.4, 2  # one window of the test pipelines: identity checks, not chunking (test_pipeline)


def enhance(pipe, audio):
    return pipe(
        audio, sampling_rate=16000, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0)
    ).audios


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The fake Hub, with `huggingface_hub` pointed at it and at an empty HF_HOME.

    `huggingface_hub` reads HF_ENDPOINT and HF_HOME when it is imported (the other test modules have imported it
    by now), so the module-level copies are patched too; subprocesses get the environment variables.
    """
    from huggingface_hub import constants

    home = tmp_path_factory.mktemp("hf-home")
    with FakeHub() as server, pytest.MonkeyPatch.context() as mp:
        env = {
            "HF_ENDPOINT": server.url,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "FUSE_HF_CACHE": str(home / "fuse_hf"),
        }
        for key, value in env.items():
            mp.setenv(key, value)
        for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
            mp.delenv(key, raising=False)
        point_at(mp, server.url)
        mp.setattr(constants, "HF_HOME", str(home))
        mp.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        mp.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        mp.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        server.home = home
        yield server


def point_at(mp, endpoint):
    from huggingface_hub import constants, hf_api

    mp.setattr(constants, "ENDPOINT", endpoint)
    mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    mp.setattr(hf_api.api, "endpoint", endpoint)


@pytest.fixture(scope="module")
def pushed(hub, tiny_pipeline, make_speech_module):
    """`tester/fuse-tiny` pushed once with `FUSEPipeline.push_to_hub`, with the reference output of that pipeline."""
    metrics = {"pesq": 2.51, "estoi": 0.81, "si_sdr": 14.2, "dnsmos_sig": 3.4, "dnsmos_bak": 3.9, "dnsmos_ovrl": 3.1}
    url = tiny_pipeline.push_to_hub(
        "tester/fuse-tiny",
        token=WRITE_TOKEN,
        metrics=metrics,
        datasets=["tester/noisy-speech"],
        commit_message="Add the tiny test pipeline",
    )
    audio = make_speech_module(SECONDS)[0]
    return {
        "url": url,
        "repo": "tester/fuse-tiny",
        "revision": url.rsplit("/", 1)[-1],
        "audio": audio,
        "reference": enhance(tiny_pipeline, audio),
        "metrics": metrics,
    }


@pytest.fixture(scope="module")
def make_speech_module():
    from conftest import speech_like

    return speech_like


def files_of(repo, revision="main"):
    from huggingface_hub import HfApi

    return {s.rfilename for s in HfApi(token=WRITE_TOKEN).model_info(repo, revision=revision).siblings}


# ------------------------------------------------------------------------------------------------ push


def test_push_uploads_pipeline_card_and_remote_code(pushed):
    assert "/tester/fuse-tiny/commit/" in pushed["url"]
    files = files_of(pushed["repo"])
    assert {
        "README.md",
        "model_index.json",
        "pipeline_fuse.py",
        "audio.py",
        "vae/autoencoder_spectral.py",
        "conditioner/modeling_beats.py",
        "conditioner/model.safetensors",
        "feature_extractor/feature_extraction_beats.py",
        "feature_extractor/preprocessor_config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "unet/config.json",
        "scheduler/scheduler_config.json",
    } <= files
    assert not any(f.endswith(".bin") for f in files)


def test_pipeline_push_to_hub_commits_once_and_refuses_pickles(hub, pushed, tiny_pipeline):
    """`FUSEPipeline.push_to_hub` (diffusers' signature) makes one commit with the caller's message after the Hub's
    initial one, and refuses `safe_serialization=False` before it creates or uploads anything."""
    commits = hub.state.repos[pushed["repo"]].commits
    assert [c.title for c in commits[:2]] == ["initial commit", "Add the tiny test pipeline"]
    assert commits[1].sha == pushed["revision"]
    with pytest.raises(ValueError, match="safe_serialization=False"):
        tiny_pipeline.push_to_hub("tester/fuse-pickled", token=WRITE_TOKEN, safe_serialization=False)
    assert "tester/fuse-pickled" not in hub.state.repos


def test_round_trip_by_repo_id_into_an_empty_cache(pushed, tmp_path):
    loaded = FUSEPipeline.from_pretrained(pushed["repo"], cache_dir=tmp_path / "cache")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.vae).__module__ == "fuse_hf.models.autoencoder_spectral"  # installed classes, not the upload
    np.testing.assert_array_equal(enhance(loaded, pushed["audio"]), pushed["reference"])


def test_model_card_metadata_validates_and_keeps_the_results(pushed, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData, hf_hub_download
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(hf_hub_download(pushed["repo"], "README.md", cache_dir=tmp_path))
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "audio-to-audio" and data["library_name"] == "fuse-hf"
    assert data["license"] == "apache-2.0" and "speech-enhancement" in data["tags"]
    assert data["datasets"] == ["tester/noisy-speech"]
    ModelCardData(**data, ignore_metadata_errors=False)  # strict re-parse of the metadata
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "fuse-tiny"
    scores = {r.metric_name: r.metric_value for r in results}
    assert scores == {
        "PESQ-WB": 2.51,
        "ESTOI": 0.81,
        "SI-SDR (dB)": 14.2,
        "DNSMOS SIG": 3.4,
        "DNSMOS BAK": 3.9,
        "DNSMOS OVRL": 3.1,
    }
    assert {r.task_type for r in results} == {"audio-to-audio"}
    text = card.text
    for snippet in (
        'FUSEPipeline.from_pretrained("tester/fuse-tiny")',
        "fuse-hf enhance noisy/ --model tester/fuse-tiny",
        'DiffusionPipeline.from_pretrained("tester/fuse-tiny", trust_remote_code=True)',
        "accelerate launch train.py",
    ):
        assert snippet in text


def test_cli_push_revisions_offline_and_private(hub, pushed, tmp_path, monkeypatch, capsys):
    """`fuse-hf push` of another pipeline to the same repo; `revision` still gets the first; the cache serves both
    offline; a private repo needs the token."""
    from huggingface_hub import HfApi, constants

    from fuse_hf.commands import main
    from fuse_hf.factory import make_pipeline
    from fuse_hf.hub import resolve_pipeline_folder

    first = pushed["revision"]
    assert HfApi().model_info(pushed["repo"]).sha == first
    other = make_pipeline(latent_frames=16, seed=1)
    other.set_progress_bar_config(disable=True)
    folder = tmp_path / "other"
    other.save_pretrained(folder)
    (tmp_path / "results.json").write_text(json.dumps({"mean": {"pesq": 1.5, "si_sdr": 3.0}, "files": []}))
    assert (
        main(["push", str(folder), pushed["repo"], "--token", WRITE_TOKEN, "--metrics", str(tmp_path / "results.json")])
        == 0
    )
    assert "pushed" in capsys.readouterr().out

    cache = tmp_path / "cache"
    latest = FUSEPipeline.from_pretrained(pushed["repo"], cache_dir=cache)
    old = FUSEPipeline.from_pretrained(pushed["repo"], cache_dir=cache, revision=first)
    for pipe in (latest, old):
        pipe.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(enhance(old, pushed["audio"]), pushed["reference"])
    latest_out = enhance(latest, pushed["audio"])
    np.testing.assert_array_equal(latest_out, enhance(other, pushed["audio"]))

    # Offline: nothing answers at the endpoint any more (a port just freed, so nothing listens there).
    point_at(monkeypatch, f"http://127.0.0.1:{free_port()}")
    cached = FUSEPipeline.from_pretrained(pushed["repo"], cache_dir=cache, local_files_only=True)
    cached.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(enhance(cached, pushed["audio"]), latest_out)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_pipeline_folder(pushed["repo"], cache_dir=cache, revision=first).is_dir()
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        resolve_pipeline_folder("tester/never-pushed", cache_dir=cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    point_at(monkeypatch, hub.url)

    # Private: invisible without the token.
    assert main(["push", str(folder), "tester/fuse-private", "--private", "--token", WRITE_TOKEN]) == 0
    with pytest.raises(ValueError, match="tester/fuse-private"):
        FUSEPipeline.from_pretrained("tester/fuse-private", cache_dir=tmp_path / "c2")
    assert FUSEPipeline.from_pretrained("tester/fuse-private", cache_dir=tmp_path / "c2", token=WRITE_TOKEN)


def test_cli_push_reports_errors_in_one_line(hub, tmp_path, capsys, tiny_pipeline_dir):
    from fuse_hf.commands import main

    assert main(["push", str(tmp_path), "tester/x", "--token", WRITE_TOKEN]) == 1
    assert "missing model_index.json" in capsys.readouterr().err
    assert main(["push", str(tiny_pipeline_dir), "tester/x"]) == 1  # no token
    err = capsys.readouterr().err
    assert "pushing to the Hub failed" in err and "hf auth login" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------- remote code


def test_folder_loads_with_installed_classes_never_the_uploaded_code(tiny_pipeline_dir, tmp_path, make_speech):
    """A pushed layout loads with fuse_hf's classes: the uploaded files are never imported (here they would raise)."""
    from fuse_hf.hub import stage_pipeline_folder

    folder = stage_pipeline_folder(tiny_pipeline_dir, tmp_path / "staged", "tester/fuse-tiny")
    report = check_remote_code(folder)
    # Component folders hold one self-contained file each: diffusers downloads nothing else from a model folder.
    assert {
        "pipeline_fuse.py",
        "audio.py",
        "vae/autoencoder_spectral.py",
        "conditioner/modeling_beats.py",
        "feature_extractor/feature_extraction_beats.py",
    } <= set(report)
    assert {path.parent.name for path in folder.glob("*/*.py")} == {"vae", "conditioner", "feature_extractor"}
    assert len(list(folder.glob("*/*.py"))) == 3
    for packages in report.values():
        assert not {p for p in packages if p not in sys.stdlib_module_names} - {
            "torch",
            "numpy",
            "diffusers",
            "transformers",
            "soundfile",
            "soxr",
        }
    for path in folder.rglob("*.py"):
        path.write_text("raise RuntimeError('uploaded code ran')\n")
    pipe = FUSEPipeline.from_pretrained(folder)
    assert type(pipe).__module__ == "fuse_hf.pipelines.pipeline_fuse"


def test_export_refuses_imports_beyond_torch_numpy_diffusers_transformers(tiny_pipeline_dir, tmp_path):
    from fuse_hf.hub import stage_pipeline_folder

    folder = stage_pipeline_folder(tiny_pipeline_dir, tmp_path / "staged", "tester/x")
    beats, pipeline = folder / "conditioner" / "modeling_beats.py", folder / "pipeline_fuse.py"
    for path, bad, reason in [
        (beats, "import fuse_hf.audio\n", "fuse_hf.audio"),
        (beats, "import scipy.signal\n", "scipy.signal"),
        (beats, "from .audio import stft\n", "self-contained"),
        (pipeline, "from ..audio import stft\n", "not a sibling"),
        (pipeline, "from .missing import x\n", "not uploaded"),
    ]:
        original = path.read_text()
        path.write_text("import transformers.utils\n" + original)
        check_remote_code(folder)  # transformers is allowed: the conditioner is a transformers model
        path.write_text(bad + original)
        with pytest.raises(ValueError, match=reason):
            check_remote_code(folder)
        path.write_text(original)
    config_file = folder / "conditioner" / "config.json"
    config = json.loads(config_file.read_text())
    config["auto_map"]["AutoModel"] = "modeling_other.BEATsModel"
    config_file.unlink()  # a link to the saved folder's file: replace it, never write through
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="auto_map names AutoModel in modeling_other.py, which is not uploaded"):
        check_remote_code(folder)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    # Hide fuse_hf, and the optional soundfile/soxr, as on a machine with only torch, numpy, diffusers and transformers.
    for name in ("fuse_hf", "soundfile", "soxr"):
        sys.modules[name] = None
    sys.path[:] = [p for p in sys.path if p and p.rstrip('/') != sys.argv[3]]  # the source checkout
    try:
        import fuse_hf
    except ImportError:
        pass
    else:
        raise SystemExit("fuse_hf is importable")
    import numpy as np, torch
    from diffusers import DiffusionPipeline

    repo, revision = sys.argv[1].split("@")
    try:
        DiffusionPipeline.from_pretrained(repo, revision=revision)
    except ValueError as err:
        assert "trust_remote_code=True" in str(err), err
    else:
        raise SystemExit("loaded remote code without trust_remote_code=True")
    pipe = DiffusionPipeline.from_pretrained(repo, revision=revision, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "FUSEPipeline" and type(pipe).__module__.startswith("diffusers_modules.")
    audio = np.load(sys.argv[2])
    out = pipe(audio, sampling_rate=16000, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0)).audios

    # The conditioner is a transformers model of its own too: its auto_map names the file next to it (transformers
    # looks for remote code at a repo's root, whatever `subfolder` says, hence the downloaded folders).
    from huggingface_hub import snapshot_download
    from transformers import AutoFeatureExtractor, AutoModel
    snapshot = snapshot_download(repo, revision=revision, allow_patterns=["conditioner/*", "feature_extractor/*"])
    conditioner = AutoModel.from_pretrained(snapshot + "/conditioner", trust_remote_code=True)
    extractor = AutoFeatureExtractor.from_pretrained(snapshot + "/feature_extractor", trust_remote_code=True)
    assert type(conditioner).__module__.startswith("transformers_modules."), type(conditioner).__module__
    wave = torch.from_numpy(np.asarray(audio, np.float32).reshape(1, -1))
    with torch.no_grad():
        alone = conditioner(**extractor(wave, sampling_rate=16000, return_tensors="pt")).last_hidden_state
        assert torch.equal(alone, pipe.conditioner(wave).last_hidden_state)
    np.save(sys.argv[2], out)
    """
).replace("STEPS", str(STEPS))


def test_remote_code_loads_without_fuse_hf(hub, pushed, tmp_path):
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT)
    np.save(tmp_path / "audio.npy", pushed["audio"])
    repo_root = str(Path(__file__).resolve().parent.parent)
    # Same thread count as this process: float sums depend on it, and the comparison below is to 1e-6.
    target = f"{pushed['repo']}@{pushed['revision']}"  # the repo's first commit: a later test pushes another model
    run_isolated(script, target, tmp_path / "audio.npy", repo_root, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "audio.npy"), pushed["reference"], atol=1e-6)


def run_isolated(script: Path, target: str, audio: Path, repo_root: str, cwd: Path) -> None:
    """Runs `script TARGET AUDIO REPO_ROOT` in a fresh interpreter (`-I`, an empty HF_HOME, no PYTHONPATH) with the
    same thread count as this process: float sums depend on it, and the comparisons are to 1e-6."""
    env = {
        **os.environ,
        "HF_HOME": str(cwd / "fresh-home"),
        "PYTHONPATH": "",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    result = subprocess.run(
        [sys.executable, "-I", str(script), target, str(audio), repo_root],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]


LOCAL_REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    for name in ("fuse_hf", "soundfile", "soxr"):
        sys.modules[name] = None
    sys.path[:] = [p for p in sys.path if p and p.rstrip('/') != sys.argv[3]]  # the source checkout
    import numpy as np, torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.token_projection).__name__ == "TokenGridProjection", type(pipe.token_projection)
    audio = np.load(sys.argv[2])
    out = pipe(audio, sampling_rate=16000, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).audios
    np.save(sys.argv[2], out)
    """
)


def test_a_token_projection_travels_as_remote_code(tmp_path, make_speech):
    """A pipeline with a `TokenGridProjection` exports it as `token_projection/token_projection.py`, and the staged
    folder loads and enhances with diffusers alone (fuse_hf hidden), as the installed classes do."""
    from fuse_hf.factory import make_pipeline
    from fuse_hf.hub import stage_pipeline_folder

    pipe = make_pipeline(latent_frames=16, seed=0, token_projection={"hidden_dim": 8, "out_channels": 4})
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "saved")
    folder = stage_pipeline_folder(tmp_path / "saved", tmp_path / "staged", "tester/fuse-grid")
    report = check_remote_code(folder)
    assert "token_projection/token_projection.py" in report
    assert set(report["token_projection/token_projection.py"]) - set(sys.stdlib_module_names) <= {"torch", "diffusers"}
    audio = make_speech(0.8, seed=1)[0]
    np.save(tmp_path / "audio.npy", audio)
    (tmp_path / "remote.py").write_text(LOCAL_REMOTE_SCRIPT)
    repo_root = str(Path(__file__).resolve().parent.parent)
    run_isolated(tmp_path / "remote.py", str(folder), tmp_path / "audio.npy", repo_root, cwd=tmp_path)
    reference = pipe(audio, sampling_rate=16000, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.load(tmp_path / "audio.npy"), reference.audios, atol=1e-6)
