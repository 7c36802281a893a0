"""The ONNX Runtime back end with a tiny random model: export, checks against torch, loading, the CLI, errors."""

import json
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fuse_hf import FUSEPipeline  # noqa: E402
from fuse_hf.commands import main  # noqa: E402
from fuse_hf.pipelines.onnx_backend import (  # noqa: E402
    GRAPHS,
    SPINNING_KEY,
    STATIC_INT8_GRAPHS,
    ONNXUNet,
    has_onnx_graphs,
    onnx_cache_dir,
    resolve_backend,
    snr_db,
    uses_onnx,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tracing and checking tiny graphs gains nothing from a second thread, and loses much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(pipe, audio, seed=0, **kwargs):
    return pipe(audio, sampling_rate=16000, generator=torch.Generator().manual_seed(seed), **kwargs).audios


@pytest.fixture(scope="module")
def exported(tiny_pipeline, tmp_path_factory):
    """`(folder, SNRs)` of the tiny pipeline exported in fp32."""
    folder = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    return folder, tiny_pipeline.export_onnx(folder)


@pytest.fixture(scope="module")
def onnx_pipeline(exported):
    pipe = FUSEPipeline.from_pretrained(exported[0])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_export_writes_graphs_beside_a_loadable_pipeline_folder(exported):
    folder, snrs = exported
    assert set(snrs) == set(GRAPHS) and all(snr >= 40 for snr in snrs.values()), snrs
    for name in GRAPHS:
        assert (folder / "onnx" / f"{name}.onnx").is_file()
    config = json.loads((folder / "onnx" / "config.json").read_text())
    assert config["opset"] >= 17 and config["quantize"] is None
    assert {name: entry["snr_db"] for name, entry in config["graphs"].items()} == pytest.approx(snrs, abs=0.01)
    for name in ("model_index.json", "scheduler/scheduler_config.json", "vae/config.json", "unet/config.json"):
        assert (folder / name).is_file()


def test_sessions_take_torchs_threads_and_do_not_spin(onnx_pipeline):
    sessions = {**onnx_pipeline.vae.sessions, **onnx_pipeline.unet.sessions, **onnx_pipeline.conditioner.sessions}
    assert set(sessions) == set(GRAPHS)
    for session in sessions.values():
        options = session.get_session_options()
        assert options.intra_op_num_threads == torch.get_num_threads() == 1  # the module's `one_thread`
        assert options.get_session_config_entry(SPINNING_KEY) == "0"


def test_onnx_backend_matches_torch_on_the_same_seed(tiny_pipeline, onnx_pipeline, make_speech):
    assert uses_onnx(onnx_pipeline) and isinstance(onnx_pipeline.unet, ONNXUNet)
    assert not uses_onnx(tiny_pipeline)
    audio = make_speech(1.3)[0]  # several overlapping windows, one batch of the UNet and a second, shorter one
    reference = run(tiny_pipeline, audio, num_inference_steps=2, batch_size=2)
    out = run(onnx_pipeline, audio, num_inference_steps=2, batch_size=2)
    assert out.shape == reference.shape and out.dtype == np.float32
    assert snr_db(reference, out) >= 40
    # Classifier-free guidance doubles the UNet batch: the graph's batch axis is dynamic.
    guided = run(onnx_pipeline, audio, num_inference_steps=1, guidance_scale=2.0)
    assert snr_db(run(tiny_pipeline, audio, num_inference_steps=1, guidance_scale=2.0), guided) >= 40


def test_stream_runs_on_the_onnx_backend(onnx_pipeline, make_speech):
    audio = make_speech(1.0)[0]
    window_seconds = onnx_pipeline._window_geometry()[0] / 16000  # a stream's default; `__call__` fits its own
    whole = run(onnx_pipeline, audio, num_inference_steps=1, batch_size=1, window_seconds=window_seconds)
    chunks = [audio[i : i + 4000] for i in range(0, audio.size, 4000)]
    generator = torch.Generator().manual_seed(0)
    streamed = np.concatenate(
        list(onnx_pipeline.stream(chunks, sampling_rate=16000, num_inference_steps=1, generator=generator))
    )
    assert streamed.shape == whole.shape
    assert snr_db(whole, streamed) >= 40


def test_full_band_runs_on_the_onnx_backend(tiny_pipeline, onnx_pipeline, make_speech):
    # 48 kHz stereo: the band above 8 kHz is carried over by the same post-processing on either back end.
    audio = make_speech(0.9, 48000, channels=2)
    kwargs = dict(sampling_rate=48000, num_inference_steps=1, full_band=True)
    reference = tiny_pipeline(audio, generator=torch.Generator().manual_seed(0), **kwargs).audios
    out = onnx_pipeline(audio, generator=torch.Generator().manual_seed(0), **kwargs).audios
    assert out.shape == audio.shape and snr_db(reference, out) >= 40


def test_backend_choice_on_an_exported_folder(exported, tiny_pipeline_dir):
    folder = exported[0]
    assert not uses_onnx(FUSEPipeline.from_pretrained(folder, backend="torch"))  # the weights travel along
    with pytest.raises(ValueError, match="backend must be one of") as info:
        FUSEPipeline.from_pretrained(folder, backend="tensorrt")
    assert "\n" not in str(info.value)
    assert resolve_backend(tiny_pipeline_dir, "auto") == "onnx"  # onnxruntime is installed here
    assert resolve_backend(tiny_pipeline_dir, None) == "torch" and resolve_backend(folder, None) == "onnx"


def test_onnx_backend_on_a_torch_folder_exports_once_into_the_cache(tiny_pipeline, tiny_pipeline_dir, make_speech):
    first = FUSEPipeline.from_pretrained(tiny_pipeline_dir, backend="onnx")
    assert uses_onnx(first)
    cached = [p for p in onnx_cache_dir().iterdir() if has_onnx_graphs(p)]
    assert len(cached) == 1 and not any(".tmp-" in p.name for p in onnx_cache_dir().iterdir())
    stamp = (cached[0] / "onnx" / "unet.onnx").stat().st_mtime_ns
    second = FUSEPipeline.from_pretrained(tiny_pipeline_dir, backend="auto")
    assert uses_onnx(second) and (cached[0] / "onnx" / "unet.onnx").stat().st_mtime_ns == stamp  # reused
    audio = make_speech(0.8)[0]
    assert snr_db(run(tiny_pipeline, audio, num_inference_steps=1), run(second, audio, num_inference_steps=1)) >= 40


def test_missing_graph_or_onnxruntime_is_one_line(exported, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(exported[0], broken)
    (broken / "onnx" / "unet.onnx").unlink()
    with pytest.raises(ValueError, match=r"missing onnx/unet\.onnx") as info:
        FUSEPipeline.from_pretrained(broken)
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"needs onnxruntime: pip install 'fuse-hf\[onnx\]'"):
        FUSEPipeline.from_pretrained(exported[0])


def test_export_refuses_bad_arguments_and_fails_below_the_snr_floor(tiny_pipeline, onnx_pipeline, exported, tmp_path):
    with pytest.raises(ValueError, match="quantize must be"):
        tiny_pipeline.export_onnx(tmp_path / "a", quantize="int4")
    with pytest.raises(ValueError, match="exists and is not empty"):
        tiny_pipeline.export_onnx(exported[0])
    with pytest.raises(ValueError, match="needs the torch networks"):
        onnx_pipeline.export_onnx(tmp_path / "b")
    with pytest.raises(
        RuntimeError, match=r"ONNX conditioner does not match torch \(.* dB SNR; need >= 1000 dB"
    ) as info:
        tiny_pipeline.export_onnx(tmp_path / "c", min_snr_db=1000.0)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "c").exists()  # no half-written folder left behind


