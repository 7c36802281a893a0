"""train.py and fuse_hf.training: every stage learns, checkpoints are atomic, resume is exact, DDP keeps ranks equal."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from conftest import free_port
from fuse_hf.training import STAGES, parse_args, train
from fuse_hf.training.checkpoint import list_checkpoints, resolve_checkpoint, save_checkpoint
from fuse_hf.training.stages import diffusion_target

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny"


@pytest.fixture(scope="module")
def toy_corpus(tmp_path_factory):
    """Generated speech-like tones and noises, split into train and valid folders."""
    from conftest import speech_like

    root = tmp_path_factory.mktemp("toy-corpus")
    for split, offset in (("train", 0), ("valid", 100)):
        for i in range(3):
            (root / "speech" / split).mkdir(parents=True, exist_ok=True)
            (root / "noise" / split).mkdir(parents=True, exist_ok=True)
            sf.write(root / "speech" / split / f"s{i}.wav", speech_like(1.2, seed=offset + i)[0], 16000)
            noise = np.random.default_rng(offset + i).standard_normal(20000).astype(np.float32) * 0.05
            sf.write(root / "noise" / split / f"n{i}.wav", noise, 16000)
    return root


def data_flags(root):
    return [
        "--speech_dir",
        str(root / "speech" / "train"),
        "--noise_dir",
        str(root / "noise" / "train"),
        "--valid_speech_dir",
        str(root / "speech" / "valid"),
        "--valid_noise_dir",
        str(root / "noise" / "valid"),
    ]


@pytest.fixture(scope="module")
def trained_parts(toy_corpus, tmp_path_factory):
    """A tiny VAE and a tiny pre-trained BEATs, for the diffusion stage (a few steps each)."""
    out = tmp_path_factory.mktemp("parts")
    for stage in ("vae", "beats"):
        args = parse_args(
            [
                stage,
                "--config",
                str(TINY / f"{stage}.yaml"),
                *data_flags(toy_corpus),
                "--output_dir",
                str(out / stage),
                "--max_train_steps",
                "2",
                "--num_validation_pairs",
                "1",
            ]
        )
        train(args, STAGES[stage]())
    return out / "vae" / "vae", out / "beats" / "conditioner"


def stage_args(stage, root, tmp_path, parts=None, extra=()):
    argv = [stage, "--config", str(TINY / f"{stage}.yaml"), *data_flags(root), "--output_dir", str(tmp_path / stage)]
    if parts is not None:
        argv += ["--vae_path", str(parts[0]), "--conditioner_path", str(parts[1])]
    return parse_args(argv + list(extra))


@pytest.mark.parametrize("stage", ["vae", "beats", "diffusion"])
def test_each_stage_learns_a_fixed_batch(stage, toy_corpus, trained_parts, tmp_path):
    from accelerate import Accelerator

    torch.manual_seed(0)
    args = stage_args(stage, toy_corpus, tmp_path, trained_parts if stage == "diffusion" else None)
    runner = STAGES[stage]()
    accelerator = Accelerator(cpu=True)
    model = runner.build(args, accelerator, {})
    batch = {k: torch.stack([runner.dataset[i][k] for i in range(2)]) for k in ("clean", "noisy")}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        torch.manual_seed(1)  # the same noise, timesteps and masks every step: only the weights change
        loss, _ = runner.loss(model, batch, accelerator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], f"{stage}: loss {losses[0]:.4f} -> {losses[-1]:.4f}"


@pytest.mark.parametrize(
    "lighter",
    [
        {"decoder_layers_per_block": 0},
        {"decoder_block_out_channels": [8, 8, 16], "decoder_mid_block_layers": 0},
    ],
    ids=["fewer-blocks", "narrower"],
)
def test_a_lighter_decoder_is_fine_tuned_alone_on_the_frozen_encoder(lighter, toy_corpus, trained_parts, tmp_path):
    """`--train_decoder_only` with a `vae:` section that cuts a lighter decoder: the encoder and the latent scale
    stay the pre-trained VAE's, bit for bit (a UNet trained on its latents keeps working); the lighter decoder
    learns and is saved with its settings."""
    config = tmp_path / "vae.yaml"
    config.write_text((TINY / "vae.yaml").read_text() + "".join(f"  {k}: {v}\n" for k, v in lighter.items()))
    argv = ["vae", "--config", str(config), *data_flags(toy_corpus), "--output_dir", str(tmp_path / "run")]
    extra = ["--max_train_steps", "3", "--num_validation_pairs", "1"]
    args = parse_args([*argv, *extra, "--pretrained_model", str(trained_parts[0]), "--train_decoder_only"])
    train(args, STAGES["vae"]())

    before, after = load_file(str(trained_parts[0] / "diffusion_pytorch_model.safetensors")), None
    after = load_file(str(tmp_path / "run" / "vae" / "diffusion_pytorch_model.safetensors"))
    for key, value in after.items():
        if key.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(value, before[key]), key
    decoder = [k for k in after if k.startswith("decoder.")]
    assert any(
        k in before and (after[k].shape != before[k].shape or not torch.equal(after[k], before[k])) for k in decoder
    )
    assert sum(after[k].numel() for k in decoder) < sum(
        v.numel() for k, v in before.items() if k.startswith("decoder.")
    )
    saved = json.loads((tmp_path / "run" / "vae" / "config.json").read_text())
    original = json.loads((trained_parts[0] / "config.json").read_text())
    assert {k: saved[k] for k in lighter} == lighter and saved["scaling_factor"] == original["scaling_factor"]

    with pytest.raises(ValueError, match="--train_decoder_only needs --pretrained_model"):
        STAGES["vae"]().build(parse_args([*argv, "--train_decoder_only"]), _cpu_accelerator(), {})


def test_a_narrower_encoder_is_distilled_to_the_pre_trained_latents(toy_corpus, trained_parts, tmp_path):
    """`--distill_encoder` with a `vae:` section that narrows the encoder: the lighter encoder learns the pre-trained
    VAE's latents (its error to them falls), while the decoder, post_quant_conv and the latent scale stay the
    pre-trained ones bit for bit, so the decoder and a UNet trained on those latents keep working."""
    narrow = {"encoder_block_out_channels": [8, 8, 8], "encoder_mid_block_layers": 0}
    config = tmp_path / "vae.yaml"
    config.write_text(
        (TINY / "vae.yaml").read_text().replace("learning_rate: 1.0e-3", "learning_rate: 3.0e-3")
        + "".join(f"  {k}: {v}\n" for k, v in narrow.items())
    )
    argv = ["vae", "--config", str(config), *data_flags(toy_corpus), "--output_dir", str(tmp_path / "run")]
    pretrained = ["--pretrained_model", str(trained_parts[0])]
    args = parse_args([*argv, *pretrained, "--distill_encoder", "--max_train_steps", "1"])
    stage, accelerator = STAGES["vae"](), _cpu_accelerator()
    model = stage.build(args, accelerator, {})
    teacher = stage.teacher
    assert sum(p.numel() for p in model.vae.encoder.parameters()) < sum(p.numel() for p in teacher.encoder.parameters())
    assert not any(p.requires_grad for p in [*model.vae.decoder.parameters(), *teacher.parameters()])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batch = next(iter(torch.utils.data.DataLoader(stage.train_dataset(args), batch_size=4)))
    losses = []
    for _ in range(30):  # one batch, over and over: the distillation loss must fall
        loss, logs = stage.loss(model, batch, accelerator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append((loss.item(), logs["latent_snr_db"]))
    assert losses[-1][0] < 0.5 * losses[0][0] and losses[-1][1] > losses[0][1] + 3, losses[::10]

    train(
        parse_args([*argv, *pretrained, "--distill_encoder", "--max_train_steps", "3", "--num_validation_pairs", "1"]),
        STAGES["vae"](),
    )
    before = load_file(str(trained_parts[0] / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(tmp_path / "run" / "vae" / "diffusion_pytorch_model.safetensors"))
    for key, value in after.items():
        if key.startswith(("decoder.", "post_quant_conv.")):
            assert torch.equal(value, before[key]), key
    saved = json.loads((tmp_path / "run" / "vae" / "config.json").read_text())
    original = json.loads((trained_parts[0] / "config.json").read_text())
    assert {k: saved[k] for k in narrow} == narrow and saved["scaling_factor"] == original["scaling_factor"]

    with pytest.raises(ValueError, match="--distill_encoder needs --pretrained_model"):
        STAGES["vae"]().build(parse_args([*argv, "--distill_encoder"]), _cpu_accelerator(), {})
    with pytest.raises(ValueError, match="train different halves"):
        STAGES["vae"]().build(
            parse_args([*argv, *pretrained, "--distill_encoder", "--train_decoder_only"]), _cpu_accelerator(), {}
        )


def _cpu_accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def _weights(folder: Path):
    return load_file(str(folder / "model.safetensors"))


def test_resume_is_exact(toy_corpus, tmp_path):
    """4 steps straight == 2 steps, then resume `latest`, then 2 more: bit-identical weights, optimizer and EMA."""
    common = ["--checkpointing_steps", "2", "--validation_steps", "100", "--num_validation_pairs", "1"]
    straight = stage_args("vae", toy_corpus, tmp_path / "a", extra=common + ["--max_train_steps", "4"])
    train(straight, STAGES["vae"]())
    first = stage_args("vae", toy_corpus, tmp_path / "b", extra=common + ["--max_train_steps", "2"])
    train(first, STAGES["vae"]())
    second = stage_args(
        "vae",
        toy_corpus,
        tmp_path / "b",
        extra=common + ["--max_train_steps", "4", "--resume_from_checkpoint", "latest"],
    )
    result = train(second, STAGES["vae"]())
    assert result.global_step == 4
    a = list_checkpoints(tmp_path / "a" / "vae")[-1]
    b = list_checkpoints(tmp_path / "b" / "vae")[-1]
    assert a.name == b.name == "checkpoint-4"
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    ema_a = torch.load(a / "custom_checkpoint_0.pkl", weights_only=False)  # our own file, written by this test
    ema_b = torch.load(b / "custom_checkpoint_0.pkl", weights_only=False)
    assert all(torch.equal(x, y) for x, y in zip(ema_a["shadow_params"], ema_b["shadow_params"]))
    final_a = load_file(str(tmp_path / "a" / "vae" / "vae" / "diffusion_pytorch_model.safetensors"))
    final_b = load_file(str(tmp_path / "b" / "vae" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_interrupted_checkpoint_is_never_picked(toy_corpus, tmp_path):
    from accelerate import Accelerator

    output = tmp_path / "run"
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    model = accelerator.prepare(model)
    save_checkpoint(accelerator, output, 2, {"stage": "vae"})

    def crash(path, *args, **kwargs):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "model.safetensors").write_bytes(b"half written")
        raise KeyboardInterrupt("killed while writing")

    accelerator.save_state = crash
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(accelerator, output, 4, {"stage": "vae"})
    assert [p.name for p in list_checkpoints(output)] == ["checkpoint-2"]
    assert resolve_checkpoint(output, "latest").name == "checkpoint-2"
    assert (output / "checkpoints" / ".tmp-checkpoint-4").exists()  # left behind, ignored, replaced next time


def test_checkpoint_rotation_keeps_the_last_k(tmp_path):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))
    for step in (1, 2, 3, 4):
        save_checkpoint(accelerator, tmp_path, step, {"stage": "vae"}, total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-4"]


def test_the_unet_gets_the_same_inputs_in_training_and_inference(toy_corpus, trained_parts, tmp_path):
    """What the pipeline hands the UNet for a one-window clip equals what the training stage encodes."""
    from accelerate import Accelerator

    from conftest import speech_like

    runner = STAGES["diffusion"]()
    accelerator = Accelerator(cpu=True)
    unet = runner.build(stage_args("diffusion", toy_corpus, tmp_path, trained_parts), accelerator, {})
    pipe = runner.pipeline(unet)
    pipe.set_precision("fp32")
    window, _ = pipe._window_geometry()
    audio = speech_like(window / 16000, seed=5)[0][:window]
    seen = {}

    def callback(pipe, step, timestep, kwargs):
        seen.update(kwargs)
        return {}

    pipe(
        audio,
        sampling_rate=16000,
        num_inference_steps=1,
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["noisy_latents", "encoder_hidden_states"],
    )
    wave = torch.from_numpy(audio)[None]
    _, z_noisy, tokens = runner.encode(0.3 * wave, wave, accelerator)  # clean != noisy: a swap would show
    assert seen["noisy_latents"].shape == z_noisy.shape and seen["encoder_hidden_states"].shape == tokens.shape
    torch.testing.assert_close(seen["noisy_latents"].float(), z_noisy, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(seen["encoder_hidden_states"].float(), tokens, atol=1e-5, rtol=1e-4)


def test_diffusion_stage_writes_a_loadable_pipeline_and_card(toy_corpus, trained_parts, tmp_path):
    from fuse_hf import FUSEPipeline

    args = stage_args("diffusion", toy_corpus, tmp_path, trained_parts, extra=["--max_train_steps", "2"])
    result = train(args, STAGES["diffusion"]())
    assert {"si_sdr", "guidance_off_si_sdr", "noisy_si_sdr"} <= set(result.record)
    folder = tmp_path / "diffusion" / "pipeline"
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: audio-to-audio" in card and "model-index" in card
    pipe = FUSEPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(np.zeros(8000, np.float32) + 0.01, sampling_rate=16000, num_inference_steps=1).audios
    assert out.shape == (8000,)
    assert (tmp_path / "diffusion" / "diffusion_curves.png").stat().st_size > 0


def test_diffusion_stage_trains_a_token_projection_and_widens_a_pretrained_unet(toy_corpus, trained_parts, tmp_path):
    """A `token_projection:` section on top of a pre-trained pipeline without one: the UNet gets zero-weighted input
    channels (step 0 is the pre-trained model), training moves them, and the saved pipeline holds the projection;
    a run from that pipeline keeps it, and a section cannot replace a trained one."""
    import yaml
    from safetensors.torch import load_file

    from fuse_hf import FUSEPipeline

    plain = stage_args("diffusion", toy_corpus, tmp_path / "plain", trained_parts, extra=["--max_train_steps", "1"])
    train(plain, STAGES["diffusion"]())
    pretrained = tmp_path / "plain" / "diffusion" / "pipeline"
    config = yaml.safe_load((TINY / "diffusion.yaml").read_text())
    config["token_projection"] = {"hidden_dim": 8, "out_channels": 3}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(config))
    flags = [*data_flags(toy_corpus), "--vae_path", str(trained_parts[0]), "--conditioner_path", str(trained_parts[1])]
    argv = ["diffusion", "--config", str(tmp_path / "grid.yaml"), *flags, "--pretrained_model", str(pretrained)]
    result = train(
        parse_args([*argv, "--output_dir", str(tmp_path / "grid"), "--max_train_steps", "3"]), STAGES["diffusion"]()
    )
    assert {"si_sdr", "guidance_off_si_sdr"} <= set(result.record)

    folder = tmp_path / "grid" / "pipeline"
    pipe = FUSEPipeline.from_pretrained(folder)
    latent_channels = pipe.vae.config.latent_channels
    assert pipe.unet.config.in_channels == 2 * latent_channels + 3
    assert pipe.token_projection.config.out_channels == 3 and pipe.token_projection.config.hidden_dim == 8
    before = load_file(str(pretrained / "unet" / "diffusion_pytorch_model.safetensors"))["conv_in.weight"]
    after = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))["conv_in.weight"]
    assert after[:, 2 * latent_channels :].abs().amax() > 0  # the new channels were trained from zero
    torch.testing.assert_close(after[:, : 2 * latent_channels], before, atol=0.05, rtol=0)  # a few small steps

    # Continuing from the new pipeline keeps its projection; a section may not replace it.
    again = ["diffusion", "--config", str(TINY / "diffusion.yaml"), *flags, "--pretrained_model", str(folder)]
    train(
        parse_args([*again, "--output_dir", str(tmp_path / "again"), "--max_train_steps", "1"]), STAGES["diffusion"]()
    )
    assert (tmp_path / "again" / "pipeline" / "token_projection" / "config.json").is_file()
    with pytest.raises(ValueError, match="cannot change a trained one"):
        bad = [*argv[:3], *flags, "--pretrained_model", str(folder), "--output_dir", str(tmp_path / "x")]
        train(parse_args(bad), STAGES["diffusion"]())


def test_config_errors_and_help(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_train_step: 3\n")
    with pytest.raises(ValueError, match="unknown option"):
        parse_args(["vae", "--config", str(bad)])
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--config",
        "--output_dir",
        "--seed",
        "--max_train_steps",
        "--train_batch_size",
        "--learning_rate",
        "--gradient_accumulation_steps",
        "--mixed_precision",
        "--checkpointing_steps",
        "--checkpoints_total_limit",
        "--resume_from_checkpoint",
        "--validation_steps",
        "--report_to",
        "--push_to_hub",
        "--hub_model_id",
        "--train_data_dir",
        "--speech_dir",
        "--noise_dir",
        "--dataset_name",
        "--prediction_type",
    ):
        assert flag in text
    args = parse_args(["vae", "--config", str(TINY / "vae.yaml"), "--learning_rate", "0.5"])
    assert args.learning_rate == 0.5 and args.max_train_steps == 20 and args.vae["latent_channels"] == 4


def test_speech_and_noise_from_several_folders(toy_corpus, tmp_path):
    from accelerate import Accelerator

    folders = [str(toy_corpus / "speech" / "train"), str(toy_corpus / "speech" / "valid")]
    args = stage_args("beats", toy_corpus, tmp_path, extra=["--speech_dir", *folders])
    assert args.speech_dir == folders
    runner = STAGES["beats"]()
    runner.build(args, Accelerator(cpu=True), {})
    assert [p.parent.name for p in runner.dataset.speech_files] == ["train"] * 3 + ["valid"] * 3


def test_unknown_loss_keys_are_an_error(tmp_path):
    from accelerate import Accelerator

    config = tmp_path / "typo.yaml"
    config.write_text((TINY / "vae.yaml").read_text() + "loss:\n  l1: 1.0\n  mrstf: 0.5\n")
    args = parse_args(["vae", "--config", str(config), "--output_dir", str(tmp_path / "run")])
    with pytest.raises(
        ValueError,
        match=r"^loss: unknown key\(s\) \['mrstf'\] for the vae stage; allowed: l1, mse, "
        r"log_mag, kl, mrstft\.$",
    ):
        train(args, STAGES["vae"]())
    args.loss = {"l1": 2.0}
    assert STAGES["vae"]().loss_weights(args) == {"l1": 2.0, "mse": 1.0, "log_mag": 1.0, "kl": 1e-6, "mrstft": 0.0}
    for stage in ("diffusion", "beats"):
        args = parse_args(
            [stage, "--config", str(TINY / f"{stage}.yaml"), "--vae_path", "v", "--conditioner_path", "c"]
        )
        args.loss = {"l1": 1.0}
        with pytest.raises(ValueError, match=f"for the {stage} stage; allowed: none"):
            STAGES[stage]().build(args, Accelerator(cpu=True), {})


@pytest.fixture(scope="module")
def paired_folder(toy_corpus, tmp_path_factory):
    """`clean/` + `noisy/` folders with matching names (the --train_data_dir layout)."""
    from conftest import speech_like

    root = tmp_path_factory.mktemp("paired")
    for i in range(3):
        clean = speech_like(1.2, seed=200 + i)[0]
        noise = np.random.default_rng(200 + i).standard_normal(clean.size).astype(np.float32) * 0.05
        for sub, audio in (("clean", clean), ("noisy", clean + noise)):
            (root / sub).mkdir(exist_ok=True)
            sf.write(root / sub / f"p{i}.wav", audio, 16000)
    return root


def test_vae_trains_without_validation_data_and_validates_when_given_some(paired_folder, tmp_path):
    common = [
        "vae",
        "--config",
        str(TINY / "vae.yaml"),
        "--train_data_dir",
        str(paired_folder),
        "--max_train_steps",
        "2",
        "--validation_steps",
        "1",
        "--num_validation_pairs",
        "1",
    ]
    result = train(parse_args(common + ["--output_dir", str(tmp_path / "plain")]), STAGES["vae"]())
    assert result.global_step == 2 and result.record == {}
    assert not (tmp_path / "plain" / "validation_history.jsonl").exists()
    assert (tmp_path / "plain" / "vae" / "diffusion_pytorch_model.safetensors").is_file()

    result = train(
        parse_args(common + ["--output_dir", str(tmp_path / "valid"), "--valid_data_dir", str(paired_folder)]),
        STAGES["vae"](),
    )
    history = [json.loads(line) for line in (tmp_path / "valid" / "validation_history.jsonl").read_text().splitlines()]
    assert [record["step"] for record in history] == [1, 2]
    assert np.isfinite(result.record["si_sdr"]) and np.isfinite(result.record["noisy_si_sdr"])


def test_logged_loss_is_the_mean_over_micro_batches(toy_corpus, tmp_path, monkeypatch):
    """With gradient accumulation, `train/loss` of a step is the mean of its micro-batches' losses (gathered over
    processes: one here), as diffusers' training examples log it, not the last micro-batch's."""
    from accelerate import Accelerator

    logged, losses = [], []
    monkeypatch.setattr(Accelerator, "log", lambda self, values, step=None, log_kwargs=None: logged.append(values))
    stage = STAGES["vae"]()
    compute = stage.loss

    def recording_loss(model, batch, accelerator):
        loss, logs = compute(model, batch, accelerator)
        losses.append(loss.item())
        return loss, logs

    stage.loss = recording_loss
    args = stage_args(
        "vae",
        toy_corpus,
        tmp_path,
        extra=["--max_train_steps", "2", "--gradient_accumulation_steps", "2", "--validation_steps", "100"],
    )
    train(args, stage)
    step_losses = [values["train/loss"] for values in logged if "train/loss" in values]
    assert len(losses) == 4 and len(step_losses) == 2
    np.testing.assert_allclose(step_losses, [np.mean(losses[:2]), np.mean(losses[2:])], rtol=1e-6)
    assert losses[1] != pytest.approx(losses[0])


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_diffusion_target_follows_the_scheduler_prediction_type(prediction_type):
    """A perfect prediction of the target makes the scheduler's step estimate exactly the clean latent."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        prediction_type=prediction_type,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
    )
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    for t in scheduler.timesteps[1:]:  # the first one has almost no signal left: epsilon is ill-posed there
        timesteps = torch.full((2,), int(t))
        noisy = scheduler.add_noise(clean, noise, timesteps)
        target = diffusion_target(scheduler, clean, noise, timesteps)
        estimate = scheduler.step(target, t, noisy).pred_original_sample
        torch.testing.assert_close(estimate, clean, rtol=1e-4, atol=1e-4)
    scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        diffusion_target(scheduler, clean, noise, timesteps)


