"""FUSEPipeline end to end with a tiny random model: shapes, rates, determinism, chunking, guidance, callbacks,
the front end saved with the model, loading and errors."""

import doctest
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fuse_hf import FUSEPipeline
from fuse_hf.factory import TINY_VAE, make_pipeline, make_scheduler, make_vae
from fuse_hf.models.autoencoder_spectral import SpectralAutoencoderKL
from fuse_hf.spectral import (
    compress_spectrogram,
    decompress_spectrogram,
    istft,
    limit_gain,
    pad_frames,
    to_spectrogram,
    to_waveform,
)
from fuse_hf.windows import window_starts

REPO = Path(__file__).resolve().parents[1]
FRONT_END_KEYS = ("sampling_rate", "n_fft", "hop_length", "window", "compression_exponent", "compression_factor")


def run(pipe, audio, seed=0, **kwargs):
    return pipe(audio, generator=torch.Generator().manual_seed(seed), **kwargs)


def rms_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + 1e-30))


def initial_noise(pipe, samples: int, channels: int, seed: int = 0) -> torch.Tensor:
    """The `latents` argument for a clip of `samples` samples at the model's rate, as the pipeline would draw it."""
    window, stride = pipe._window_geometry(lengths=[samples])  # fitted to the clip, as `__call__` does
    last_start = window_starts(samples, window, stride, align=pipe._latent_hop)[-1]
    generator = torch.Generator().manual_seed(seed)
    return pipe.prepare_latents(last_start, channels, generator, None, "cpu", torch.float32, window)


class UNetRecorder:
    """Records what the UNet is called with and returns, and what the scheduler's step is given, until closed."""

    def __init__(self, pipe, monkeypatch):
        self.calls, self.step_inputs = [], []
        self.handle = pipe.unet.register_forward_hook(self._hook, with_kwargs=True)
        step = pipe.scheduler.step

        def recording_step(model_output, *args, **kwargs):
            self.step_inputs.append(model_output.detach().clone())
            return step(model_output, *args, **kwargs)

        monkeypatch.setattr(pipe.scheduler, "step", recording_step)

    def _hook(self, module, args, kwargs, output):
        self.calls.append(
            {
                "sample": args[0].detach().clone(),
                "encoder_hidden_states": kwargs["encoder_hidden_states"].detach().clone(),
                "encoder_attention_mask": kwargs.get("encoder_attention_mask"),
                "output": output.sample.detach().float().clone(),
            }
        )

    def close(self):
        self.handle.remove()


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
    """Each channel of a stereo run equals a mono run of that channel from the same initial noise (windows of both
    channels share UNet batches in the stereo run, hence a float tolerance rather than bit equality)."""
    stereo = np.stack([make_speech(1.3, seed=1)[0], 0.5 * make_speech(1.3, seed=2)[0]])  # 3 windows a channel
    noise = initial_noise(tiny_pipeline, stereo.shape[1], channels=2)
    both = tiny_pipeline(stereo, sampling_rate=16000, latents=noise).audios
    assert both.shape == stereo.shape and np.max(np.abs(both)) < 0.99  # no shared peak limiting
    for channel in (0, 1):
        alone = tiny_pipeline(stereo[channel], sampling_rate=16000, latents=noise[channel : channel + 1]).audios
        np.testing.assert_allclose(both[channel], alone, rtol=0, atol=2e-5)
    assert np.abs(both[0] - both[1]).max() > 1e-3


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


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_classifier_free_guidance_follows_its_formula(tiny_pipeline, make_speech, monkeypatch, scale):
    """What the scheduler steps with is `uncond + scale * (cond - uncond)` of the UNet's two outputs, `uncond`
    from zeroed BEATs tokens; at 1 the single conditional output, at 0 the single output with zeroed tokens."""
    recorder = UNetRecorder(tiny_pipeline, monkeypatch)
    try:
        run(tiny_pipeline, make_speech(0.3)[0], sampling_rate=16000, num_inference_steps=2, guidance_scale=scale)
    finally:
        recorder.close()
    assert len(recorder.calls) == len(recorder.step_inputs) == 2
    for call, stepped in zip(recorder.calls, recorder.step_inputs):
        tokens = call["encoder_hidden_states"]
        if scale in (0.0, 1.0):
            assert tokens.shape[0] == 1 and bool(tokens.any()) == (scale == 1.0)
            torch.testing.assert_close(stepped, call["output"], rtol=0, atol=0)
            continue
        uncond_tokens, cond_tokens = tokens.chunk(2)
        assert not uncond_tokens.any() and cond_tokens.abs().sum() > 0
        uncond_input, cond_input = call["sample"].chunk(2)
        assert torch.equal(uncond_input, cond_input)
        uncond, cond = call["output"].chunk(2)
        torch.testing.assert_close(stepped, uncond + scale * (cond - uncond), rtol=0, atol=0)
        assert (stepped - cond).abs().max() > 1e-6


