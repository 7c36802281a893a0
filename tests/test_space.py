"""The Gradio Space in spaces/fuse-demo/: its metadata, its API driven with `gradio_client`, the Live tab's handlers
called as Gradio calls them, and the page in a real headless Chromium (Debian's `chromium`, driven by Playwright,
with a fake microphone for the Live tab) with a screenshot.

The tests install nothing: `make browser` (run by `make test`) installs chromium; without it the browser test skips.
"""

import importlib.metadata
import importlib.util
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
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
    # Gradio encodes the Live tab's streamed output with ffmpeg: the Space installs it from packages.txt (Debian).
    assert "ffmpeg" in (SPACE / "packages.txt").read_text().split()


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


# --------------------------------------------------------------------------------------------- live tab


def microphone(pcm: np.ndarray, rate: int, seconds: float = 0.5):
    """What Gradio's streaming microphone hands `.stream` every `seconds`: `(rate, int16 (samples,))`."""
    size = int(rate * seconds)
    return [(rate, pcm[start : start + size]) for start in range(0, pcm.size, size)]


def played(app, session) -> tuple[np.ndarray, int]:
    """Everything the Live tab's player generator streams for a session: its WAV chunks decoded and joined."""
    decoded = [sf.read(io.BytesIO(data), dtype="float32") for data in app.live_output(session, poll_seconds=0.01)]
    assert decoded and len({rate for _, rate in decoded}) == 1
    return np.concatenate([audio for audio, _ in decoded]), decoded[0][1]


@pytest.mark.parametrize("rate", [48000, 16000])
def test_live_handlers_play_what_the_stream_gives(app, make_speech, rate, monkeypatch):
    """Half-second int16 chunks in, then stop: the player's WAV chunks put together equal `PIPE.stream` on the same
    float samples, settings and seed (up to 16-bit rounding) and are as long as the input. A second recording
    starts fresh (the same output again), and one whose browser goes quiet is finished by the player itself."""
    pcm = np.round(make_speech(1.6, rate, seed=12)[0] * 32767).astype(np.int16)
    session, _ = app.live_start(app.LIVE_DEFAULT_STEPS, app.LIVE_DEFAULT_WINDOW, None)
    for chunk in microphone(pcm, rate):
        assert app.live_chunk(chunk, session) is session
    session, status = app.live_stop(session)
    live, live_rate = played(app, session)
    assert live_rate == rate and live.shape == pcm.shape
    assert re.search(rf"Enhanced 1\.6 s at {rate} Hz in [\d.]+ s of compute", status), status

    expected = app.PIPE.stream(
        [pcm.astype(np.float32) / 32768],
        rate,
        num_inference_steps=app.LIVE_DEFAULT_STEPS,
        window_seconds=app.LIVE_DEFAULT_WINDOW,
        generator=torch.Generator().manual_seed(app.LIVE_SEED),
    )
    np.testing.assert_allclose(live, np.concatenate(list(expected)), rtol=0, atol=2 / 32767)
    assert app.live_chunk(microphone(pcm, rate)[0], session) is session and not session.ready  # late tick: dropped

    monkeypatch.setattr(app, "LIVE_IDLE_SECONDS", 0.0)  # no stop: the player finishes a session gone quiet
    again, _ = app.live_start(app.LIVE_DEFAULT_STEPS, app.LIVE_DEFAULT_WINDOW, session)
    assert again is not session and again.stream is None
    for chunk in microphone(pcm, rate):
        app.live_chunk(chunk, again)
    np.testing.assert_array_equal(played(app, again)[0], live)
    assert again.done


def test_live_stop_without_audio_and_latency_line(app):
    session, _ = app.live_start(1, 1.0, None)
    session, status = app.live_stop(session)
    assert status == "No audio was recorded." and session.done and list(app.live_output(session)) == []
    assert app.live_stop(None) == (None, "") and app.live_chunk(None, None) is None
    assert re.search(r"about one window \(0\.\d\d s with 0\.5 s windows\)", app.live_latency(0.5))
    with pytest.raises(Exception, match="16-bit"):  # gr.Error
        app.mic_to_float(np.zeros(10, np.float32))


