"""The Gradio Space in spaces/fuse-demo/: its metadata, its API driven with `gradio_client`, and the page in a real
headless Chromium (Debian's `chromium`, driven by Playwright) with a screenshot.

The tests install nothing: `make browser` (run by `make test`) installs chromium; without it the browser test skips.
"""

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "spaces" / "fuse-demo"
DEMO_FILE = ROOT / "fuse_hf" / "assets" / "noisy_speech.wav"
CHROMIUM = shutil.which(os.environ.get("CHROMIUM", "chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def app(tiny_pipeline_dir, tmp_path_factory):
    """spaces/fuse-demo/app.py imported with the tiny test pipeline (FUSE_MODEL) and serving on a free port; Gradio
    keeps its uploads and outputs in a temporary folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSE_MODEL", str(tiny_pipeline_dir))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        spec = importlib.util.spec_from_file_location("fuse_demo_app", SPACE / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # Not port 0: Gradio builds its URL from the number it is given. A port the OS has just handed out instead.
        _, url, _ = module.launch(
            server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
        )
        module.url = url
        yield module
        module.demo.close()


@pytest.fixture(scope="module")
def client(app, tmp_path_factory):
    from gradio_client import Client

    return Client(app.url, verbose=False, download_files=str(tmp_path_factory.mktemp("gradio-client")))


def front_matter(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text().split("---")[1])


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a pip requirements file (comments and `--option` lines left out)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def declared_requirement(name: str, extra: str) -> Requirement:
    """The requirement on `name` that fuse-hf's `extra` declares (from the installed package metadata)."""
    for line in importlib.metadata.requires("fuse-hf") or []:
        requirement = Requirement(line)
        if requirement.name == name and requirement.marker and requirement.marker.evaluate({"extra": extra}):
            return requirement
    raise AssertionError(f"fuse-hf[{extra}] declares no {name} requirement")


def test_space_files_and_metadata():
    meta = front_matter(SPACE / "README.md")
    assert meta["sdk"] == "gradio"
    assert (SPACE / meta["app_file"]).is_file() and meta["models"]
    # The Space's image installs gradio==sdk_version and Python python_version, then requirements.txt, i.e.
    # fuse-hf[space]: both pins must be releases inside the ranges fuse-hf declares for them.
    assert any(r.name == "fuse-hf" and "space" in r.extras for r in requirements(SPACE / "requirements.txt"))
    sdk_version = Version(str(meta["sdk_version"]))  # InvalidVersion for a malformed one
    gradio = declared_requirement("gradio", "space")
    assert gradio.specifier.contains(sdk_version), f"sdk_version {sdk_version} is outside fuse-hf's {gradio}"
    python = Version(str(meta["python_version"]))
    assert python in SpecifierSet(importlib.metadata.metadata("fuse-hf")["Requires-Python"])


def test_client_gets_int16_audio_of_the_same_length_and_rate(client, make_speech, tmp_path):
    noisy = make_speech(0.7, 44100, channels=2)
    path = tmp_path / "noisy.wav"
    sf.write(path, noisy.T, 44100)
    from gradio_client import handle_file

    audio_path, figure = client.predict(handle_file(str(path)), 2, 0, api_name="/enhance")
    info = sf.info(audio_path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 2, noisy.shape[1], "PCM_16")
    enhanced, _ = sf.read(audio_path, dtype="float32")
    assert np.isfinite(enhanced).all() and np.abs(enhanced).max() > 0
    assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_client_sees_clear_errors_for_bad_or_too_long_input(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    long_file = tmp_path / "long.wav"
    sf.write(long_file, np.zeros(61 * 8000, np.float32), 8000)  # 61 s
    with pytest.raises(AppError, match=r"61\.0 s long; this demo takes at most 60 s"):
        client.predict(handle_file(str(long_file)), 2, 0, api_name="/enhance")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF this is not audio")
    with pytest.raises(AppError, match="Cannot use this file"):
        client.predict(handle_file(str(broken)), 2, 0, api_name="/enhance")
    with pytest.raises(AppError, match="No audio"):
        client.predict(None, 2, 0, api_name="/enhance")


def test_random_weights_are_announced_on_the_page(app, monkeypatch):
    monkeypatch.delenv("FUSE_MODEL")
    monkeypatch.setattr("fuse_hf.hub.bundled_model_path", lambda: None)
    _, name, warning = app.load_model()
    assert "RANDOM" in name and "random weights" in warning
    monkeypatch.setattr(app, "MODEL_WARNING", warning)
    demo = app.build_demo()
    texts = [getattr(block, "value", "") or "" for block in demo.blocks.values()]
    assert any("random weights" in str(text) and "Warning" in str(text) for text in texts)


# --------------------------------------------------------------------------------------------- browser


def browser_missing() -> str:
    """Why the browser test cannot run here, or '' when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (it is in the test extra: make install-test)"
    if CHROMIUM is None:
        return "chromium is not installed (make browser installs Debian's chromium, as root)"
    return ""


BROWSER_MISSING = browser_missing()


@pytest.mark.skipif(bool(BROWSER_MISSING), reason=BROWSER_MISSING)
def test_page_in_headless_chromium(app, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app.url, wait_until="domcontentloaded")
            page.wait_for_selector("#enhance-button", timeout=30_000)
            page.locator("#noisy-audio input[type=file]").set_input_files(str(DEMO_FILE))
            page.wait_for_selector("#noisy-audio audio", state="attached", timeout=15_000)
            steps = page.locator("#steps-slider input[type=number]")
            steps.fill("2")
            steps.press("Enter")
            page.click("#enhance-button")

            # The result: an audio player whose download link serves a WAV as long as the input.
            page.wait_for_selector("#enhanced-audio a[download]", timeout=60_000)
            assert page.locator("#enhanced-audio audio").count() >= 1  # the player (wavesurfer adds its own)
            href = page.locator("#enhanced-audio a[download]").first.get_attribute("href")
            response = page.request.get(href)
            assert response.ok
            (tmp_path / "enhanced.wav").write_bytes(response.body())
            info, demo = sf.info(tmp_path / "enhanced.wav"), sf.info(DEMO_FILE)
            assert (info.frames, info.samplerate, info.subtype) == (demo.frames, demo.samplerate, "PCM_16")
            page.wait_for_selector("#spectrograms img", timeout=20_000)
            page.wait_for_function("() => document.querySelector('#spectrograms img').complete")
            assert not page.locator("#model-warning").count()  # a model was given: no random-weights banner

            shot = tmp_path / "space.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:4] == b"\x89PNG"
            if os.environ.get("FUSE_HF_SPACE_SCREENSHOT"):  # `make space-screenshot`: the README's picture
                shutil.copyfile(shot, os.environ["FUSE_HF_SPACE_SCREENSHOT"])
        finally:
            browser.close()