def test_noise_scale_scales_the_initial_noise(tiny_pipeline, make_speech):
    audio = make_speech(0.3)[0]  # one window: the noise field is one window long
    shape = initial_noise(tiny_pipeline, len(audio), 1).shape
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


def test_limit_gain_caps_each_bin_and_keeps_its_phase():
    reference = torch.tensor([[[1.0, 2.0, 0.0, 4.0]]], dtype=torch.complex64)
    spectrum = torch.tensor([[[3.0, 1.0j, 1.0, -8.0]]], dtype=torch.complex64)
    capped = limit_gain(spectrum, reference, max_gain_db=0.0, compression_exponent=0.5)
    torch.testing.assert_close(capped, torch.tensor([[[1.0, 1.0j, 0.0, -4.0]]], dtype=torch.complex64))
    # +12 dB on the amplitude is 10 ** (0.5 * 12 / 20) = 1.995x on a magnitude compressed with exponent 0.5.
    loose = limit_gain(spectrum, reference, max_gain_db=12.0, compression_exponent=0.5)
    factor = 10 ** (0.5 * 12 / 20)
    torch.testing.assert_close(loose, torch.tensor([[[factor, 1.0j, 0.0, -4 * factor]]], dtype=torch.complex64))


@pytest.mark.parametrize("max_gain_db", [0.0, 6.0, None])
def test_magnitude_synthesis_equals_the_complex_steps(max_gain_db):
    # to_waveform's magnitude branch works on magnitudes and one unit phasor; the definition is: the decoded
    # magnitude with the input's phase (`angle`, 0 for a bin of zeros), capped by `limit_gain`, decompressed.
    torch.manual_seed(0)
    noisy = compress_spectrogram(torch.complex(torch.randn(2, 256, 40), torch.randn(2, 256, 40)))
    noisy[:, :, :5] = 0  # digital silence
    decoded = torch.randn(2, 1, 256, 40) * 3  # negative values too: clipped to zero
    compressed = decoded[:, 0].clamp_min(0.0) * 0.02 * torch.exp(1j * noisy.angle())
    if max_gain_db is not None:
        compressed = limit_gain(compressed, noisy, max_gain_db, compression_exponent=0.5)
    expected = istft(decompress_spectrogram(compressed), 5000)
    got = to_waveform(decoded, 5000, "magnitude", 0.02, noisy, max_gain_db=max_gain_db)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert (got[:, :256].abs().max() == 0) == (max_gain_db is not None)  # silence stays silent under a cap


def test_max_gain_keeps_digital_silence_silent_and_bounds_the_output(tiny_pipeline, make_speech):
    silence = np.zeros(8000, np.float32)
    assert not np.any(run(tiny_pipeline, silence, sampling_rate=16000).audios)
    assert np.any(run(tiny_pipeline, silence, sampling_rate=16000, max_gain_db=None).audios)
    speech = make_speech(1.0)[0]
    free = run(tiny_pipeline, speech, sampling_rate=16000, max_gain_db=None).audios
    capped = run(tiny_pipeline, speech, sampling_rate=16000, max_gain_db=-12.0).audios
    assert rms_db(capped) < rms_db(speech) - 11.0 < rms_db(free)


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


