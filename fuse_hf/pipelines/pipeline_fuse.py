"""FUSEPipeline: latent-diffusion speech enhancement guided by BEATs features (Yang et al., Interspeech 2024).

noisy audio -> STFT -> spectral VAE latent -> UNet (DDIM, v-prediction) conditioned on the noisy latent and on
frozen BEATs tokens of the noisy input -> VAE decoder -> inverse STFT -> enhanced audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor

from ..audio import (
    HOP_LENGTH,
    MIN_SAMPLES_16K,
    SAMPLE_RATE,
    as_channels_first,
    check_sampling_rate,
    crossfade_weights,
    load_audio,
    overlaps,
    pad_reflect,
    pad_frames,
    prevent_clipping,
    resample,
    to_spectrogram,
    to_waveform,
    window_starts,
)

logger = logging.get_logger(__name__)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import numpy as np, torch
        >>> from fuse_hf import FUSEPipeline

        >>> pipe = FUSEPipeline.from_pretrained("pipelines/fuse-small")
        >>> noisy = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
        >>> out = pipe(noisy, sampling_rate=16000, num_inference_steps=6, generator=torch.Generator().manual_seed(0))
        >>> out.audios.shape  # same shape, same rate as the input
        (16000,)
        ```
"""

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]

# Chosen on a dev set of in-domain valid mixtures (not the benchmark's pairs): `benchmarks/bench_noise_scale.py`,
# `docs/sampling.md`.
DEFAULT_NOISE_SCALE = 0.25


@dataclass
class FUSEPipelineOutput(AudioPipelineOutput):
    """Output of [`FUSEPipeline`].

    Args:
        audios (`np.ndarray`, `torch.Tensor` or a list of them):
            Enhanced audio with the shape of each input (`(samples,)` or `(channels, samples)`), float32 in [-1, 1].
            A list when the input was a list.
        sampling_rate (`int` or `List[int]`): the sample rate of each output in Hz, equal to the input's.
    """

    sampling_rate: Union[int, List[int]] = SAMPLE_RATE


def encode_spectral_latents(vae, waveform: torch.Tensor, frame_multiple: int = 1, vae_batch_size: Optional[int] = None):
    """Waveforms -> the VAE latents the UNet works on. Training and inference both encode through here, so that the
    UNet sees at inference exactly the kind of latent it was trained on.

    Args:
        vae ([`SpectralAutoencoderKL`]): reads its own representation and input scale from its config.
        waveform: `(batch, samples)` float at 16 kHz.
        frame_multiple: spectrogram frames are zero-padded to a multiple of this (`pad_frames`).
        vae_batch_size: windows per VAE pass (None: all at once).

    Returns:
        `(latents, compressed, frames)`: latents `(batch, latent_channels, latent_freq, padded_frames / 4)` in the
        VAE's dtype, the compressed complex spectrum `(batch, 256, frames)` whose phase the decoder output reuses,
        and the number of frames before padding.
    """
    spec, compressed = to_spectrogram(waveform, vae.config.representation, vae.config.input_scale)
    frames = spec.shape[-1]
    spec = pad_frames(spec, frame_multiple).to(vae.dtype)
    chunks = spec.split(vae_batch_size) if vae_batch_size else (spec,)
    return torch.cat([vae.encode_to_latents(chunk) for chunk in chunks]), compressed, frames


def encode_condition(conditioner, waveform: torch.Tensor, padding_mask: Optional[torch.Tensor] = None):
    """BEATs tokens of noisy windows `(batch, samples)` -> `(batch, tokens, embed_dim)` and a cross-attention mask
    `(batch, tokens)` (1 = attend), or None when no token is padded. Shared by training and inference."""
    # "patch" masks whole padded patch rows, so a padded last window gets the tokens its audio gets alone.
    features, token_padding = conditioner.encode_tokens(waveform, padding_mask=padding_mask, padding_mode="patch")
    mask = None
    if token_padding is not None and token_padding.shape == features.shape[:2] and bool(token_padding.any()):
        mask = (~token_padding).to(features.dtype)
    return features, mask