def test_cli_exports_int8_and_enhances_with_it(tiny_pipeline_dir, make_speech, tmp_path, capsys):
    """`fuse-hf export-onnx --quantize int8`, then `fuse-hf enhance --backend onnx` on its folder (one export for
    both: exports are the slow part of this file)."""
    out_dir = tmp_path / "cli-onnx"
    assert main(["export-onnx", str(tiny_pipeline_dir), str(out_dir), "--quantize", "int8"]) == 0
    assert "(int8)" in capsys.readouterr().out
    config = json.loads((out_dir / "onnx" / "config.json").read_text())
    assert config["quantize"] == "int8" and all(np.isfinite(g["snr_db"]) for g in config["graphs"].values())
    import onnx

    for name in STATIC_INT8_GRAPHS:  # calibrated int8 convolutions, the first and last kept in fp32
        nodes = onnx.load(str(out_dir / "onnx" / f"{name}.onnx")).graph.node
        fp32_convs = [n.name for n in nodes if n.op_type == "Conv"]
        assert any(n.op_type == "QLinearConv" for n in nodes), name
        assert fp32_convs and all("conv_in" in c or "conv_out" in c or "quant_conv" in c for c in fp32_convs), name
    assert main(["export-onnx", str(tiny_pipeline_dir), str(out_dir)]) == 1
    assert "fuse-hf export-onnx: error:" in capsys.readouterr().err
    noisy = tmp_path / "in" / "a.wav"
    noisy.parent.mkdir()
    sf.write(noisy, make_speech(0.7)[0], 16000)
    enhanced = tmp_path / "enhanced"
    args = ["enhance", str(noisy), "-o", str(enhanced), "--steps", "1", "--device", "cpu"]
    assert main([*args, "--model", str(out_dir), "--backend", "onnx"]) == 0
    audio, rate = sf.read(enhanced / "a.wav")
    assert rate == 16000 and audio.shape == (int(0.7 * 16000),) and np.abs(audio).max() > 0
    assert main([*args, "--model", str(tiny_pipeline_dir), "--backend", "torch", "--overwrite"]) == 0


def test_a_pipeline_with_a_token_projection_exports_and_matches_torch(make_speech, tmp_path):
    """The token grid rides in the UNet graph's `sample` input; the projection itself loads and runs in torch."""
    from fuse_hf.factory import make_pipeline
    from fuse_hf.models import TokenGridProjection

    pipe = make_pipeline(latent_frames=16, seed=0, token_projection={"hidden_dim": 8, "out_channels": 4})
    with torch.no_grad():  # weights on the new channels, so that the check sees them
        pipe.unet.conv_in.weight[:, -4:] = torch.randn_like(pipe.unet.conv_in.weight[:, -4:]) * 0.5
    pipe.set_progress_bar_config(disable=True)
    snrs = pipe.export_onnx(tmp_path / "grid-onnx")
    assert min(snrs.values()) > 60
    onnx_pipe = FUSEPipeline.from_pretrained(tmp_path / "grid-onnx")
    onnx_pipe.set_progress_bar_config(disable=True)
    assert uses_onnx(onnx_pipe) and isinstance(onnx_pipe.token_projection, TokenGridProjection)
    audio = make_speech(1.0, seed=2)[0]
    assert snr_db(run(pipe, audio, num_inference_steps=2), run(onnx_pipe, audio, num_inference_steps=2)) > 60