def test_callback_tensors_are_read_back(tiny_pipeline, make_speech, monkeypatch):
    """Each of `_callback_tensor_inputs` a callback returns replaces the pipeline's own for the next steps."""
    audio = make_speech(0.3)[0]  # one window
    final = {}

    def keep(pipe, step, timestep, kwargs):
        final[step] = kwargs["latents"].clone()
        return {}

    reference = run(tiny_pipeline, audio, sampling_rate=16000, seed=1, num_inference_steps=2, callback_on_step_end=keep)

    def swap_latents(pipe, step, timestep, kwargs):
        return {"latents": final[1]} if step == 1 else {}

    # Another seed, but the last step's latents swapped for the first run's: the first run's output.
    swapped = run(
        tiny_pipeline, audio, sampling_rate=16000, seed=2, num_inference_steps=2, callback_on_step_end=swap_latents
    )
    np.testing.assert_array_equal(swapped.audios, reference.audios)

    markers = {}

    def swap_conditions(pipe, step, timestep, kwargs):
        if step > 0:
            return {}
        markers["noisy_latents"] = torch.full_like(kwargs["noisy_latents"], 0.5)
        markers["encoder_hidden_states"] = torch.full_like(kwargs["encoder_hidden_states"], -0.25)
        return dict(markers)

    recorder = UNetRecorder(tiny_pipeline, monkeypatch)
    try:
        run(
            tiny_pipeline,
            audio,
            sampling_rate=16000,
            num_inference_steps=2,
            callback_on_step_end=swap_conditions,
            callback_on_step_end_tensor_inputs=["latents", "noisy_latents", "encoder_hidden_states"],
        )
    finally:
        recorder.close()
    first, second = recorder.calls
    channels = markers["noisy_latents"].shape[1]
    assert not torch.equal(first["sample"][:, channels:], markers["noisy_latents"])
    torch.testing.assert_close(second["sample"][:, channels:], markers["noisy_latents"], rtol=0, atol=0)
    torch.testing.assert_close(second["encoder_hidden_states"], markers["encoder_hidden_states"], rtol=0, atol=0)


def test_interrupt_stops_early(tiny_pipeline, make_speech):
    steps = []

    def callback(pipe, step, timestep, kwargs):
        steps.append(step)
        pipe._interrupt = True
        return kwargs

    out = run(
        tiny_pipeline, make_speech(0.3)[0], sampling_rate=16000, num_inference_steps=6, callback_on_step_end=callback
    )
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
        (dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, max_gain_db=float("inf")), "max_gain_db"),
        (
            dict(audio=np.zeros(1600, np.float32), sampling_rate=16000, latents=torch.zeros(1, 2, 3)),
            "latents must have shape",
        ),
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


def test_loading_errors_other_than_a_weight_mismatch_keep_their_cause(tiny_pipeline_dir, tmp_path):
    rejected = tmp_path / "rejected"
    shutil.copytree(tiny_pipeline_dir, rejected)
    config = json.loads((rejected / "vae" / "config.json").read_text())
    (rejected / "vae" / "config.json").write_text(json.dumps({**config, "representation": "mel"}))
    with pytest.raises(ValueError, match="representation must be one of") as err:
        FUSEPipeline.from_pretrained(rejected)
    assert "do not match" not in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(rejected))

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_pipeline_dir, corrupt)
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file" * 8)
    with pytest.raises(ValueError, match="Unable to load weights") as err:
        FUSEPipeline.from_pretrained(corrupt)
    assert "do not match" not in str(err.value) and "\n" not in str(err.value)


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
    np.testing.assert_array_equal(
        run(pipe, audio, sampling_rate=16000).audios, run(reference, audio, sampling_rate=16000).audios
    )
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        FUSEPipeline.from_pretrained("someone/not-cached", cache_dir=tmp_path / "cache")


def is_channels_last(pipe) -> bool:
    return pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last) and not (
        pipe.unet.conv_in.weight.is_contiguous()
    )


def test_bf16_autocast_stays_close_to_fp32(tiny_pipeline_dir, make_speech):
    """bf16 on the CPU puts the weights in channels-last layout when it is set, not when a call runs, and fp32 puts
    them back: fp32 after bf16 is the fp32 of a fresh pipeline, bit for bit."""
    pipe = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    audio = make_speech(1.0)[0]
    reference = run(pipe, audio, sampling_rate=16000, num_inference_steps=2).audios
    assert not is_channels_last(pipe) and not isinstance(pipe._autocast(torch.device("cpu")), torch.autocast)
    pipe.set_precision("bf16")
    assert is_channels_last(pipe) and pipe.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert isinstance(pipe._autocast(torch.device("cpu")), torch.autocast)
    fast = run(pipe, audio, sampling_rate=16000, num_inference_steps=2).audios
    snr = 10 * np.log10(np.sum(reference**2) / np.sum((reference - fast) ** 2))
    assert 10 < snr < 200, f"bf16 output {snr:.1f} dB from fp32"
    pipe.set_precision("fp32")
    assert not is_channels_last(pipe)
    np.testing.assert_array_equal(run(pipe, audio, sampling_rate=16000, num_inference_steps=2).audios, reference)
    with pytest.raises(ValueError, match="precision"):
        pipe.set_precision("fp8")


