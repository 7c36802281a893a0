"""The training stages. Each says how to build its model, compute a loss, validate and save; the loop in
`loop.py` does everything else.

* `beats`: BEATs self-supervised pre-training on speech, noise and mixtures -> `conditioner/`; iteration 1
  (random-projection labels), or iteration 2 with `--tokenizer_path` (the labels of a distilled tokenizer);
* `beats_tokenizer`: the iteration-2 acoustic tokenizer, distilled from a frozen BEATs (`--pretrained_model`) on
  the same audio -> `tokenizer/`;
* `vae`: the spectral VAE, reconstructing clean *and* noisy spectrograms -> `vae/`;
* `diffusion`: the latent-diffusion UNet with the frozen VAE and the frozen BEATs -> a whole pipeline folder.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..spectral import HOP_LENGTH, SAMPLE_RATE, pad_frames, spectral_settings, to_spectrogram, to_waveform

# --------------------------------------------------------------------------------------------- shared

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def segment_samples_for(
    args, frame_multiple: int = 32, sampling_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH
) -> int:
    """Crop length in samples, about `--segment_seconds`, whose centred STFT (hop `hop_length` at `sampling_rate`)
    has a multiple of `frame_multiple` frames (no padding)."""
    frames = int(round(args.segment_seconds * sampling_rate / hop_length)) + 1
    frames = max(frame_multiple, int(round(frames / frame_multiple)) * frame_multiple)
    return (frames - 1) * hop_length


def has_validation_data(args) -> bool:
    """Whether a run validates: with paired folders (`--valid_data_dir`), validation speech (`--valid_speech_dir`)
    or, with a warning, mixtures of the training speech (`--speech_dir`). The same answer on every process."""
    return bool(args.valid_data_dir or args.valid_speech_dir or args.speech_dir)


def validation_pairs(args, segment_samples: int, sampling_rate: int = SAMPLE_RATE) -> list[dict[str, Any]]:
    """The fixed validation set: paired folders, or speech + noise mixed with a fixed seed; empty without
    validation data (see `has_validation_data`)."""
    from ..data import PairedFolderDataset, make_validation_pairs
    from ..data.files import as_file_list

    n = args.num_validation_pairs
    if not has_validation_data(args):
        return []
    if args.valid_data_dir:
        dataset = PairedFolderDataset(
            args.valid_data_dir, segment_samples, sample_rate=sampling_rate, seed=args.seed + 1
        )
        return [
            {**{k: v.numpy() for k, v in dataset[i].items()}, "name": f"valid{i:03d}"}
            for i in range(min(n, len(dataset)))
        ]
    speech_dir = args.valid_speech_dir or args.speech_dir
    noise_dir = args.valid_noise_dir or (args.noise_dir if args.valid_speech_dir is None else None)
    if args.valid_speech_dir is None:
        warnings.warn(
            "No --valid_speech_dir/--valid_data_dir: validating on mixtures of the TRAINING speech.", stacklevel=2
        )
    speech, noise = as_file_list(speech_dir, "Validation speech"), as_file_list(noise_dir, "Validation noise")
    return make_validation_pairs(speech, noise, n, segment_samples, seed=args.seed + 1, sample_rate=sampling_rate)


def _metric_names(args) -> tuple[str, ...]:
    return tuple(m.strip() for m in args.validation_metrics.split(",") if m.strip())


def mean_metrics(rows: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    """Per-key mean of the finite values of metric rows (nan where a key has none), keys prefixed."""
    from ..metrics import nanmean

    keys = sorted({k for r in rows for k in r})
    return {prefix + k: nanmean(r.get(k) for r in rows) for k in keys}


def diffusion_target(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict for a noisy latent `scheduler.add_noise(clean, noise, timesteps)`, following
    `scheduler.config.prediction_type`: the noise (``"epsilon"``), the velocity ``sqrt(a) * noise - sqrt(1 - a) *
    clean`` (``"v_prediction"``) or the clean latent itself (``"sample"``). Same shape as `clean`."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    if prediction_type == "sample":
        return clean
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")


def multi_resolution_stft_loss(
    estimate: torch.Tensor, target: torch.Tensor, resolutions=((256, 64), (512, 128), (1024, 256))
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1 over several STFT sizes, on `(batch, samples)` waveforms."""
    total = estimate.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=estimate.device)
        est = torch.stft(estimate.float(), n_fft, hop, window=window, return_complex=True).abs()
        ref = torch.stft(target.float(), n_fft, hop, window=window, return_complex=True).abs()
        convergence = torch.linalg.norm(ref - est) / torch.linalg.norm(ref).clamp_min(1e-8)
        log_mag = F.l1_loss(torch.log(est + 1e-5), torch.log(ref + 1e-5))
        total = total + convergence + log_mag
    return total / len(resolutions)