def test_live_tab_is_built_first_with_a_streaming_microphone(app):
    """The layout the live wiring needs (see app.py): Live is the tab shown at load, its microphone streams every
    0.5 s into `live_chunk`, and a streaming, autoplaying player gets `live_output`."""
    config = app.demo.get_config_file()
    components = {component["id"]: component for component in config["components"]}
    by_elem_id = {c["props"].get("elem_id"): c for c in components.values() if c["props"].get("elem_id")}
    mic, out = by_elem_id["live-mic"]["props"], by_elem_id["live-enhanced"]["props"]
    assert mic["streaming"] and mic["sources"] == ["microphone"]
    assert out["streaming"] and out["autoplay"] and out["interactive"] is False
    tabs = [c["props"]["label"] for c in components.values() if c["type"] == "tabitem"]
    assert tabs == ["Live (microphone)", "File"]
    mic_id = by_elem_id["live-mic"]["id"]
    triggers = {event: dep for dep in config["dependencies"] for target, event in dep["targets"] if target == mic_id}
    assert set(triggers) >= {"start_recording", "stream", "stop_recording"}
    assert triggers["stream"]["stream_every"] == app.LIVE_CHUNK_SECONDS
    assert triggers["stream"]["time_limit"] == app.LIVE_TIME_LIMIT


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
            page.wait_for_selector("#live-mic", timeout=30_000)  # the tab shown at load
            page.get_by_role("tab", name="File").click()
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


# Every media event of the Live tab's player, as [ms, event, src tail, currentTime, duration].
PLAYER_EVENTS = """
window.playerEvents = [];
for (const type of ['loadstart', 'emptied', 'playing', 'waiting', 'ended']) {
  document.addEventListener(type, (event) => {
    const audio = event.target;
    if (audio.tagName === 'AUDIO' && audio.closest('#live-enhanced'))
      window.playerEvents.push([performance.now(), type, audio.src.slice(-8), audio.currentTime, audio.duration || 0]);
  }, true);
}
"""


@pytest.mark.skipif(bool(BROWSER_MISSING), reason=BROWSER_MISSING)
def test_live_tab_in_headless_chromium(app, make_speech, tmp_path, monkeypatch):
    """Chromium's fake microphone plays a file into the Live tab for about 3 s: the server gets it in 0.5 s chunks
    (not Gradio's 0.1 s pieces of a tab mounted late, which arrive out of order or not at all), and one player plays
    all of the enhanced audio, to the end, without reloading."""
    from playwright.sync_api import sync_playwright

    source = tmp_path / "microphone.wav"
    sf.write(source, make_speech(20.0, 48000, seed=13)[0], 48000, subtype="PCM_16")
    sizes = []
    mic_to_float = app.mic_to_float
    monkeypatch.setattr(app, "mic_to_float", lambda pcm: sizes.append(pcm.shape[0]) or mic_to_float(pcm))
    fake_microphone = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={source}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + fake_microphone)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(PLAYER_EVENTS)
            page.goto(app.url, wait_until="domcontentloaded")
            page.wait_for_selector("#live-mic", timeout=30_000)
            assert "one window" in page.inner_text("#live-latency")
            page.locator("#live-mic button", has_text="Record").click()
            page.wait_for_timeout(3000)
            page.locator("#live-mic button", has_text="Stop").click()
            page.wait_for_function("() => window.playerEvents.some((e) => e[1] === 'ended')", timeout=90_000)
            status = page.inner_text("#live-status")
            events = page.evaluate("() => window.playerEvents")
        finally:
            browser.close()
    match = re.search(r"Enhanced (\d+\.\d) s at 48000 Hz", status)
    assert match, status
    assert len(sizes) >= 3 and set(sizes[:-1]) == {24000}, sizes  # 0.5 s at 48 kHz, the last one may be shorter
    assert float(match.group(1)) == pytest.approx(sum(sizes) / 48000, abs=0.05)
    assert len({src for _, _, src, _, _ in events}) == 1, events  # one stream for the whole recording
    ended = [duration for _, kind, _, _, duration in events if kind == "ended"]
    assert ended[0] == pytest.approx(sum(sizes) / 48000, abs=0.15), events  # all of it (AAC adds a frame or two)