def test_vae_runs_window_by_window_through_diffusers_slicing(tiny_pipeline, make_speech):
    """The pipeline switches the VAE's slicing on: a batch of windows is encoded and decoded one window at a time
    (flat memory); `vae.disable_slicing()` hands the VAE the whole batch, with the same result to rounding."""
    audio = make_speech(2.0)[0]  # 5 windows
    batches = []
    hooks = [
        module.register_forward_pre_hook(lambda module, args: batches.append((module, args[0].shape[0])))
        for module in (tiny_pipeline.vae.encoder, tiny_pipeline.vae.decoder)
    ]
    try:
        assert tiny_pipeline.vae.use_slicing
        sliced = run(tiny_pipeline, audio, sampling_rate=16000, num_inference_steps=1, batch_size=4).audios
        assert len(batches) == 2 * 5 and {size for _, size in batches} == {1}
        batches.clear()
        tiny_pipeline.vae.disable_slicing()
        whole = run(tiny_pipeline, audio, sampling_rate=16000, num_inference_steps=1, batch_size=4).audios
        assert sorted(size for _, size in batches) == [1, 1, 4, 4]
    finally:
        tiny_pipeline.vae.enable_slicing()
        for hook in hooks:
            hook.remove()
    np.testing.assert_allclose(whole, sliced, rtol=0, atol=1e-4)


def test_front_end_settings_round_trip_through_save_pretrained_and_are_used(tmp_path):
    settings = dict(
        sampling_rate=24000,
        n_fft=510,
        hop_length=160,
        window="hamming",
        compression_exponent=0.3,
        compression_factor=0.2,
    )
    make_pipeline(vae={**TINY_VAE, **settings}, latent_frames=16).save_pretrained(tmp_path / "pipe")
    saved = json.loads((tmp_path / "pipe" / "vae" / "config.json").read_text())
    assert {key: saved[key] for key in FRONT_END_KEYS} == settings
    pipe = FUSEPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.sampling_rate == 24000 and pipe._window_geometry()[0] == (64 - 1) * 160
    assert pipe.vae.spectral_settings == {k: v for k, v in settings.items() if k != "sampling_rate"}

    # A clip of exactly one window at the model's rate: the UNet sees the latents of the saved front end.
    window = pipe._window_geometry()[0]
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, window).astype(np.float32)
    seen = {}
    out = pipe(
        audio,
        sampling_rate=24000,
        num_inference_steps=1,
        callback_on_step_end_tensor_inputs=["noisy_latents"],
        callback_on_step_end=lambda pipe, step, t, kwargs: seen.update(kwargs) or {},
    )
    assert out.audios.shape == audio.shape and out.sampling_rate == 24000

    def latents(**front_end):
        spec, _ = to_spectrogram(torch.from_numpy(audio)[None], "complex", pipe.vae.config.input_scale, **front_end)
        return pipe.vae.encode_to_latents(pad_frames(spec, pipe.frame_multiple))

    with torch.no_grad():
        expected, default = latents(**pipe.vae.spectral_settings), latents(hop_length=160)
    torch.testing.assert_close(seen["noisy_latents"], expected, rtol=0, atol=0)
    assert (default - expected).abs().max() > 1e-3


def test_vae_config_without_front_end_settings_loads_with_todays_defaults(
    tiny_pipeline, tiny_pipeline_dir, tmp_path, make_speech
):
    """Folders saved before the front end was in the config load with the values they were made with."""
    old = tmp_path / "old"
    shutil.copytree(tiny_pipeline_dir, old)
    config = json.loads((old / "vae" / "config.json").read_text())
    (old / "vae" / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in FRONT_END_KEYS}))
    pipe = FUSEPipeline.from_pretrained(old)
    pipe.set_progress_bar_config(disable=True)
    assert {k: pipe.vae.config[k] for k in FRONT_END_KEYS} == dict(
        sampling_rate=16000,
        n_fft=510,
        hop_length=128,
        window="hann",
        compression_exponent=0.5,
        compression_factor=0.15,
    )
    audio = make_speech(0.6)[0]
    np.testing.assert_array_equal(
        run(pipe, audio, sampling_rate=16000).audios, run(tiny_pipeline, audio, sampling_rate=16000).audios
    )
    bundled = json.loads((REPO / "pipelines" / "fuse-small" / "vae" / "config.json").read_text())
    assert {k: bundled[k] for k in FRONT_END_KEYS} == {k: pipe.vae.config[k] for k in FRONT_END_KEYS}


