"""FUSEPipeline end to end with a tiny random model: shapes, rates, determinism, chunking, loading and errors."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from fuse_hf import FUSEPipeline
from fuse_hf.factory import make_scheduler


def run(pipe, audio, seed=0, **kwargs):
    return pipe(audio, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_output_keeps_length_rate_and_channels(tiny_pipeline, make_speech, rate, channels):
    audio = make_speech(0.7, rate, channels)
    if channels == 1:
        audio = audio[0]
    out = run(tiny_pipeline, audio, sampling_rate=rate, num_inference_steps=2)
    assert out.audios.shape == audio.shape
    assert out.audios.dtype == np.float32
    assert out.sampling_rate == rate
    assert np.isfinite(out.audios).all() and np.max(np.abs(out.audios)) <= 0.99


def test_same_seed_same_output_other_seed_other_output(tiny_pipeline, make_speech):
    audio = make_speech(1.3)
    a = run(tiny_pipeline, audio, sampling_rate=16000, seed=3).audios
    b = run(tiny_pipeline, audio, sampling_rate=16000, seed=3).audios
    c = run(tiny_pipeline, audio, sampling_rate=16000, seed=4).audios
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_stereo_channels_are_enhanced_independently(tiny_pipeline, make_speech):
    left = make_speech(1.0, seed=1)[0]
    stereo = np.stack([left, np.zeros_like(left)])
    out = run(tiny_pipeline, stereo, sampling_rate=16000).audios
    assert out.shape == stereo.shape
    assert not np.allclose(out[0], out[1])


def test_save_and_load_give_bit_identical_output(tiny_pipeline, tiny_pipeline_dir, make_speech):
    index = json.loads((tiny_pipeline_dir / "model_index.json").read_text())
    assert {"vae", "conditioner", "unet", "scheduler"} <= set(index)
    assert not list(tiny_pipeline_dir.rglob("*.bin")) and len(list(tiny_pipeline_dir.rglob("*.safetensors"))) == 3
    loaded = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    loaded.set_progress_bar_config(disable=True)
    audio = make_speech(1.1)
    np.testing.assert_array_equal(
        run(tiny_pipeline, audio, sampling_rate=16000).audios, run(loaded, audio, sampling_rate=16000).audios
    )


def test_scheduler_is_v_prediction_trailing_zero_snr():
    scheduler = make_scheduler()
    scheduler.set_timesteps(6)
    assert scheduler.timesteps.tolist() == [999, 832, 666, 499, 332, 166]
    assert scheduler.config.prediction_type == "v_prediction"
    assert float(scheduler.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-7)


def oracle_forward(scheduler):
    """A UNet forward that predicts the v making the clean estimate equal the noisy input's latent: the pipeline
    then reduces to a VAE round trip per window, a local function of the input, so chunking artefacts show."""

    def forward(sample, timestep, encoder_hidden_states=None, encoder_attention_mask=None):
        latents, noisy = sample.chunk(2, dim=1)
        ab = scheduler.alphas_cumprod[int(timestep)]
        v = (ab.sqrt() * latents - noisy) / (1 - ab).sqrt()
        return type("Output", (), {"sample": v})()

    return forward


def test_chunked_and_single_window_agree(tiny_pipeline_dir, make_speech):
    """A 2.5 s clip in overlapping 1 s windows vs. the same weights on one 4 s window.

    With an oracle UNet and the VAE's GroupNorms (whole-window statistics) removed, the model is a local function
    of its input, so the two must agree except for the residual noise of the last DDIM step: what is measured
    is the windowing itself (placement, noise alignment, cross-fade)."""
    chunked = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    single = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    chunked.unet.register_to_config(sample_size=(64, 32))
    single.unet.register_to_config(sample_size=(64, 128))
    for pipe in (chunked, single):
        pipe.set_progress_bar_config(disable=True)
        pipe.unet.forward = oracle_forward(pipe.scheduler)
        for parent in list(pipe.vae.modules()):
            for name, child in parent.named_children():
                if isinstance(child, torch.nn.GroupNorm):
                    setattr(parent, name, torch.nn.Identity())
    audio = make_speech(2.5, seed=2)[0]
    assert chunked._window_geometry()[0] < len(audio) < single._window_geometry()[0]
    a = run(chunked, audio, sampling_rate=16000, num_inference_steps=3).audios
    b = run(single, audio, sampling_rate=16000, num_inference_steps=3).audios
    assert a.shape == b.shape == audio.shape
    snr = 10 * np.log10(np.sum(b**2) / np.sum((a - b) ** 2))
    print(f"chunked vs single: {snr:.1f} dB")
    assert snr > 20.0, f"chunked output only {snr:.1f} dB from the single-window output"


def test_list_of_clips_tensors_and_files(tiny_pipeline, make_speech, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, make_speech(0.4, 22050, 2).T, 22050, subtype="PCM_16")
    clips = [make_speech(0.3)[0], torch.from_numpy(make_speech(0.9, seed=1)), str(path)]
    out = run(tiny_pipeline, clips, sampling_rate=16000, output_type="pt")
    assert isinstance(out.audios, list) and len(out.audios) == 3
    assert all(isinstance(a, torch.Tensor) for a in out.audios)
    assert out.audios[0].shape == (4800,) and out.audios[1].shape == (1, 14400)
    assert out.audios[2].shape == (2, 8820) and out.sampling_rate == [16000, 16000, 22050]
    audios, rates = tiny_pipeline(str(path), return_dict=False)
    assert audios.shape == (2, 8820) and rates == 22050


def test_batching_windows_does_not_change_the_result(tiny_pipeline, make_speech):
    audio = make_speech(2.0, channels=2)
    a = run(tiny_pipeline, audio, sampling_rate=16000, batch_size=1).audios
    b = run(tiny_pipeline, audio, sampling_rate=16000, batch_size=16).audios
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_guidance_scale_modes(tiny_pipeline, make_speech):
    audio = make_speech(0.5)[0]
    on = run(tiny_pipeline, audio, sampling_rate=16000, guidance_scale=1.0).audios
    off = run(tiny_pipeline, audio, sampling_rate=16000, guidance_scale=0.0).audios
    cfg = run(tiny_pipeline, audio, sampling_rate=16000, guidance_scale=2.0).audios
    assert np.abs(on - off).max() > 1e-5 and np.abs(cfg - on).max() > 1e-5


def test_noise_scale_scales_the_initial_noise(tiny_pipeline, make_speech):
    audio = make_speech(0.3)[0]  # one window: the noise field is one window long
    shape = tiny_pipeline.prepare_latents(0, 1, torch.Generator().manual_seed(0), None, "cpu", torch.float32).shape
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    scaled = run(tiny_pipeline, audio, sampling_rate=16000, latents=noise, noise_scale=0.3).audios
    prescaled = run(tiny_pipeline, audio, sampling_rate=16000, latents=0.3 * noise, noise_scale=1.0).audios
    np.testing.assert_allclose(scaled, prescaled, atol=1e-6)
    full = run(tiny_pipeline, audio, sampling_rate=16000, latents=noise, noise_scale=1.0).audios
    assert np.abs(scaled - full).max() > 1e-4
    # At zero the output no longer depends on the seed: a deterministic estimate.
    a = run(tiny_pipeline, audio, sampling_rate=16000, seed=3, noise_scale=0.0).audios
    b = run(tiny_pipeline, audio, sampling_rate=16000, seed=4, noise_scale=0.0).audios
    np.testing.assert_array_equal(a, b)


def test_attenuation_limit_mixes_the_input_back(tiny_pipeline, make_speech):
    audio = make_speech(0.5)[0]
    full = run(tiny_pipeline, audio, sampling_rate=16000).audios
    limited = run(tiny_pipeline, audio, sampling_rate=16000, attenuation_limit_db=6.0).audios
    floor = 10 ** (-6 / 20)
    np.testing.assert_allclose(limited, floor * audio + (1 - floor) * full, atol=1e-5)


def test_callback_on_step_end_sees_and_replaces_latents(tiny_pipeline, make_speech):
    calls = []

    def callback(pipe, step, timestep, kwargs):
        calls.append((step, int(timestep), tuple(kwargs["latents"].shape)))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    audio = make_speech(0.3)[0]
    out = run(tiny_pipeline, audio, sampling_rate=16000, num_inference_steps=3, callback_on_step_end=callback)
    assert [c[0] for c in calls] == [0, 1, 2]
    assert [c[1] for c in calls] == [999, 666, 332]
    baseline = run(tiny_pipeline, audio, sampling_rate=16000, num_inference_steps=3).audios
    assert np.abs(out.audios - baseline).max() > 1e-5


def test_interrupt_stops_early(tiny_pipeline, make_speech):
    steps = []

    def callback(pipe, step, timestep, kwargs):
        steps.append(step)
        pipe._interrupt = True
        return kwargs

    out = run(tiny_pipeline, make_speech(0.3)[0], sampling_rate=16000, num_inference_steps=6, callback_on_step_end=callback)
    assert steps == [0] and out.audios.shape == (4800,)


def test_very_short_input_is_padded(tiny_pipeline):
    audio = np.full(160, 0.1, np.float32)  # 10 ms
    assert run(tiny_pipeline, audio, sampling_rate=16000).audios.shape == (160,)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(audio=np.zeros(1600, np.float32)), "sampling_rate is required"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=-1), "positive integer"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000.5), "positive integer"),
        (dict(audio=np.array([0.0, np.nan] * 800, np.float32), sampling_rate=16000), "NaN or Inf"),
        (dict(audio=np.zeros((1, 2, 1600), np.float32), sampling_rate=16000), "1-D"),
        (dict(audio=np.zeros((1600, 2), np.float32), sampling_rate=16000), r"audio\.T"),
        (dict(audio=np.zeros(0, np.float32), sampling_rate=16000), "no samples"),
        (dict(audio=np.zeros(20, np.float32), sampling_rate=16000), "at least 5 ms"),
        (dict(audio=[], sampling_rate=16000), "empty list"),
        (dict(audio=123, sampling_rate=16000), "file path, a numpy array"),
        (dict(audio="does/not/exist.wav"), "does/not/exist.wav: no such file"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, num_inference_steps=0), "num_inference_steps"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, output_type="latent"), "output_type"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, attenuation_limit_db=-3), "attenuation_limit_db"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, noise_scale=-0.5), "noise_scale"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, noise_scale=float("nan")), "noise_scale"),
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, latents=torch.zeros(1, 2, 3)), "latents must have shape"),
    ],
)
def test_bad_input_gets_a_clear_error(tiny_pipeline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(**kwargs)


def test_corrupted_file_is_named(tiny_pipeline, tmp_path):
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 50)
    with pytest.raises(ValueError, match="broken.flac: cannot be read as audio"):
        tiny_pipeline(str(bad))


def test_missing_or_mismatched_weights_are_named(tiny_pipeline_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="unet/diffusion_pytorch_model.safetensors"):
        FUSEPipeline.from_pretrained(broken)

    mismatched = tmp_path / "mismatched"
    shutil.copytree(tiny_pipeline_dir, mismatched)
    config = json.loads((mismatched / "vae" / "config.json").read_text())
    config["block_out_channels"] = [8, 16, 32]
    (mismatched / "vae" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match"):
        FUSEPipeline.from_pretrained(mismatched)

    with pytest.raises(ValueError, match="model_index.json"):
        FUSEPipeline.from_pretrained(tmp_path)


def test_repo_id_loads_from_offline_cache(tiny_pipeline_dir, tmp_path, monkeypatch, make_speech):
    """A populated Hugging Face cache (the layout snapshot_download writes) serves a repo id offline."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--someone--fuse-tiny"
    shutil.copytree(tiny_pipeline_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = FUSEPipeline.from_pretrained("someone/fuse-tiny", cache_dir=tmp_path / "cache")
    pipe.set_progress_bar_config(disable=True)
    reference = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    reference.set_progress_bar_config(disable=True)
    audio = make_speech(0.4)[0]
    np.testing.assert_array_equal(run(pipe, audio, sampling_rate=16000).audios, run(reference, audio, sampling_rate=16000).audios)
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        FUSEPipeline.from_pretrained("someone/not-cached", cache_dir=tmp_path / "cache")


def test_bf16_autocast_stays_close_to_fp32(tiny_pipeline_dir, make_speech):
    pipe = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    audio = make_speech(1.0)[0]
    reference = run(pipe, audio, sampling_rate=16000, num_inference_steps=2).audios
    pipe.set_precision("bf16")
    fast = run(pipe, audio, sampling_rate=16000, num_inference_steps=2).audios
    snr = 10 * np.log10(np.sum(reference**2) / np.sum((reference - fast) ** 2))
    assert 10 < snr < 200, f"bf16 output {snr:.1f} dB from fp32"
    with pytest.raises(ValueError, match="precision"):
        pipe.set_precision("fp8")
