"""The Gradio Space in spaces/fuse-demo/: its metadata, its API driven with `gradio_client`, and the page in a real
headless Chromium (Debian's `chromium`, driven by Playwright) with a screenshot."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "spaces" / "fuse-demo"
DEMO_FILE = ROOT / "fuse_hf" / "assets" / "noisy_speech.wav"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def app(tiny_pipeline_dir):
    """spaces/fuse-demo/app.py imported with the tiny test pipeline (FUSE_MODEL) and serving on a free port."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSE_MODEL", str(tiny_pipeline_dir))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        spec = importlib.util.spec_from_file_location("fuse_demo_app", SPACE / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _, url, _ = module.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
        module.url = url
        yield module
        module.demo.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def front_matter(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text().split("---")[1])


def test_space_files_and_metadata():
    import gradio

    meta = front_matter(SPACE / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert (SPACE / meta["app_file"]).is_file() and meta["models"]
    assert "fuse-hf" in (SPACE / "requirements.txt").read_text()


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
    monkeypatch.setattr(app, "bundled_model_path", lambda: None)
    _, name, warning = app.load_model()
    assert "RANDOM" in name and "random weights" in warning
    monkeypatch.setattr(app, "MODEL_WARNING", warning)
    demo = app.build_demo()
    texts = [getattr(block, "value", "") or "" for block in demo.blocks.values()]
    assert any("random weights" in str(text) and "Warning" in str(text) for text in texts)


# --------------------------------------------------------------------------------------------- browser


def _ensure_browser() -> str:
    """Playwright (pip) and Debian's chromium (apt, as root); returns the reason to skip, or ''."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright"], capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            return f"cannot pip install playwright: {result.stderr.strip().splitlines()[-1:]}"
    if not os.access(CHROMIUM, os.X_OK):
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            return f"{CHROMIUM} is missing and apt-get cannot run here (needs root on Debian/Ubuntu)"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, env=env, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=300)
            result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
            if result.returncode != 0:
                return f"apt-get install chromium failed: {result.stderr.strip().splitlines()[-1:]}"
    return ""


def test_page_in_headless_chromium(app, tmp_path):
    reason = _ensure_browser()
    if reason:
        pytest.skip(reason)
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
            docs = ROOT / "docs" / "space_screenshot.png"
            if not docs.exists():  # once, for the README; delete it to refresh
                docs.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, docs)
        finally:
            browser.close()