def test_vae_front_end_defaults_are_the_spectral_modules():
    """The VAE file spells the front end's defaults out (it travels alone as Hub remote code): they must agree."""
    from fuse_hf import spectral
    from fuse_hf.models import autoencoder_spectral

    vae = make_vae(**TINY_VAE)
    assert vae.spectral_settings == spectral.SPECTRAL_DEFAULTS == spectral.spectral_settings(None)
    assert vae.config.sampling_rate == spectral.SAMPLE_RATE and vae.config.sample_size == spectral.NUM_FREQ_BINS
    assert autoencoder_spectral._WINDOWS == tuple(spectral.WINDOWS)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n_fft=1024), r"sample_size \(256\) must be the number of frequency bins, n_fft // 2 \+ 1 = 513"),
        (dict(window="kaiser"), "window must be one of"),
        (dict(hop_length=0), "hop_length must be a positive integer"),
        (dict(hop_length=600), r"hop_length \(600\) must not exceed n_fft"),
        (dict(sampling_rate=16000.5), "sampling_rate must be a positive integer"),
        (dict(compression_exponent=0.0), "compression_exponent must be a positive number"),
    ],
)
def test_bad_front_end_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpectralAutoencoderKL(**TINY_VAE, **kwargs)


def test_a_lighter_decoder_keeps_the_encoder_and_the_kept_decoder_weights(tmp_path):
    torch.manual_seed(0)
    vae = SpectralAutoencoderKL(**TINY_VAE).eval()
    lighter = vae.with_lighter_decoder(0).eval()
    assert [len(b.resnets) for b in vae.decoder.up_blocks] == [2, 2, 2]
    assert [len(b.resnets) for b in lighter.decoder.up_blocks] == [1, 1, 1]
    assert lighter.config.decoder_layers_per_block == 0 and lighter.config.layers_per_block == 1
    full = vae.state_dict()
    for key, value in lighter.state_dict().items():  # every tensor is the trained model's
        torch.testing.assert_close(value, full[key], rtol=0, atol=0)
    spec = torch.randn(2, 2, 256, 32)
    with torch.no_grad():
        torch.testing.assert_close(lighter.encode_to_latents(spec), vae.encode_to_latents(spec), rtol=0, atol=0)
        latents = vae.encode(spec).latent_dist.mode()
        assert lighter.decode(latents).sample.shape == vae.decode(latents).sample.shape == spec.shape
    lighter.save_pretrained(tmp_path / "vae")
    again = SpectralAutoencoderKL.from_pretrained(tmp_path / "vae")
    assert [len(b.resnets) for b in again.decoder.up_blocks] == [1, 1, 1]
    for bad in (1, 2, -1):
        with pytest.raises(ValueError, match=r"decoder_layers_per_block must be in \[0, 1\)"):
            vae.with_lighter_decoder(bad)


def test_a_narrower_decoder_starts_from_the_leading_channels_and_saves(tmp_path):
    torch.manual_seed(0)
    vae = SpectralAutoencoderKL(**TINY_VAE).eval()
    wide = tuple(vae.config.block_out_channels)
    narrow = (wide[0], wide[0], wide[-1])
    lighter = vae.with_lighter_decoder(decoder_block_out_channels=narrow, decoder_mid_block_layers=0).eval()
    assert len(lighter.decoder.mid_block.resnets) == 1 and len(vae.decoder.mid_block.resnets) == 2
    assert lighter.decoder.up_blocks[1].resnets[0].conv1.out_channels == narrow[1]
    full = vae.state_dict()
    new_skips = []
    for key, value in lighter.state_dict().items():  # each tensor is the leading block of the trained one's
        if key in full:
            torch.testing.assert_close(value, full[key][tuple(slice(0, n) for n in value.shape)], rtol=0, atol=0)
        else:  # up block 1 now goes 16 -> 8 channels: a 1x1 skip that passes the leading 8 through
            new_skips.append(key)
            assert ".conv_shortcut." in key and value.abs().sum() == (value.shape[0] if value.dim() == 4 else 0)
    assert new_skips == [
        "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
        "decoder.up_blocks.1.resnets.0.conv_shortcut.bias",
    ]
    assert sum(p.numel() for p in lighter.decoder.parameters()) < sum(p.numel() for p in vae.decoder.parameters())
    spec = torch.randn(2, 2, 256, 32)
    with torch.no_grad():
        torch.testing.assert_close(lighter.encode_to_latents(spec), vae.encode_to_latents(spec), rtol=0, atol=0)
        latents = lighter.encode_to_latents(spec)
        assert lighter.decode_latents(latents).shape == spec.shape
    lighter.save_pretrained(tmp_path / "vae")
    again = SpectralAutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    with torch.no_grad():
        torch.testing.assert_close(again.decode_latents(latents), lighter.decode_latents(latents), rtol=0, atol=0)
    with pytest.raises(ValueError, match="must narrow"):
        vae.with_lighter_decoder(decoder_block_out_channels=(wide[0], 2 * wide[-1], wide[-1]))
    with pytest.raises(ValueError, match="positive multiples of norm_num_groups"):
        SpectralAutoencoderKL(**TINY_VAE, decoder_block_out_channels=(wide[0], 5, wide[-1]))
    with pytest.raises(ValueError, match="decoder_mid_block_layers can only be 0"):
        SpectralAutoencoderKL(**TINY_VAE, decoder_mid_block_layers=3)
    with pytest.raises(ValueError, match="no change asked for"):
        vae.with_lighter_decoder()