class Stage:
    """A training stage; `build` sets `self.dataset` (the training data) and returns the model to train."""

    name = "stage"
    DEFAULT_LOSS: dict[str, float] = {}  # the weights a config's `loss:` section may set

    def train_dataset(self, args):
        return self.dataset

    def state(self) -> dict[str, Any]:
        return {}

    def validates(self, args) -> bool:
        """Whether the loop calls `validate` (only with validation data: `has_validation_data`)."""
        return has_validation_data(args)

    def loss_weights(self, args) -> dict[str, float]:
        """The stage's default loss weights updated by the config's `loss:` section.

        Raises:
            ValueError: a key the stage does not know (a typo must not train with the default weight).
        """
        unknown = sorted(set(args.loss) - set(self.DEFAULT_LOSS))
        if unknown:
            allowed = ", ".join(self.DEFAULT_LOSS) or "none (this stage has no loss weights)"
            raise ValueError(f"loss: unknown key(s) {unknown} for the {self.name} stage; allowed: {allowed}.")
        return {**self.DEFAULT_LOSS, **args.loss}

    def push_to_hub(self, final_dir: Path, args) -> None:
        from ..hub import push_folder_to_hub, push_pipeline_folder

        if not args.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id user/name.")
        if (final_dir / "model_index.json").is_file():  # a pipeline: card for this repo + remote code
            push_pipeline_folder(final_dir, args.hub_model_id, token=args.hub_token)
        else:
            push_folder_to_hub(final_dir, args.hub_model_id, token=args.hub_token)


# ------------------------------------------------------------------------------------------------ vae


# The `vae:` keys that cut a lighter decoder or encoder from --pretrained_model (`with_lighter_decoder` / `_encoder`).
_LIGHTER_KEYS = {
    "decoder": ("decoder_layers_per_block", "decoder_block_out_channels", "decoder_mid_block_layers"),
    "encoder": ("encoder_block_out_channels", "encoder_mid_block_layers"),
}


def _as_config_value(value):
    """A YAML list as diffusers stores it in a config (a tuple), to compare with `model.config`."""
    return tuple(value) if isinstance(value, list) else value