@dataclass
class _Clip:
    """One input clip at 16 kHz plus what is needed to give it back in its own format."""

    audio: np.ndarray  # (channels, samples) at 16 kHz
    original: np.ndarray  # (channels, samples) at the input rate
    sampling_rate: int
    was_1d: bool
    as_tensor: bool


class FUSEPipeline(DiffusionPipeline):
    r"""Speech enhancement by latent diffusion, guided by BEATs features of the noisy input.

    Long inputs are cut into fixed windows (the UNet's training size) that overlap and are cross-faded back,
    so memory does not grow with the input length; windows of all clips and channels are batched together.

    Args:
        vae ([`SpectralAutoencoderKL`]): encodes normalised compressed spectrograms to latents and back.
        conditioner ([`BEATsModel`]): frozen audio encoder whose tokens guide the UNet through cross-attention.
        unet ([`UNet2DConditionModel`]): denoises the clean-speech latent; its input is the noisy target latent
            concatenated with the VAE latent of the noisy input, `2 * latent_channels` channels.
        scheduler ([`DDIMScheduler`]): v-prediction, trailing timesteps and zero terminal SNR (see
            `fuse_hf.factory.make_scheduler` for why).
    """

    model_cpu_offload_seq = "conditioner->vae->unet->vae"
    _callback_tensor_inputs = ["latents", "noisy_latents", "encoder_hidden_states"]

    def __init__(self, vae, conditioner, unet: UNet2DConditionModel, scheduler: DDIMScheduler):
        super().__init__()
        self.register_modules(vae=vae, conditioner=conditioner, unet=unet, scheduler=scheduler)
        self._precision = os.environ.get("FUSE_HF_PRECISION", "auto")

    def set_precision(self, precision: str = "auto") -> None:
        """How the VAE and the UNet compute: ``"fp32"``, ``"bf16"`` (autocast, weights stay fp32) or ``"auto"``.

        ``"auto"`` (the default, or the ``FUSE_HF_PRECISION`` environment variable) uses bf16 autocast on GPUs and on CPUs with native bf16 (AVX512-BF16 or AMX),
        where it is 3-5x faster; on the bundled model its output stays about 44 dB from fp32. BEATs always runs
        in fp32 so that its features are the reference ones.
        """
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}.")
        self._precision = precision

    def _autocast(self, device: torch.device):
        """The autocast context of the VAE and UNet passes (a no-op context for fp32)."""
        import contextlib

        precision = getattr(self, "_precision", "auto")
        if precision == "auto":
            if device.type == "cuda":
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
            elif device.type == "cpu":
                native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
                precision = "bf16" if native else "fp32"
            else:
                precision = "fp32"
        if precision == "fp32" or self.unet.dtype != torch.float32:
            return contextlib.nullcontext()
        if device.type == "cpu" and not self.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last):
            # channels_last is what makes oneDNN's bf16 convolutions fast.
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        return torch.autocast(device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Loads from a local `save_pretrained` folder or a Hub repo id (`revision`, `cache_dir`, `token`,
        `local_files_only` as in diffusers; works offline from the cache with ``HF_HUB_OFFLINE=1``).

        Missing files or weights that do not fit the config raise a `ValueError` that names them.
        """
        from ..hub import resolve_pipeline_folder

        folder = resolve_pipeline_folder(
            pretrained_model_name_or_path,
            revision=kwargs.pop("revision", None),
            cache_dir=kwargs.pop("cache_dir", None),
            token=kwargs.pop("token", None),
            local_files_only=kwargs.pop("local_files_only", None),
        )
        kwargs.setdefault("use_safetensors", True)
        try:
            return super().from_pretrained(folder, **kwargs)
        except (RuntimeError, OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{folder}: the weights do not match the model configs ({first}).") from err

    def push_to_hub(self, repo_id: str, commit_message: Optional[str] = None, private: Optional[bool] = None,
                    token: Optional[str] = None, create_pr: bool = False, **kwargs) -> str:
        """Uploads the pipeline to the Hub as one commit: weights, configs, a model card (`metrics=`, `datasets=`,
        ...) and the Hub remote code that `DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`
        loads. See [`fuse_hf.hub.push_pipeline_to_hub`]. Returns the commit URL."""
        from ..hub import push_pipeline_to_hub

        return push_pipeline_to_hub(self, repo_id, commit_message=commit_message, private=private, token=token,
                                    create_pr=create_pr, **kwargs)

    # ------------------------------------------------------------------------------------------ helpers

    @property
    def window_frames(self) -> int:
        """STFT frames per window: the UNet's latent width times the VAE's down-sampling."""
        size = self.unet.config.sample_size
        latent_frames = size[-1] if isinstance(size, (tuple, list)) else size
        return int(latent_frames) * self.vae.downsample_factor

    @property
    def frame_multiple(self) -> int:
        """Spectrogram frames must be a multiple of this for the VAE and the UNet to round-trip shapes."""
        unet_down = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return self.vae.downsample_factor * unet_down

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def check_inputs(
        self, audio, sampling_rate, num_inference_steps, guidance_scale, noise_scale, attenuation_limit_db,
        batch_size, output_type, callback_on_step_end_tensor_inputs,
    ) -> List[_Clip]:
        """Validates the arguments and loads every clip as `(channels, samples)` float32 at 16 kHz."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if guidance_scale is None or not math.isfinite(float(guidance_scale)) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}.")
        if noise_scale is None or not math.isfinite(float(noise_scale)) or noise_scale < 0:
            raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}.")
        if attenuation_limit_db is not None and not (float(attenuation_limit_db) > 0):
            raise ValueError(f"attenuation_limit_db must be a positive number of dB, got {attenuation_limit_db!r}.")
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}.")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"callback_on_step_end_tensor_inputs {unknown} are not among {self._callback_tensor_inputs}."
                )
        items = audio if isinstance(audio, (list, tuple)) else [audio]
        if len(items) == 0:
            raise ValueError("audio is an empty list: pass at least one clip.")
        return [self._load_clip(item, sampling_rate) for item in items]

    @staticmethod
    def _load_clip(item: AudioInput, sampling_rate) -> _Clip:
        if isinstance(item, (str, os.PathLike)):
            original, rate = load_audio(item)
            was_1d, as_tensor = original.shape[0] == 1, False
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            rate = check_sampling_rate(sampling_rate)
            as_tensor = isinstance(item, torch.Tensor)
            array = item.detach().cpu().float().numpy() if as_tensor else item
            was_1d = np.ndim(array) == 1
            original = as_channels_first(array)
        else:
            raise ValueError(
                f"audio must be a file path, a numpy array, a torch tensor or a list of them, got {type(item).__name__}."
            )
        audio = resample(original, rate, SAMPLE_RATE)
        if audio.shape[1] < MIN_SAMPLES_16K:
            raise ValueError(
                f"audio is {original.shape[1]} samples long ({1000 * original.shape[1] / rate:.1f} ms); "
                f"at least {1000 * MIN_SAMPLES_16K / SAMPLE_RATE:.0f} ms is needed."
            )
        return _Clip(audio=audio, original=original, sampling_rate=rate, was_1d=was_1d, as_tensor=as_tensor)

    @property
    def _latent_hop(self) -> int:
        """Samples per latent frame: windows start on multiples of it so that they share one noise field."""
        return HOP_LENGTH * self.vae.downsample_factor

    def _window_geometry(self):
        """`(window_samples, stride_samples)` of the overlapping windows."""
        frames, factor = self.window_frames, self.vae.downsample_factor
        # Windows are enhanced independently, so the overlap is pure cost: 1/32 of a window (8 frames, 64 ms for
        # fuse-small) is enough for the cross-fade, and lets a 4 s clip take 2 windows instead of 3 (with 1/8).
        overlap_frames = max(factor, (frames // 32) // factor * factor)
        stride_frames = frames - overlap_frames
        # A window of (frames - 1) hops yields exactly `frames` STFT frames with centred frames.
        return (frames - 1) * HOP_LENGTH, stride_frames * HOP_LENGTH

    def prepare_latents(self, last_start, channels, generator, latents, device, dtype):
        """Initial noise as one field per clip over its whole latent time axis, so that overlapping windows
        share noise where they overlap and the output does not depend on how windows are batched.

        `last_start` is the start sample of the clip's last window. Returns a
        `(channels, latent_channels, latent_freq, latent_frames)` tensor.
        """
        c = self.unet.config.out_channels
        f = self.vae.config.sample_size // self.vae.downsample_factor
        window_latent = self.window_frames // self.vae.downsample_factor
        total = last_start // self._latent_hop + window_latent
        shape = (channels, c, f, total)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape} for this input, got {tuple(latents.shape)}.")
            return latents.to(device=device, dtype=dtype)
        return randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32).to(
            device=device, dtype=dtype
        )

    def encode_condition(self, waveform: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        """[`encode_condition`] with this pipeline's conditioner, in the UNet's dtype."""
        features, mask = encode_condition(self.conditioner, waveform, padding_mask)
        return features.to(self.unet.dtype), mask

    def denoise(
        self, noisy_latents, encoder_hidden_states, encoder_attention_mask, latents, timesteps, generator,
        callback_on_step_end, callback_on_step_end_tensor_inputs, progress_bar,
    ):
        """The DDIM loop for one batch of windows; returns the clean-speech latents."""
        do_cfg = self._guidance_scale not in (0.0, 1.0)
        unconditional = torch.zeros_like(encoder_hidden_states)
        if self._guidance_scale == 0.0:
            # The model was trained with conditioning dropout to zeros: this is "the same model without BEATs".
            encoder_hidden_states, encoder_attention_mask = unconditional, None
        for i, t in enumerate(timesteps):
            if self.interrupt:
                break
            model_input = torch.cat([latents, noisy_latents], dim=1)
            model_input = self.scheduler.scale_model_input(model_input, t)
            if do_cfg:
                mask = None
                if encoder_attention_mask is not None:
                    mask = torch.cat([torch.ones_like(encoder_attention_mask), encoder_attention_mask])
                prediction = self.unet(
                    torch.cat([model_input] * 2), t,
                    encoder_hidden_states=torch.cat([unconditional, encoder_hidden_states]),
                    encoder_attention_mask=mask,
                ).sample
                uncond, cond = prediction.float().chunk(2)
                prediction = uncond + self._guidance_scale * (cond - uncond)
            else:
                prediction = self.unet(
                    model_input, t, encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask,
                ).sample.float()
            latents = self.scheduler.step(prediction, t, latents.float(), generator=generator).prev_sample
            latents = latents.to(noisy_latents.dtype)

            if callback_on_step_end is not None:
                step_tensors = locals()  # not inside the comprehension: that has its own scope before 3.12
                callback_kwargs = {k: step_tensors[k] for k in callback_on_step_end_tensor_inputs}
                callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                latents = callback_outputs.pop("latents", latents)
            progress_bar.update()
        return latents

    # ------------------------------------------------------------------------------------------- call

    @torch.no_grad()
    def __call__(
        self,
        audio: Union[AudioInput, List[AudioInput]],
        sampling_rate: Optional[int] = None,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        noise_scale: float = DEFAULT_NOISE_SCALE,
        attenuation_limit_db: Optional[float] = None,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        latents: Optional[torch.Tensor] = None,
        batch_size: int = 8,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Optional[
            Union[Callable[[int, int, Dict], Dict], PipelineCallback, MultiPipelineCallbacks]
        ] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
    ):
        r"""Enhances noisy speech.

        Args:
            audio (`str`, `np.ndarray`, `torch.Tensor` or a list of them):
                A file path, or float samples `(samples,)` / `(channels, samples)` in [-1, 1]; a list of clips may
                mix lengths and kinds. Any sample rate and channel count; stereo stays stereo.
            sampling_rate (`int`, *optional*):
                Sample rate of array/tensor inputs in Hz; required for them, read from the file for paths.
            num_inference_steps (`int`, defaults to 6): DDIM steps.
            guidance_scale (`float`, defaults to 1.0):
                1.0 conditions the UNet on BEATs tokens as trained; 0.0 runs the same model without them (the
                guidance ablation); above 1, classifier-free guidance with one extra UNet pass per step.
            noise_scale (`float`, defaults to 0.25):
                Standard deviation of the initial noise (the sampling temperature, as `noise_scale` in VITS).
                1.0 draws a sample of the learned distribution of clean speech; smaller values move the result
                towards its mean, which keeps more of the input's words and detail. On our dev set 0.25 scored
                higher than 1.0 on PESQ-WB, ESTOI and SI-SDR with DNSMOS about unchanged (`docs/sampling.md`);
                0.0 makes the output independent of `generator`.
            attenuation_limit_db (`float`, *optional*):
                Mixes the noisy input back so that at most this many dB of noise are removed.
            generator (`torch.Generator` or a list, one per clip, *optional*): makes the output reproducible.
            latents (`torch.Tensor`, *optional*):
                Initial noise for a single clip, `(channels, latent_channels, latent_freq, latent_frames)`
                covering its whole length (see `prepare_latents`), of unit variance: it is scaled by `noise_scale`.
            batch_size (`int`, defaults to 8): windows per forward pass.
            output_type (`str`, defaults to `"np"`): `"np"` or `"pt"`.
            return_dict (`bool`, defaults to `True`): return a [`FUSEPipelineOutput`] rather than a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called after each denoising step of each batch of windows as
                `callback_on_step_end(self, step, timestep, callback_kwargs)`; may return replaced tensors.
            callback_on_step_end_tensor_inputs (`List[str]`): tensors passed in `callback_kwargs`.

        Examples:

        Returns:
            [`FUSEPipelineOutput`] or `tuple(audios, sampling_rate)`: the enhanced audio, with the shape, sample rate
            and type (numpy or torch) of each input.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs and load every clip at 16 kHz
        clips = self.check_inputs(
            audio, sampling_rate, num_inference_steps, guidance_scale, noise_scale, attenuation_limit_db,
            batch_size, output_type, callback_on_step_end_tensor_inputs,
        )
        if isinstance(generator, list) and len(generator) != len(clips):
            raise ValueError(f"got {len(generator)} generators for {len(clips)} clips: pass one per clip.")
        if latents is not None and len(clips) != 1:
            raise ValueError("latents can only be given for a single clip.")
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        device = self._execution_device
        dtype = self.unet.dtype

        # 2. Cut every channel of every clip into overlapping windows and draw the initial noise
        window, stride = self._window_geometry()
        jobs, noise, outputs = [], [], []
        for index, clip in enumerate(clips):
            starts = window_starts(clip.audio.shape[1], window, stride, align=self._latent_hop)
            clip_generator = generator[index] if isinstance(generator, list) else generator
            field = self.prepare_latents(starts[-1], clip.audio.shape[0], clip_generator, latents, device, dtype)
            noise.append(field * noise_scale)
            outputs.append(np.zeros((clip.audio.shape[0], starts[-1] + window), np.float32))
            fades = overlaps(starts, window)
            for channel in range(clip.audio.shape[0]):
                jobs += [(index, channel, start, fade) for start, fade in zip(starts, fades)]

        # 3. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        step_generator = generator[0] if isinstance(generator, list) else generator
        autocast = self._autocast(torch.device(device))

        with self.progress_bar(total=len(timesteps) * math.ceil(len(jobs) / batch_size)) as progress_bar:
            for first in range(0, len(jobs), batch_size):
                batch = jobs[first : first + batch_size]

                # 4. Encode the noisy windows: spectrogram -> VAE latent, waveform -> BEATs tokens
                waveform = self._gather_windows(clips, batch, window).to(device)
                # The VAE runs one window at a time: at full spectrogram resolution a batch costs ~50 MB a window
                # and saves no time on a CPU; only the UNet is batched.
                with autocast:
                    noisy_latents, compressed, frames = encode_spectral_latents(
                        self.vae, waveform, self.frame_multiple, vae_batch_size=1
                    )
                noisy_latents = noisy_latents.to(dtype)
                hidden, attention_mask = self.encode_condition(waveform, None)

                # 5. Denoise, starting from each window's slice of its clip's noise field
                init = torch.stack([
                    noise[i][ch, :, :, start // self._latent_hop : start // self._latent_hop + noisy_latents.shape[-1]]
                    for i, ch, start, _ in batch
                ])
                with autocast:
                    clean_latents = self.denoise(
                        noisy_latents, hidden, attention_mask, init, timesteps, step_generator,
                        callback_on_step_end, callback_on_step_end_tensor_inputs, progress_bar,
                    )

                # 6. Decode to waveforms and cross-fade them into place
                with autocast:
                    decoded = torch.cat([self.vae.decode_latents(z) for z in clean_latents.split(1)])
                decoded = decoded.float()[..., :frames]
                enhanced = to_waveform(
                    decoded, window, self.vae.config.representation, self.vae.config.input_scale, compressed
                ).cpu().numpy()
                for (i, ch, start, (fade_in, fade_out)), piece in zip(batch, enhanced):
                    outputs[i][ch, start : start + window] += crossfade_weights(window, fade_in, fade_out) * piece
                if self.interrupt:
                    break

        # 7. Back to each input's rate, length and layout
        results = [
            self._postprocess(clip, out[:, : clip.audio.shape[1]], attenuation_limit_db, output_type)
            for clip, out in zip(clips, outputs)
        ]
        self.maybe_free_model_hooks()

        single = not isinstance(audio, (list, tuple))
        audios = results[0] if single else results
        rates = clips[0].sampling_rate if single else [c.sampling_rate for c in clips]
        if not return_dict:
            return (audios, rates)
        return FUSEPipelineOutput(audios=audios, sampling_rate=rates)

    @staticmethod
    def _gather_windows(clips: List[_Clip], batch, window: int) -> torch.Tensor:
        """Stacks the batch's windows `(batch, window)`. Only clips shorter than a window (or the last few
        milliseconds of a clip) run short; they are extended by mirroring, never by silence."""
        return torch.from_numpy(
            np.stack([pad_reflect(clips[i].audio[ch, start : start + window], window) for i, ch, start, _ in batch])
        )

    @staticmethod
    def _postprocess(clip: _Clip, enhanced: np.ndarray, attenuation_limit_db, output_type):
        enhanced = resample(enhanced, SAMPLE_RATE, clip.sampling_rate)
        length = clip.original.shape[1]
        if enhanced.shape[1] < length:
            enhanced = np.pad(enhanced, ((0, 0), (0, length - enhanced.shape[1])))
        enhanced = enhanced[:, :length]
        if attenuation_limit_db is not None:
            floor = 10.0 ** (-abs(float(attenuation_limit_db)) / 20.0)
            enhanced = floor * clip.original + (1.0 - floor) * enhanced
        enhanced, gain = prevent_clipping(enhanced)
        if gain < 1.0:
            logger.warning(f"The enhanced audio peaked above 0 dBFS; scaled it by {20 * np.log10(gain):.1f} dB.")
        if clip.was_1d:
            enhanced = enhanced[0]
        if output_type == "pt":
            return torch.from_numpy(np.ascontiguousarray(enhanced))
        return enhanced