def test_a_narrower_encoder_starts_from_the_leading_channels_and_keeps_the_decoder(tmp_path):
    torch.manual_seed(0)
    vae = SpectralAutoencoderKL(**TINY_VAE).eval()
    wide = tuple(vae.config.block_out_channels)
    narrow = (wide[0], wide[0], wide[0])
    lighter = vae.with_lighter_encoder(encoder_block_out_channels=narrow, encoder_mid_block_layers=0).eval()
    assert len(lighter.encoder.mid_block.resnets) == 1 and len(vae.encoder.mid_block.resnets) == 2
    assert lighter.encoder.conv_out.in_channels == narrow[-1] and lighter.encoder.conv_out.out_channels == 8
    full = vae.state_dict()
    for key, value in lighter.state_dict().items():  # each tensor is the leading block of the trained one's
        torch.testing.assert_close(value, full[key][tuple(slice(0, n) for n in value.shape)], rtol=0, atol=0)
        if not key.startswith("encoder."):  # the decoder (and both quant convs) are the trained one's, whole
            assert value.shape == full[key].shape, key
    # down block 1 no longer changes width (8 -> 8): its 1x1 skip is gone
    assert "encoder.down_blocks.1.resnets.0.conv_shortcut.weight" in set(full) - set(lighter.state_dict())
    assert sum(p.numel() for p in lighter.encoder.parameters()) < sum(p.numel() for p in vae.encoder.parameters())
    spec = torch.randn(2, 2, 256, 32)
    with torch.no_grad():
        latents = lighter.encode_to_latents(spec)
        assert latents.shape == vae.encode_to_latents(spec).shape
        torch.testing.assert_close(lighter.decode_latents(latents), vae.decode_latents(latents), rtol=0, atol=0)
    lighter.save_pretrained(tmp_path / "vae")
    again = SpectralAutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    assert tuple(again.config.encoder_block_out_channels) == narrow and again.config.encoder_mid_block_layers == 0
    with torch.no_grad():
        torch.testing.assert_close(again.encode_to_latents(spec), latents, rtol=0, atol=0)
    with pytest.raises(ValueError, match="encoder_block_out_channels must narrow"):
        vae.with_lighter_encoder(encoder_block_out_channels=(wide[0], 2 * wide[-1], wide[-1]))
    with pytest.raises(ValueError, match="encoder_block_out_channels must be 3 positive multiples of norm_num_groups"):
        SpectralAutoencoderKL(**TINY_VAE, encoder_block_out_channels=(wide[0], 5, wide[-1]))
    with pytest.raises(ValueError, match="encoder_mid_block_layers can only be 0"):
        SpectralAutoencoderKL(**TINY_VAE, encoder_mid_block_layers=2)
    with pytest.raises(ValueError, match="with_lighter_encoder: no change asked for"):
        vae.with_lighter_encoder()


def test_call_docstring_example_runs(monkeypatch):
    doc = FUSEPipeline.__call__.__doc__
    assert "Examples:" in doc and ">>> pipe = FUSEPipeline.from_pretrained" in doc
    monkeypatch.chdir(REPO)  # the example loads the bundled pipelines/fuse-small
    test = doctest.DocTestParser().get_doctest(doc, {}, "FUSEPipeline.__call__", None, 0)
    assert len(test.examples) >= 4
    result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test, out=print)
    assert result.failed == 0