class VAEStage(Stage):
    """Spectral VAE: L1 + MSE on the normalised spectrogram, log-magnitude L1, a small KL term and an optional
    multi-resolution STFT loss on the waveform. Trained on clean and noisy crops alike, because it must encode
    noisy inputs and decode clean outputs."""

    name = "vae"
    DEFAULT_LOSS = {"l1": 1.0, "mse": 1.0, "log_mag": 1.0, "kl": 1e-6, "mrstft": 0.0}

    def build(self, args, accelerator, resumed_state):
        from ..data import build_train_dataset
        from ..models.autoencoder_spectral import SpectralAutoencoderKL

        self.args, self.device = args, accelerator.device
        self.weights = self.loss_weights(args)
        self.teacher = None  # with --distill_encoder: the pre-trained VAE whose latents the lighter encoder learns
        config = dict(args.vae)
        if args.representation:
            config["representation"] = args.representation
        # The front end (rate, STFT, compression) is the pre-trained VAE's, or the `vae:` section's over the defaults.
        front_end = SpectralAutoencoderKL.load_config(args.pretrained_model) if args.pretrained_model else config
        self.sampling_rate = int(front_end.get("sampling_rate", SAMPLE_RATE))
        self.spectral = spectral_settings(front_end)
        self.segment = segment_samples_for(args, 4, self.sampling_rate, self.spectral["hop_length"])
        args.segment_samples, args.sample_rate = self.segment, self.sampling_rate
        self.dataset = build_train_dataset(args)
        self.representation = config.get("representation", "complex")
        if args.pretrained_model:
            model = SpectralAutoencoderKL.from_pretrained(args.pretrained_model)
            # A `vae:` section may cut a lighter decoder or encoder from the pre-trained one.
            for part, keys in _LIGHTER_KEYS.items():
                lighter = {
                    key: config[key]
                    for key in keys
                    if config.get(key) is not None and _as_config_value(config[key]) != model.config.get(key)
                }
                if lighter:
                    if part == "encoder" and args.distill_encoder:
                        self.teacher = model.requires_grad_(False).eval()  # the latents to distil
                    model = getattr(model, f"with_lighter_{part}")(**lighter)
            self.representation = model.config.representation
            self.input_scale = float(model.config.input_scale)
        else:
            self.input_scale = float(
                resumed_state.get("input_scale") or config.pop("input_scale", None) or self.measure_input_scale()
            )
            config.pop("input_scale", None)
            model = SpectralAutoencoderKL(**config, input_scale=self.input_scale)
        if args.train_decoder_only and args.distill_encoder:
            raise ValueError("--train_decoder_only and --distill_encoder train different halves: give one.")
        if args.train_decoder_only:
            if not args.pretrained_model:
                raise ValueError("--train_decoder_only needs --pretrained_model: the VAE whose encoder stays frozen.")
            for frozen in (model.encoder, model.quant_conv):
                if frozen is not None:
                    frozen.requires_grad_(False)
        if args.distill_encoder:
            if self.teacher is None:
                raise ValueError(
                    "--distill_encoder needs --pretrained_model and a `vae:` section that makes its encoder lighter "
                    "(encoder_block_out_channels, encoder_mid_block_layers)."
                )
            self.teacher.to(accelerator.device)
            for frozen in (model.decoder, model.post_quant_conv):
                if frozen is not None:
                    frozen.requires_grad_(False)
        accelerator.print(f"VAE: {self.representation} spectrograms, input_scale {self.input_scale:.4f}")
        self.pairs = validation_pairs(args, self.segment, self.sampling_rate) if accelerator.is_main_process else []
        return VAETrainingModule(model)

    def measure_input_scale(self, items: int = 64) -> float:
        """RMS of the compressed spectrogram over training crops (clean and noisy): the normalising scale."""
        squares, count = 0.0, 0
        for i in range(min(items, len(self.dataset))):
            item = self.dataset[i]
            wave = torch.stack([item["clean"], item["noisy"]])
            spec, _ = to_spectrogram(wave, self.representation, 1.0, **self.spectral)
            squares += float(spec.double().pow(2).sum())
            count += spec.numel()
        return float(np.sqrt(squares / max(count, 1)))

    def state(self):
        return {"input_scale": self.input_scale, "representation": self.representation}

    def loss(self, model, batch, accelerator):
        w = self.weights
        wave = torch.cat([batch["clean"], batch["noisy"]]).to(accelerator.device)
        with torch.no_grad():
            spec, compressed = to_spectrogram(wave, self.representation, self.input_scale, **self.spectral)
        if self.teacher is not None:
            return self.distillation_loss(model, spec)
        rec, posterior = model(spec)
        rec = rec.float()
        logs = {}
        total = rec.new_zeros(())
        for key, value in (("l1", F.l1_loss(rec, spec)), ("mse", F.mse_loss(rec, spec))):
            logs[key] = value.item()
            total = total + w[key] * value
        if w["log_mag"]:
            log_mag = F.l1_loss(_log_magnitude(rec), _log_magnitude(spec))
            logs["log_mag"] = log_mag.item()
            total = total + w["log_mag"] * log_mag
        if w["kl"]:
            kl = posterior.kl().mean() / spec[0].numel()
            logs["kl"] = kl.item()
            total = total + w["kl"] * kl
        if w["mrstft"]:
            estimate = to_waveform(
                rec, wave.shape[-1], self.representation, self.input_scale, compressed, **self.spectral
            )
            mrstft = multi_resolution_stft_loss(estimate, wave)
            logs["mrstft"] = mrstft.item()
            total = total + w["mrstft"] * mrstft
        logs["mse_over_zero"] = logs["mse"] / max(float(spec.pow(2).mean()), 1e-12)
        return total, logs

    def distillation_loss(self, model, spec: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE between the lighter encoder's posterior and the teacher's on the same crops: the means in the scaled
        latent space the UNet works in (about unit variance), plus the log-variances at a tenth of that weight."""
        with torch.no_grad():
            target = self.teacher.encode(spec).latent_dist
        posterior = model(spec, decode=False)
        scale = self.teacher.config.scaling_factor
        wanted = target.mean * scale
        mean = F.mse_loss(posterior.mean * scale, wanted)
        logvar = F.mse_loss(posterior.logvar, target.logvar)
        snr_db = 10 * torch.log10(wanted.pow(2).mean() / mean.detach().clamp_min(1e-20))
        logs = {"latent_mse": mean.item(), "logvar_mse": logvar.item(), "latent_snr_db": snr_db.item()}
        return mean + 0.1 * logvar, logs

    def round_trip(self, model, wave: np.ndarray) -> np.ndarray:
        """Encode (posterior mean), decode and synthesise one clip, as the pipeline does (magnitude: input phase)."""
        model = getattr(model, "vae", model)
        x = torch.from_numpy(np.asarray(wave, np.float32))[None].to(self.device)
        spec, compressed = to_spectrogram(x, self.representation, self.input_scale, **self.spectral)
        frames = spec.shape[-1]
        latents = model.encode(pad_frames(spec, model.downsample_factor)).latent_dist.mode()
        rec = model.decode(latents).sample[..., :frames]
        waveform = to_waveform(rec, x.shape[-1], self.representation, self.input_scale, compressed, **self.spectral)
        return waveform[0].cpu().numpy()

    def validate(self, model, step, accelerator):
        from ..metrics import compute_metrics
        from ..plotting import plot_spectrograms

        clean_rows, noisy_rows, figure = [], [], None
        for k, pair in enumerate(self.pairs):
            clean_rt = self.round_trip(model, pair["clean"])
            noisy_rt = self.round_trip(model, pair["noisy"])
            rate = self.sampling_rate
            clean_rows.append(compute_metrics(pair["clean"], clean_rt, rate, _metric_names(self.args)))
            noisy_rows.append(compute_metrics(pair["noisy"], noisy_rt, rate, ("si_sdr",)))
            if k == 0:
                signals = {
                    "clean": pair["clean"],
                    "VAE round trip": clean_rt,
                    "noisy": pair["noisy"],
                    "noisy round trip": noisy_rt,
                }
                figure = plot_spectrograms(
                    signals,
                    rate,
                    Path(self.args.output_dir) / "figures" / f"vae_step{step:07d}.png",
                    title=f"VAE ({self.representation}) at step {step}",
                )
        return {**mean_metrics(clean_rows), **mean_metrics(noisy_rows, prefix="noisy_"), "figure": figure}

    def save_final(self, model, args, record):
        from ..plotting import plot_curves
        from .loop import read_history

        model = model.vae
        # A frozen encoder keeps its latents (a distilled one writes its teacher's), and a UNet trained on them keeps
        # the scale it was trained with.
        kept = args.train_decoder_only or args.distill_encoder
        scale = model.config.scaling_factor if kept else self.measure_scaling_factor(model)
        model.register_to_config(scaling_factor=scale, input_scale=self.input_scale)
        target = Path(args.output_dir) / "vae"
        model.save_pretrained(target)
        history = read_history(args.output_dir)
        if history:
            (target.parent / "vae_validation.json").write_text(json.dumps(history, indent=2))
            plot_curves(
                history,
                ["pesq", "estoi", "si_sdr", "noisy_si_sdr"],
                Path(args.output_dir) / "vae_curves.png",
                title=f"VAE ({self.representation}) round trip of clean validation speech",
            )
        return target

    @torch.no_grad()
    def measure_scaling_factor(self, model, items: int = 32) -> float:
        """`1 / std` of the latent posterior means over training crops: unit-variance latents for diffusion."""
        model.eval()
        latents = []
        for i in range(min(items, len(self.dataset))):
            item = self.dataset[i]
            wave = torch.stack([item["clean"], item["noisy"]]).to(self.device)
            spec, _ = to_spectrogram(wave, self.representation, self.input_scale, **self.spectral)
            latents.append(model.encode(pad_frames(spec, model.downsample_factor)).latent_dist.mode().float().cpu())
        return float(1.0 / torch.cat(latents).std())


class VAETrainingModule(torch.nn.Module):
    """One `forward` for encode + sample + decode, so that DistributedDataParallel sees (and syncs) the whole step."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, spec: torch.Tensor, decode: bool = True):
        """`(decoded spectrogram, posterior)`, or the posterior alone with `decode=False` (encoder distillation)."""
        posterior = self.vae.encode(spec).latent_dist
        if not decode:
            return posterior
        return self.vae.decode(posterior.sample()).sample, posterior


def _log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """Log magnitude of a normalised spectrogram: complex `(B, 2, F, T)` or magnitude `(B, 1, F, T)`."""
    # The epsilon inside the root keeps its gradient finite where both channels are zero (NaN otherwise).
    magnitude = (spec.pow(2).sum(dim=1) + 1e-8).sqrt() if spec.shape[1] == 2 else spec[:, 0].abs()
    return torch.log(magnitude + 1e-3)


# ------------------------------------------------------------------------------------------ diffusion


class UNetWithTokenProjection(torch.nn.Module):
    """The UNet and its [`TokenGridProjection`] as one module, so that the optimizer, EMA and checkpoints hold both."""

    def __init__(self, unet, token_projection):
        super().__init__()
        self.unet, self.token_projection = unet, token_projection

    def forward(self, sample, timesteps, encoder_hidden_states):
        """`sample` `(batch, 2 * latent_channels, freq, frames)`; the tokens' grid channels are appended (zero for
        the tokens that conditioning dropout zeroed)."""
        aligned = self.token_projection(encoder_hidden_states, sample.shape[-2], sample.shape[-1])
        sample = torch.cat([sample, aligned.to(sample.dtype)], dim=1)
        return self.unet(sample, timesteps, encoder_hidden_states=encoder_hidden_states)


def _split_denoiser(model):
    """`(unet, token_projection or None)` of what the diffusion stage trains."""
    if isinstance(model, UNetWithTokenProjection):
        return model.unet, model.token_projection
    return model, None


class DiffusionStage(Stage):
    """The UNet learns to denoise the clean latent given the noisy latent and BEATs tokens, predicting what the
    scheduler's `prediction_type` says (v-prediction for FUSE, `--prediction_type` to change it); the tokens are
    replaced by zeros with probability `--conditioning_dropout`, so the same model runs without them.

    With a `token_projection:` section (or a `--pretrained_model` that has one), the tokens also enter as channels
    on the latent grid, aligned in time and frequency ([`TokenGridProjection`]); a pre-trained UNet without them
    gets zero-weighted input channels for them (`widen_unet_input`), so training starts from exactly its output."""

    name = "diffusion"

    def build(self, args, accelerator, resumed_state):
        from diffusers import UNet2DConditionModel

        from ..data import build_train_dataset
        from ..factory import make_scheduler, make_token_projection, make_unet, widen_unet_input
        from ..models.autoencoder_spectral import SpectralAutoencoderKL
        from ..models.beats import BEATsModel
        from ..models.token_projection import TokenGridProjection

        if not args.vae_path or not args.conditioner_path:
            raise ValueError("the diffusion stage needs --vae_path (a trained VAE) and --conditioner_path (a BEATs).")
        self.loss_weights(args)  # none: only rejects a `loss:` section
        self.args, self.device = args, accelerator.device
        self.scheduler = make_scheduler()
        if args.prediction_type is not None:
            if args.prediction_type == "epsilon" and self.scheduler.config.rescale_betas_zero_snr:
                raise ValueError(
                    "--prediction_type epsilon is undefined at the zero terminal SNR FUSE samples from; "
                    "use v_prediction or sample."
                )
            self.scheduler.register_to_config(prediction_type=args.prediction_type)
        self.vae = SpectralAutoencoderKL.from_pretrained(args.vae_path).to(self.device).eval().requires_grad_(False)
        conditioner = BEATsModel.from_pretrained(args.conditioner_path)
        self.conditioner = conditioner.to(self.device).eval().requires_grad_(False)
        self.sampling_rate, hop_length = int(self.vae.config.sampling_rate), int(self.vae.config.hop_length)
        unet_levels = len(args.unet.get("block_out_channels", (1, 1, 1, 1)))
        frame_multiple = self.vae.downsample_factor * 2 ** (unet_levels - 1)
        self.segment = segment_samples_for(args, frame_multiple, self.sampling_rate, hop_length)
        args.segment_samples, args.sample_rate = self.segment, self.sampling_rate
        self.dataset = build_train_dataset(args)
        frames = self.segment // hop_length + 1
        condition_dim = self.conditioner.config.encoder_embed_dim
        projection = None
        pretrained_projection = Path(args.pretrained_model or "") / "token_projection"
        if args.pretrained_model and pretrained_projection.is_dir():
            if args.token_projection:
                raise ValueError(
                    f"{pretrained_projection} exists: a `token_projection:` section cannot change a trained one."
                )
            projection = TokenGridProjection.from_pretrained(pretrained_projection)
        elif args.token_projection:
            projection = make_token_projection(self.vae, condition_dim, **args.token_projection)
        token_channels = projection.config.out_channels if projection is not None else 0
        if args.pretrained_model:
            unet = UNet2DConditionModel.from_pretrained(Path(args.pretrained_model) / "unet")
            unet = widen_unet_input(unet, 2 * self.vae.config.latent_channels + token_channels)
        else:
            unet = make_unet(
                latent_channels=self.vae.config.latent_channels,
                condition_dim=condition_dim,
                latent_frames=frames // self.vae.downsample_factor,
                latent_freq=self.vae.config.sample_size // self.vae.downsample_factor,
                token_channels=token_channels,
                **args.unet,
            )
        self.pairs = validation_pairs(args, self.segment * 2, self.sampling_rate) if accelerator.is_main_process else []
        return unet if projection is None else UNetWithTokenProjection(unet, projection)

    @torch.no_grad()
    def encode(self, clean: torch.Tensor, noisy: torch.Tensor, accelerator):
        """Frozen encoders: `(clean latents, noisy latents, BEATs tokens)` for waveforms `(batch, samples)`."""
        from ..pipelines.encoding import encode_condition, encode_spectral_latents

        # The whole batch in one pass: the validation pipeline switches this shared VAE to slicing (window by window).
        self.vae.disable_slicing()
        with accelerator.autocast():
            both, _, _ = encode_spectral_latents(self.vae, torch.cat([clean, noisy]))
            tokens, _ = encode_condition(self.conditioner, noisy)
        z_clean, z_noisy = both.float().chunk(2)
        return z_clean, z_noisy, tokens.float()

    def loss(self, model, batch, accelerator):
        clean, noisy = batch["clean"].to(self.device), batch["noisy"].to(self.device)
        z_clean, z_noisy, tokens = self.encode(clean, noisy, accelerator)
        batch_size = z_clean.shape[0]
        drop = torch.rand(batch_size, device=self.device) < self.args.conditioning_dropout
        tokens = torch.where(drop[:, None, None], torch.zeros_like(tokens), tokens)
        noise = torch.randn_like(z_clean)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (batch_size,), device=self.device)
        noisy_latents = self.scheduler.add_noise(z_clean, noise, timesteps)
        target = diffusion_target(self.scheduler, z_clean, noise, timesteps)
        sample = torch.cat([noisy_latents, z_noisy], dim=1)
        prediction = model(sample, timesteps, encoder_hidden_states=tokens).sample
        loss = F.mse_loss(prediction.float(), target.float())
        return loss, {}

    def pipeline(self, model):
        """A FUSEPipeline around what is being trained (the UNet, or the UNet and its token projection)."""
        from diffusers import DDIMScheduler

        from ..models.beats import BEATsFeatureExtractor
        from ..pipelines.pipeline_fuse import FUSEPipeline

        unet, projection = _split_denoiser(model)
        scheduler = DDIMScheduler.from_config(self.scheduler.config)  # its own: set_timesteps changes its state
        pipe = FUSEPipeline(
            vae=self.vae,
            conditioner=self.conditioner,
            unet=unet,
            scheduler=scheduler,
            feature_extractor=BEATsFeatureExtractor(),
            token_projection=projection,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(self, model, step, accelerator):
        from ..metrics import compute_metrics
        from ..plotting import plot_spectrograms

        pipe = self.pipeline(model)
        rate, steps = self.sampling_rate, self.args.num_inference_steps
        rows, rows_off, figure = [], [], None
        for k, pair in enumerate(self.pairs):
            gen = torch.Generator().manual_seed(k)
            out = pipe(pair["noisy"], sampling_rate=rate, num_inference_steps=steps, generator=gen).audios
            rows.append(compute_metrics(pair["clean"], out, rate, _metric_names(self.args)))
            off = pipe(
                pair["noisy"],
                sampling_rate=rate,
                num_inference_steps=steps,
                generator=torch.Generator().manual_seed(k),
                guidance_scale=0.0,
            ).audios
            rows_off.append(compute_metrics(pair["clean"], off, rate, ("si_sdr",)))
            if k == 0:
                figure = plot_spectrograms(
                    {"noisy": pair["noisy"], "enhanced": out, "clean": pair["clean"]},
                    rate,
                    Path(self.args.output_dir) / "figures" / f"diffusion_step{step:07d}.png",
                    title=f"FUSE at step {step}, {steps} steps",
                )
        noisy = [compute_metrics(p["clean"], p["noisy"], rate, ("si_sdr",)) for p in self.pairs]
        return {
            **mean_metrics(rows),
            **mean_metrics(rows_off, "guidance_off_"),
            **mean_metrics(noisy, "noisy_"),
            "figure": figure,
        }

    def save_final(self, model, args, record):
        from ..model_card import write_model_card
        from ..plotting import plot_curves
        from .loop import read_history

        target = Path(args.output_dir) / "pipeline"
        self.pipeline(model).save_pretrained(target)
        history = read_history(args.output_dir)
        if history:
            plot_curves(
                history,
                ["pesq", "estoi", "si_sdr", "guidance_off_si_sdr"],
                Path(args.output_dir) / "diffusion_curves.png",
                title="FUSE validation",
            )
        write_model_card(
            target,
            metrics={
                k: v
                for k, v in record.items()
                if k in ("pesq", "estoi", "si_sdr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
            },
            training_args=args,
        )
        return target


# ---------------------------------------------------------------------------------------------- beats


def beats_training_mix(batch: dict[str, torch.Tensor], device) -> torch.Tensor:
    """What BEATs hears in training: per crop, 30 % clean speech, 20 % the noise alone, 50 % the mixture, so that
    the features describe noisy speech. `(batch, samples)` on `device`."""
    clean, noisy = batch["clean"].to(device), batch["noisy"].to(device)
    choice = torch.rand(clean.shape[0], device=device)[:, None]
    return torch.where(choice < 0.3, clean, torch.where(choice < 0.5, noisy - clean, noisy))


def _model_folder(path, option: str, model_type: str, made_by: str) -> Path:
    """`path` as a folder whose config.json is of `model_type`; else a one-line `ValueError` naming the path."""
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"{option} {path}: no such model folder (no config.json); {made_by}.")
    found = json.loads(config.read_text()).get("model_type")
    if found != model_type:
        raise ValueError(f"{option} {path}: a {found!r} model, not a {model_type!r} one; {made_by}.")
    return folder


class BEATsStage(Stage):
    """BEATs pre-training, 75 % masked patches: iteration 1 with the frozen random-projection tokenizer, iteration 2
    with `--tokenizer_path` (a tokenizer distilled by the `beats_tokenizer` stage, frozen). Each crop is clean
    speech, noise alone or a mixture (`beats_training_mix`)."""

    name = "beats"

    def build(self, args, accelerator, resumed_state):
        from ..data import build_train_dataset
        from ..factory import make_conditioner
        from ..models.beats import BEATsModel, BEATsTokenizer
        from ..models.beats_pretraining import BEATsForPretraining

        self.loss_weights(args)  # none: only rejects a `loss:` section
        tokenizer = None
        if args.tokenizer_path:  # iteration 2; checked first, before the data is read
            made_by = "`train.py beats_tokenizer` writes one to OUTPUT_DIR/tokenizer"
            folder = _model_folder(args.tokenizer_path, "--tokenizer_path", "beats_tokenizer", made_by)
            tokenizer = BEATsTokenizer.from_pretrained(folder)
        self.args, self.device = args, accelerator.device
        # BEATs hears 16 kHz audio (its filterbank is fixed): the default rate and hop.
        self.segment = segment_samples_for(args, frame_multiple=1)
        args.segment_samples = self.segment
        self.dataset = build_train_dataset(args)
        config = dict(args.beats)
        pretraining = dict(config.pop("pretraining", {}) or {})
        if args.pretrained_model:
            encoder = BEATsModel.from_pretrained(args.pretrained_model)
        else:
            encoder = make_conditioner(**config)
        self.pairs = validation_pairs(args, self.segment) if accelerator.is_main_process else []
        return BEATsForPretraining(encoder, tokenizer=tokenizer, **pretraining)

    def loss(self, model, batch, accelerator):
        out = model(beats_training_mix(batch, self.device))
        return out["loss"], {"accuracy": float(out["accuracy"])}

    def validate(self, model, step, accelerator):
        accuracies, losses = [], []
        for k, pair in enumerate(self.pairs):
            for wave in (pair["noisy"], pair["clean"]):
                out = model(torch.from_numpy(wave)[None].to(self.device), generator=torch.Generator().manual_seed(k))
                accuracies.append(float(out["accuracy"]))
                losses.append(float(out["loss"]))
        return {"masked_accuracy": float(np.mean(accuracies)), "masked_loss": float(np.mean(losses))}

    def save_final(self, model, args, record):
        from ..convert_beats import save_beats_folder
        from ..plotting import plot_curves
        from .loop import read_history

        target = Path(args.output_dir) / "conditioner"
        save_beats_folder(model.encoder, target)  # the model and its feature extractor
        history = read_history(args.output_dir)
        if history:
            plot_curves(
                history,
                ["masked_accuracy", "masked_loss"],
                Path(args.output_dir) / "beats_curves.png",
                title="BEATs pre-training (valid)",
            )
        return target


class BEATsTokenizerStage(Stage):
    """The BEATs iteration-2 acoustic tokenizer ([`BEATsTokenizer`]), distilled from a frozen BEATs teacher
    (`--pretrained_model`, the iteration-1 conditioner): its estimator learns the teacher's last-layer features from
    the codes, on the `beats` stage's mix of clean speech, noise alone and mixtures. The `beats:` section holds the
    tokenizer's [`BEATsTokenizerConfig`] fields; the teacher fixes the patch size and the width to predict.
    Validation reports the mean cosine similarity to the teacher and how much of the codebook the labels use."""

    name = "beats_tokenizer"

    def build(self, args, accelerator, resumed_state):
        import inspect

        from ..data import build_train_dataset
        from ..models.beats import BEATsConfig, BEATsModel, BEATsTokenizer, BEATsTokenizerConfig

        self.loss_weights(args)  # none: the commitment weight is a field of the `beats:` section
        if not args.pretrained_model:
            raise ValueError(
                "the beats_tokenizer stage needs --pretrained_model: the BEATs folder (iteration-1 conditioner) to "
                "distil."
            )
        made_by = "`train.py beats` writes one to OUTPUT_DIR/conditioner"
        teacher_folder = _model_folder(args.pretrained_model, "--pretrained_model", "beats", made_by)
        config = dict(args.beats)
        # PretrainedConfig keeps unknown keys as attributes: a typo would silently train with a default.
        fields = {*inspect.signature(BEATsTokenizerConfig).parameters, *inspect.signature(BEATsConfig).parameters}
        unknown = sorted(set(config) - (fields - {"kwargs"}))
        if unknown:
            raise ValueError(f"beats: unknown key(s) {unknown} for the beats_tokenizer stage (BEATsTokenizerConfig).")
        teacher = BEATsModel.from_pretrained(teacher_folder)
        for key, value in (
            ("input_patch_size", teacher.config.input_patch_size),
            ("teacher_dim", teacher.config.encoder_embed_dim),
        ):
            if config.setdefault(key, value) != value:
                raise ValueError(f"beats: {key} {config[key]} differs from the teacher's {value}; leave it out.")
        self.args, self.device = args, accelerator.device
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.segment = segment_samples_for(args, frame_multiple=1)  # 16 kHz, as the `beats` stage
        args.segment_samples = self.segment
        self.dataset = build_train_dataset(args)
        self.pairs = validation_pairs(args, self.segment) if accelerator.is_main_process else []
        return BEATsTokenizer(BEATsTokenizerConfig(**config))

    @torch.no_grad()
    def teacher_inputs(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(filterbank (batch, frames, 128), the teacher's last-layer features (batch, tokens, width))` of a
        `(batch, samples)` waveform."""
        fbank_features = self.teacher.preprocess(wave)
        return fbank_features, self.teacher.encode_fbank(fbank_features)[0].float()

    def loss(self, model, batch, accelerator):
        from ..models.beats.modeling_beats_tokenizer import code_perplexity

        fbank_features, target = self.teacher_inputs(beats_training_mix(batch, self.device))
        out = model(input_features=fbank_features, target_features=target)
        codebook_size = accelerator.unwrap_model(model).codebook_size
        return out["loss"], {
            "cosine": float(out["cosine"]),
            "commitment": out["commitment"].item(),
            "code_perplexity": float(code_perplexity(out["codes"], codebook_size)),
        }

    def validate(self, model, step, accelerator):
        from ..models.beats.modeling_beats_tokenizer import code_perplexity

        cosines, codes = [], []
        for pair in self.pairs:
            for wave in (pair["noisy"], pair["clean"]):
                fbank_features, target = self.teacher_inputs(torch.from_numpy(wave)[None].to(self.device))
                out = model(input_features=fbank_features, target_features=target)
                cosines.append(float(out["cosine"]))
                codes.append(out["codes"].flatten().cpu())
        if not codes:
            return {}
        codes = torch.cat(codes)
        return {
            "cosine": float(np.mean(cosines)),
            "codes_used": int(codes.unique().numel()),
            "code_perplexity": float(code_perplexity(codes, model.codebook_size)),
        }

    def save_final(self, model, args, record):
        from ..plotting import plot_curves
        from .loop import read_history

        target = Path(args.output_dir) / "tokenizer"
        model.save_pretrained(target)
        history = read_history(args.output_dir)
        if history:
            plot_curves(
                history,
                ["cosine", "codes_used", "code_perplexity"],
                Path(args.output_dir) / "beats_tokenizer_curves.png",
                title="BEATs tokenizer distillation (valid)",
            )
        return target


STAGES = {"vae": VAEStage, "diffusion": DiffusionStage, "beats": BEATsStage, "beats_tokenizer": BEATsTokenizerStage}