def test_training_reads_the_front_end_from_the_vae_config(toy_corpus, tmp_path):
    from accelerate import Accelerator

    args = stage_args("vae", toy_corpus, tmp_path)
    args.vae = {**args.vae, "hop_length": 160, "compression_exponent": 0.3}
    stage = STAGES["vae"]()
    model = stage.build(args, Accelerator(cpu=True), {})
    assert stage.segment % 160 == 0 and ((stage.segment // 160 + 1) % 4) == 0
    assert stage.spectral["hop_length"] == 160 and stage.spectral["compression_exponent"] == 0.3
    assert model.vae.config.hop_length == 160 and model.vae.config.compression_exponent == 0.3
    assert stage.dataset[0]["clean"].shape == (stage.segment,)


def test_wrong_stage_checkpoint_is_refused(toy_corpus, tmp_path):
    args = stage_args("vae", toy_corpus, tmp_path, extra=["--max_train_steps", "1"])
    train(args, STAGES["vae"]())
    beats = parse_args(
        [
            "beats",
            "--config",
            str(TINY / "beats.yaml"),
            *data_flags(toy_corpus),
            "--output_dir",
            str(tmp_path / "vae"),
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    with pytest.raises(ValueError, match="own --output_dir"):
        train(beats, STAGES["beats"]())


DDP_SCRIPT = """
import hashlib, json, os, sys
import torch
from fuse_hf.training import STAGES, parse_args, train
result = train(parse_args(sys.argv[1:]), STAGES["vae"]())
digest = hashlib.sha256()
for name, tensor in sorted(result.model.state_dict().items()):
    digest.update(name.encode()); digest.update(tensor.detach().cpu().numpy().tobytes())
rank = os.environ["RANK"]
json.dump({"rank": rank, "digest": digest.hexdigest(), "step": result.global_step},
          open(os.path.join(os.environ["DIGEST_DIR"], f"rank{rank}.json"), "w"))
"""


def test_two_process_ddp_keeps_ranks_identical(toy_corpus, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {
        **os.environ,
        "DIGEST_DIR": str(tmp_path),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(script),
        "vae",
        "--config",
        str(TINY / "vae.yaml"),
        *data_flags(toy_corpus),
        "--output_dir",
        str(tmp_path / "ddp"),
        "--max_train_steps",
        "3",
        "--validation_steps",
        "100",
        "--num_validation_pairs",
        "1",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 3
    assert ranks[0]["digest"] == ranks[1]["digest"]


# ------------------------------------------------------------------------------------------ BEATs iteration 2


def _tokenizer_argv(root, output: Path, teacher, extra=()) -> list[str]:
    config = str(TINY / "beats-tokenizer.yaml")
    return ["beats_tokenizer", "--config", config, *data_flags(root), "--output_dir", str(output)] + [
        *(["--pretrained_model", str(teacher)] if teacher else []),
        *extra,
    ]


def test_beats_iteration_2_distils_a_tokenizer_then_pretrains_on_its_labels(toy_corpus, trained_parts, tmp_path):
    """`beats_tokenizer` distils a tokenizer from the tiny BEATs of `trained_parts` and writes `tokenizer/`, its
    validation reporting the cosine to the teacher and the codebook usage; the `beats` stage with `--tokenizer_path`
    then pre-trains on its labels (one label per code), warm-started from the same BEATs, leaves the tokenizer as
    it was and writes a `conditioner/` without it."""
    from fuse_hf.models.beats import BEATsModel, BEATsTokenizer

    teacher = trained_parts[1]
    extra = ["--max_train_steps", "2", "--num_validation_pairs", "1"]
    args = parse_args(_tokenizer_argv(toy_corpus, tmp_path / "tok", teacher, extra))
    result = train(args, STAGES["beats_tokenizer"]())
    record = result.record
    assert result.global_step == 2 and -1.0 <= record["cosine"] <= 1.0
    assert 1 <= record["codes_used"] <= 64 and 1.0 <= record["code_perplexity"] <= record["codes_used"] + 1e-4
    folder = tmp_path / "tok" / "tokenizer"
    tokenizer = BEATsTokenizer.from_pretrained(folder)
    assert tokenizer.config.teacher_dim == BEATsModel.from_pretrained(teacher).config.encoder_embed_dim
    assert (tmp_path / "tok" / "beats_tokenizer_curves.png").stat().st_size > 0

    argv = ["beats", "--config", str(TINY / "beats.yaml"), *data_flags(toy_corpus), "--output_dir", str(tmp_path / "2")]
    args = parse_args([*argv, *extra, "--pretrained_model", str(teacher), "--tokenizer_path", str(folder)])
    result = train(args, STAGES["beats"]())
    wrapper = result.model
    assert isinstance(wrapper.tokenizer, BEATsTokenizer) and wrapper.label_head.out_features == 64
    assert np.isfinite(result.record["masked_loss"])
    after = wrapper.tokenizer.state_dict()
    assert all(torch.equal(after[key], value) for key, value in tokenizer.state_dict().items())
    saved = _weights(tmp_path / "2" / "conditioner")
    assert saved.keys() == BEATsModel.from_pretrained(teacher).state_dict().keys()


def test_beats_iteration_2_config_errors_are_one_line_and_name_the_path(toy_corpus, trained_parts, tmp_path, capsys):
    from fuse_hf.training import main

    missing = tmp_path / "no-such-tokenizer"
    argv = ["beats", "--config", str(TINY / "beats.yaml"), *data_flags(toy_corpus), "--output_dir", str(tmp_path / "r")]
    assert main([*argv, "--tokenizer_path", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"--tokenizer_path {missing}: no such model folder" in err and err.count("\n") == 1
    accelerator = _cpu_accelerator()
    with pytest.raises(ValueError) as error:  # a conditioner where the tokenizer belongs
        STAGES["beats"]().build(parse_args([*argv, "--tokenizer_path", str(trained_parts[1])]), accelerator, {})
    assert str(error.value).startswith(f"--tokenizer_path {trained_parts[1]}: a 'beats' model, not a 'beats_tokenizer'")

    with pytest.raises(ValueError, match="the beats_tokenizer stage needs --pretrained_model"):
        STAGES["beats_tokenizer"]().build(parse_args(_tokenizer_argv(toy_corpus, tmp_path, None)), accelerator, {})
    typo = tmp_path / "typo.yaml"
    typo.write_text((TINY / "beats-tokenizer.yaml").read_text().replace("quant_dim:", "quant_dims:"))
    args = parse_args(_tokenizer_argv(toy_corpus, tmp_path, trained_parts[1], ["--config", str(typo)]))
    with pytest.raises(ValueError, match=r"beats: unknown key\(s\) \['quant_dims'\]"):
        STAGES["beats_tokenizer"]().build(args, accelerator, {})
