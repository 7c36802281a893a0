"""FUSEPipeline: latent-diffusion speech enhancement guided by BEATs features (Yang et al., Interspeech 2024).

noisy audio -> STFT -> spectral VAE latent -> UNet (DDIM, v-prediction) conditioned on the noisy latent and on
frozen BEATs tokens of the noisy input -> VAE decoder -> inverse STFT -> enhanced audio.

The front end (sample rate, STFT, compression) is read from the VAE's config, so a saved pipeline describes the
signal it works on. Beside this module: `clips.py` takes the inputs in and gives the outputs back at their own rate
and layout, `encoding.py` holds the encoders of the noisy input that training shares, `precision.py` the choice of
bf16 autocast and weight layout, `noise.py` the initial noise, `streaming.py` the enhancement of audio that
arrives in chunks (`FUSEPipeline.stream`), `fullband.py` the band above 8 kHz of 44.1/48 kHz input, `onnx_backend.py`
the networks on onnxruntime and `pipeline_output.py` what a call returns.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import replace_example_docstring

from ..audio import check_sampling_rate, first_line
from ..spectral import DEFAULT_MAX_GAIN_DB, to_waveform
from ..windows import crossfade_weights, overlaps, window_geometry, window_starts
from .clips import AudioInput, Clip, gather_windows, load_clips, restore_clip
from .encoding import encode_condition, encode_spectral_latents
from .fullband import check_full_band
from .noise import DEFAULT_NOISE_SCALE, LatentNoise
from .pipeline_output import FUSEPipelineOutput
from .precision import PRECISIONS, autocast_context, set_layout, uses_channels_last
from .streaming import FUSEStreamingMixin
from .upsampling import fold_upsamplers

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import numpy as np, torch
        >>> from fuse_hf import FUSEPipeline

        >>> pipe = FUSEPipeline.from_pretrained("pipelines/fuse-small")
        >>> noisy = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
        >>> out = pipe(noisy, sampling_rate=16000, num_inference_steps=6, generator=torch.Generator().manual_seed(0))
        >>> out.audios.shape, out.sampling_rate  # same shape, same rate as the input
        ((16000,), 16000)

        ```
"""

# What diffusers, transformers and torch say when a checkpoint's tensors do not fit the model its config builds.
_WEIGHT_MISMATCH = re.compile(
    r"expected shape|size mismatch|Error\(s\) in loading state_dict|Missing key\(s\)|Unexpected key\(s\)"
)


def _is_weight_mismatch(err: BaseException) -> bool:
    """Whether a loading error says that a checkpoint's tensors do not fit the model built from its config."""
    return bool(_WEIGHT_MISMATCH.search(str(err)))


class FUSEPipeline(DiffusionPipeline, FUSEStreamingMixin):
    r"""Speech enhancement by latent diffusion, guided by BEATs features of the noisy input.

    Long inputs are cut into windows (about the UNet's training size, or `window_seconds`) that overlap and are
    cross-faded back, so memory does not grow with the input length; windows of all clips and channels are batched
    together (`batch_size`) for the UNet. `stream` enhances audio that arrives in chunks, window by window. The VAE
    runs window by window (diffusers' VAE slicing, switched on here): at full spectrogram resolution a batch costs
    ~50 MB a window and saves no time on a CPU. `pipe.vae.disable_slicing()` lets it take the whole batch.

    The sample rate, STFT and compression are the VAE's (`vae.config.sampling_rate`, `n_fft`, `hop_length`,
    `window`, `compression_exponent`, `compression_factor`); inputs at other rates are resampled to it and back.

    Args:
        vae ([`SpectralAutoencoderKL`]): encodes normalised compressed spectrograms to latents and back.
        conditioner ([`BEATsModel`]): frozen audio encoder (a transformers model) whose tokens guide the UNet
            through cross-attention (and `token_projection`).
        unet ([`UNet2DConditionModel`]): denoises the clean-speech latent; its input is the noisy target latent
            concatenated with the VAE latent of the noisy input, `2 * latent_channels` channels (plus the
            `token_projection` channels).
        scheduler ([`DDIMScheduler`]): v-prediction, trailing timesteps and zero terminal SNR (see
            `fuse_hf.factory.make_scheduler` for why).
        feature_extractor ([`BEATsFeatureExtractor`], *optional*): the conditioner's filterbank and its
            normalisation; without it the conditioner computes the same official one itself.
        token_projection ([`TokenGridProjection`], *optional*): lays the BEATs tokens onto the latent grid,
            aligned in time and frequency, as extra UNet input channels; without it the tokens enter through
            cross-attention alone.
    """

    model_cpu_offload_seq = "conditioner->token_projection->vae->unet->vae"
    _optional_components = ["feature_extractor", "token_projection"]
    _callback_tensor_inputs = ["latents", "noisy_latents", "encoder_hidden_states"]

    def __init__(
        self,
        vae,
        conditioner,
        unet: UNet2DConditionModel,
        scheduler: DDIMScheduler,
        feature_extractor=None,
        token_projection=None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            conditioner=conditioner,
            unet=unet,
            scheduler=scheduler,
            feature_extractor=feature_extractor,
            token_projection=token_projection,
        )
        self.vae.enable_slicing()
        for model in (self.vae, self.unet):  # exact, 2.25x fewer multiply-adds in the up-samplers (upsampling.py)
            if isinstance(model, torch.nn.Module):
                fold_upsamplers(model)
        self._channels_last = False  # the layout the modules were given in
        self.set_precision(os.environ.get("FUSE_HF_PRECISION", "auto"))

    def set_precision(self, precision: str = "auto") -> None:
        """How the VAE and the UNet compute: ``"fp32"``, ``"bf16"`` (autocast, weights stay fp32) or ``"auto"``.

        ``"auto"`` (the default, or the ``FUSE_HF_PRECISION`` environment variable) uses bf16 autocast where bf16 is
        native (GPUs, CPUs with AVX512-BF16 or AMX) and a UNet pass timed on first use is faster in it (3-5x on such
        CPUs; `precision.auto_precision`), else fp32; on the bundled model bf16 output stays about 44 dB from fp32.
        BEATs always runs in fp32 so that its features are the reference ones.

        The VAE and UNet weights are put in channels-last layout when bf16 will run on the CPU (what makes oneDNN's
        bf16 convolutions fast) and back in the default layout otherwise, whose fp32 results are the reference.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        self._precision = precision
        set_layout(self, uses_channels_last(precision, self.unet.dtype))

    def _autocast(self, device: torch.device):
        """The autocast context of the VAE and UNet passes on `device` (a no-op context for fp32); "auto" measures
        on first use."""
        return autocast_context(self._precision, device, self.unet.dtype, pipe=self)

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Loads from a local `save_pretrained` folder or a Hub repo id (`revision`, `cache_dir`, `token`,
        `local_files_only` as in diffusers; works offline from the cache with ``HF_HUB_OFFLINE=1``).
        `backend`: "torch", "onnx" (onnxruntime; the default for a folder written by [`export_onnx`]; a torch
        folder is exported once into a cache, `onnx_backend.cached_onnx_folder`), or "auto" (onnx where onnxruntime
        is installed).

        Raises:
            ValueError: in one line naming the folder and the cause: a missing file, weights that do not fit
                their config ("the weights do not match the model configs"), an unreadable weights file, a config
                value a component rejects.
        """
        from .. import models  # noqa: F401 (diffusers finds the custom component classes among imported modules)
        from ..hub import resolve_pipeline_folder
        from .onnx_backend import cached_onnx_folder, has_onnx_graphs, load_onnx_pipeline, resolve_backend

        hub_options = {key: kwargs.pop(key, None) for key in ("revision", "cache_dir", "token", "local_files_only")}
        folder = resolve_pipeline_folder(pretrained_model_name_or_path, **hub_options)
        kwargs.setdefault("use_safetensors", True)
        try:
            if resolve_backend(folder, kwargs.pop("backend", None)) == "onnx":
                graphs = folder if has_onnx_graphs(folder) else cached_onnx_folder(cls, folder)
                return load_onnx_pipeline(cls, graphs, **kwargs)
            return super().from_pretrained(folder, **kwargs)
        except (RuntimeError, OSError, ValueError) as err:
            if _is_weight_mismatch(err):
                raise ValueError(f"{folder}: the weights do not match the model configs ({first_line(err)}).") from err
            raise ValueError(f"{folder}: {first_line(err)}") from err

    def export_onnx(self, out_dir, quantize: str | None = None, **kwargs) -> dict[str, float]:
        """[`onnx_backend.export_onnx`]: ONNX graphs of the networks beside a copy of the pipeline; SNRs to torch."""
        from .onnx_backend import export_onnx

        return export_onnx(self, out_dir, quantize=quantize, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        **kwargs,
    ) -> str:
        """Uploads the pipeline to the Hub as one commit: weights, configs, a model card (`metrics=`, `datasets=`,
        ...) and the Hub remote code that `DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)`
        loads. See [`fuse_hf.hub.push_pipeline_to_hub`]. Returns the commit URL."""
        from ..hub import push_pipeline_to_hub

        return push_pipeline_to_hub(
            self, repo_id, commit_message=commit_message, private=private, token=token, create_pr=create_pr, **kwargs
        )

    # ------------------------------------------------------------------------------------------ geometry

    @property
    def sampling_rate(self) -> int:
        """The rate in Hz the models work at (the VAE's); inputs are resampled to it and back."""
        return int(self.vae.config.sampling_rate)

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
    def _latent_hop(self) -> int:
        """Samples per latent frame: windows start on multiples of it so that they share one noise field."""
        return self.vae.config.hop_length * self.vae.downsample_factor

    def _window_geometry(
        self, window_seconds: float | None = None, overlap_seconds: float | None = None, lengths=None
    ) -> tuple[int, int]:
        """`(window_samples, stride_samples)` of the overlapping windows ([`window_geometry`]): the trained window,
        one of about `window_seconds` (a shorter one lowers a stream's latency), or, given the clips' `lengths` in
        samples and no `window_seconds`, the one that covers them with the least computation."""
        hop, factor, rate = self.vae.config.hop_length, self.vae.downsample_factor, self.sampling_rate
        return window_geometry(
            self.window_frames, hop, factor, self.frame_multiple, rate, window_seconds, overlap_seconds, lengths
        )

    def _latent_width(self, window: int) -> int:
        """Latent frames the UNet sees for a window of `window` samples."""
        frames = window // self.vae.config.hop_length + 1
        return math.ceil(frames / self.frame_multiple) * self.frame_multiple // self.vae.downsample_factor

    # ------------------------------------------------------------------------------------------ state

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Above 1 (and anywhere but 0 and 1): one unconditional and one conditional UNet pass per step."""
        return self._guidance_scale not in (0.0, 1.0)

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------------------------------ steps

    @staticmethod
    def check_settings(
        num_inference_steps,
        guidance_scale,
        noise_scale,
        attenuation_limit_db,
        batch_size,
        output_type,
        max_gain_db=DEFAULT_MAX_GAIN_DB,
    ):
        """Validates the settings `__call__` and `stream` share; raises a one-line `ValueError` naming a bad one."""
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
        if max_gain_db is not None and not math.isfinite(float(max_gain_db)):
            raise ValueError(f"max_gain_db must be a finite number of dB or None, got {max_gain_db!r}.")
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}.")

    def check_inputs(
        self,
        audio,
        sampling_rate,
        num_inference_steps,
        guidance_scale,
        noise_scale,
        attenuation_limit_db,
        generator,
        latents,
        batch_size,
        output_type,
        callback_on_step_end_tensor_inputs,
        max_gain_db=DEFAULT_MAX_GAIN_DB,
    ) -> None:
        """Validates the arguments; raises a one-line `ValueError` naming the first bad one. Reads no audio: the
        contents of files and arrays are checked as they are loaded (`prepare_audio`)."""
        self.check_settings(
            num_inference_steps, guidance_scale, noise_scale, attenuation_limit_db, batch_size, output_type, max_gain_db
        )
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"callback_on_step_end_tensor_inputs {unknown} are not among {self._callback_tensor_inputs}."
                )
        items = audio if isinstance(audio, (list, tuple)) else [audio]
        if len(items) == 0:
            raise ValueError("audio is an empty list: pass at least one clip.")
        for item in items:
            if not isinstance(item, (str, os.PathLike, np.ndarray, torch.Tensor)):
                raise ValueError(
                    "audio must be a file path, a numpy array, a torch tensor or a list of them, "
                    f"got {type(item).__name__}."
                )
        if any(isinstance(item, (np.ndarray, torch.Tensor)) for item in items):
            check_sampling_rate(sampling_rate)
        if isinstance(generator, list) and len(generator) != len(items):
            raise ValueError(f"got {len(generator)} generators for {len(items)} clips: pass one per clip.")
        if latents is not None and len(items) != 1:
            raise ValueError("latents can only be given for a single clip.")

    def prepare_audio(self, audio: AudioInput | list[AudioInput], sampling_rate: int | None) -> list[Clip]:
        """Loads every clip as `(channels, samples)` float32 at the model's rate ([`load_clips`]).

        Raises:
            ValueError: a file that cannot be read, an array of the wrong rank or with NaN/Inf, a clip too short.
        """
        return load_clips(audio, sampling_rate, self.sampling_rate)

    def prepare_latents(self, last_start, channels, generator, latents, device, dtype, window: int | None = None):
        """Initial noise as one field per clip over its whole latent time axis ([`LatentNoise`]), so that
        overlapping windows share noise where they overlap and the output does not depend on how windows are
        batched, nor on whether the clip is enhanced whole or streamed.

        `last_start` is the start sample of the clip's last window, `window` the window length in samples (default:
        the trained one). Returns a `(channels, latent_channels, latent_freq, latent_frames)` tensor.
        """
        noise = LatentNoise.for_pipeline(self, channels, generator)
        total = last_start // self._latent_hop + self._latent_width(window or self._window_geometry()[0])
        shape = (*noise.shape, total)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape} for this input, got {tuple(latents.shape)}.")
            return latents.to(device=device, dtype=dtype)
        return noise.frames(0, total).to(device=device, dtype=dtype)

    def encode_condition(self, waveform: torch.Tensor, padding_mask: torch.Tensor | None):
        """[`encode_condition`] with this pipeline's conditioner, in the UNet's dtype."""
        features, mask = encode_condition(self.conditioner, waveform, padding_mask, self.feature_extractor)
        return features.to(self.unet.dtype), mask

    def align_tokens(self, encoder_hidden_states: torch.Tensor, latent_shape) -> torch.Tensor | None:
        """The tokens on the latent grid `(batch, channels, latent_freq, latent_frames)` in the UNet's dtype, or None
        without a `token_projection` (all-zero tokens give a zero grid: see [`TokenGridProjection`])."""
        if self.token_projection is None:
            return None
        aligned = self.token_projection(encoder_hidden_states.float(), latent_shape[-2], latent_shape[-1])
        return aligned.to(self.unet.dtype)

    def denoise(
        self,
        latents,
        noisy_latents,
        encoder_hidden_states,
        encoder_attention_mask,
        timesteps,
        generator,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs=(),
        progress_bar=None,
    ) -> torch.Tensor:
        """The DDIM loop for one batch of windows: initial `latents` -> the clean-speech latents.

        The UNet sees `cat([latents, noisy_latents])` (and, with a `token_projection`, the tokens on the latent
        grid) and attends to `encoder_hidden_states` (BEATs tokens); with classifier-free guidance the prediction is
        `uncond + guidance_scale * (cond - uncond)`, where `uncond` has the tokens and their grid channels replaced
        by zeros (the conditioning dropout of training).
        """
        if self._guidance_scale == 0.0:
            # The model was trained with conditioning dropout to zeros: this is "the same model without BEATs".
            encoder_hidden_states, encoder_attention_mask = torch.zeros_like(encoder_hidden_states), None
        aligned = self.align_tokens(encoder_hidden_states, latents.shape)  # fixed over the steps
        for i, t in enumerate(timesteps):
            if self.interrupt:
                break
            model_input = torch.cat([latents, noisy_latents], dim=1)
            model_input = self.scheduler.scale_model_input(model_input, t)
            if self.do_classifier_free_guidance:
                mask = None
                if encoder_attention_mask is not None:
                    mask = torch.cat([torch.ones_like(encoder_attention_mask), encoder_attention_mask])
                if aligned is not None:
                    conditional = torch.cat([model_input, aligned], dim=1)
                    unconditional = torch.cat([model_input, torch.zeros_like(aligned)], dim=1)
                    model_input = torch.cat([unconditional, conditional])
                else:
                    model_input = torch.cat([model_input] * 2)
                prediction = self.unet(
                    model_input,
                    t,
                    encoder_hidden_states=torch.cat([torch.zeros_like(encoder_hidden_states), encoder_hidden_states]),
                    encoder_attention_mask=mask,
                ).sample
                prediction_uncond, prediction_cond = prediction.float().chunk(2)
                prediction = prediction_uncond + self._guidance_scale * (prediction_cond - prediction_uncond)
            else:
                if aligned is not None:
                    model_input = torch.cat([model_input, aligned], dim=1)
                prediction = self.unet(
                    model_input,
                    t,
                    encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask,
                ).sample.float()
            latents = self.scheduler.step(prediction, t, latents.float(), generator=generator).prev_sample
            latents = latents.to(noisy_latents.dtype)

            if callback_on_step_end is not None:
                callback_kwargs = {}
                for k in callback_on_step_end_tensor_inputs:
                    callback_kwargs[k] = locals()[k]
                callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                latents = callback_outputs.pop("latents", latents)
                noisy_latents = callback_outputs.pop("noisy_latents", noisy_latents)
                if "encoder_hidden_states" in callback_outputs:  # new tokens: their grid too
                    encoder_hidden_states = callback_outputs.pop("encoder_hidden_states")
                    aligned = self.align_tokens(encoder_hidden_states, latents.shape)
            if progress_bar is not None:
                progress_bar.update()
        return latents

    def enhance_windows(self, waveform, initial, timesteps, generator=None, **denoise_options) -> np.ndarray:
        """Noisy windows `(batch, window)` at the model's rate -> enhanced `(batch, window)` float32 numpy, from their
        initial noise `(batch, latent_channels, latent_freq, latent_frames)`: VAE latents and BEATs tokens of the
        noisy windows, the DDIM loop (`denoise`, given the callbacks and progress bar of `denoise_options`),
        decoding. `__call__` and `stream` both enhance through here."""
        device = self._execution_device
        autocast = self._autocast(torch.device(device))
        waveform = waveform.to(device)
        with autocast:
            noisy_latents, compressed, frames = encode_spectral_latents(self.vae, waveform, self.frame_multiple)
        noisy_latents = noisy_latents.to(self.unet.dtype)
        condition = self.encode_condition(waveform, None)
        with autocast:
            clean_latents = self.denoise(initial, noisy_latents, *condition, timesteps, generator, **denoise_options)
        with autocast:
            spec = self.vae.decode_latents(clean_latents)
        return self.spectrogram_to_waveform(spec, waveform.shape[-1], frames, compressed)

    def _prepare_run(
        self, num_inference_steps: int, guidance_scale: float, device, max_gain_db=DEFAULT_MAX_GAIN_DB
    ) -> torch.Tensor:
        """Sets the guidance scale, gain cap and the scheduler's timesteps for a call (or for one window of a
        stream, which may run between other calls); returns the timesteps."""
        self._guidance_scale, self._max_gain_db = float(guidance_scale), max_gain_db
        self._interrupt = False
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self._num_timesteps = len(self.scheduler.timesteps)
        return self.scheduler.timesteps

    def spectrogram_to_waveform(self, spec: torch.Tensor, length: int, frames: int, compressed: torch.Tensor):
        """Decoded spectrograms `(batch, channels, freq, padded_frames)` -> `(batch, length)` float32 waveforms on
        the CPU, as numpy.

        `frames` is the number of STFT frames before padding, `compressed` the noisy compressed spectrum (the
        phase of the magnitude representation, and the cap of the call's `max_gain_db`).
        """
        spec = spec.float()[..., :frames]
        config = self.vae.config
        settings = dict(self.vae.spectral_settings, max_gain_db=self._max_gain_db)
        waveform = to_waveform(spec, length, config.representation, config.input_scale, compressed, **settings)
        return waveform.cpu().numpy()

    # ------------------------------------------------------------------------------------------- call

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        audio: AudioInput | list[AudioInput],
        sampling_rate: int | None = None,
        num_inference_steps: int = 6,
        guidance_scale: float = 1.0,
        noise_scale: float = DEFAULT_NOISE_SCALE,
        attenuation_limit_db: float | None = None,
        max_gain_db: float | None = DEFAULT_MAX_GAIN_DB,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        batch_size: int = 8,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: (
            Callable[[int, int, dict], dict] | PipelineCallback | MultiPipelineCallbacks | None
        ) = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        window_seconds: float | None = None,
        overlap_seconds: float | None = None,
        full_band: bool | None = None,
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
            max_gain_db (`float`, *optional*, defaults to 0.0):
                Caps every time-frequency bin of the output at this gain over the input's (amplitude dB): at 0 the
                model can only remove, so digital silence stays silent and clean speech is not coloured by
                decoder errors that add energy. `None` lets the decoded spectrum through as it is.
            generator (`torch.Generator` or a list, one per clip, *optional*): makes the output reproducible.
            latents (`torch.Tensor`, *optional*):
                Initial noise for a single clip, `(channels, latent_channels, latent_freq, latent_frames)`
                covering its whole length (see `prepare_latents`; its width depends on the window, so give
                `window_seconds` to fix it), of unit variance: it is scaled by `noise_scale`.
            batch_size (`int`, defaults to 8): windows per UNet forward pass.
            output_type (`str`, defaults to `"np"`): `"np"` (numpy arrays) or `"pt"` (torch tensors).
            return_dict (`bool`, defaults to `True`): return a [`FUSEPipelineOutput`] rather than a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                Called after each denoising step of each batch of windows as
                `callback_on_step_end(self, step, timestep, callback_kwargs)`; the tensors it returns (any of
                `callback_on_step_end_tensor_inputs`) replace the pipeline's own for the next steps.
            callback_on_step_end_tensor_inputs (`list[str]`): tensors passed in `callback_kwargs`, among
                `"latents"` (the batch's current latents), `"noisy_latents"` (the VAE latents of the noisy windows)
                and `"encoder_hidden_states"` (their BEATs tokens).
            window_seconds (`float`, *optional*): window length, rounded to whole latent blocks (default: fitted to
                the inputs' lengths, between half the trained window and the trained one, 2.04 s for fuse-small, so
                that the windows cover them with the least computation); `stream` with the same setting gives the
                same output (a stream's default is the trained window: its length is unknown in advance).
            overlap_seconds (`float`, *optional*): cross-fade between windows (default: 1/32 of the window).
            full_band (`bool`, *optional*): give inputs above the model's rate their band above its Nyquist frequency
                back, under the model's gain (`fullband.py`); default on for them, False: resampled from 16 kHz.

        Examples:

        Returns:
            [`FUSEPipelineOutput`] or `tuple(audios, sampling_rate)`: the enhanced audio, with the shape and sample
            rate of each input.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs

        # 1. Check inputs. Raise a ValueError naming the first bad one
        self.check_inputs(
            audio,
            sampling_rate,
            num_inference_steps,
            guidance_scale,
            noise_scale,
            attenuation_limit_db,
            generator,
            latents,
            batch_size,
            output_type,
            callback_on_step_end_tensor_inputs,
            max_gain_db,
        )
        self._window_geometry(window_seconds, overlap_seconds)  # raises for bad values before any file is read
        check_full_band(full_band)

        # 2. Define call parameters
        device = self._execution_device
        dtype = self.unet.dtype

        # 3. Load every clip as (channels, samples) at the model's rate
        clips = self.prepare_audio(audio, sampling_rate)

        # 4. Prepare timesteps
        timesteps = self._prepare_run(num_inference_steps, guidance_scale, device, max_gain_db)
        step_generator = generator[0] if isinstance(generator, list) else generator

        # 5. Cut every channel of every clip into overlapping windows (fitted to the clips' lengths unless
        # `window_seconds` is given) and draw each clip's initial noise field
        window, stride = self._window_geometry(window_seconds, overlap_seconds, [c.audio.shape[1] for c in clips])
        windows, noise, outputs = [], [], []
        for index, clip in enumerate(clips):
            starts = window_starts(clip.audio.shape[1], window, stride, align=self._latent_hop)
            clip_generator = generator[index] if isinstance(generator, list) else generator
            channels = clip.audio.shape[0]
            field = self.prepare_latents(starts[-1], channels, clip_generator, latents, device, dtype, window)
            noise.append(field * noise_scale)
            outputs.append(np.zeros((channels, starts[-1] + window), np.float32))
            fades = overlaps(starts, window)
            for channel in range(channels):
                windows += [(index, channel, start, fade) for start, fade in zip(starts, fades)]

        # 6. Denoising loop, one batch of windows at a time
        with self.progress_bar(total=len(timesteps) * math.ceil(len(windows) / batch_size)) as progress_bar:
            callbacks = dict(
                callback_on_step_end=callback_on_step_end,
                callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                progress_bar=progress_bar,
            )
            for first in range(0, len(windows), batch_size):
                batch = windows[first : first + batch_size]

                # 6.1 Encode, denoise from each window's slice of its clip's noise field, decode
                offsets = [(i, c, start // self._latent_hop) for i, c, start, _ in batch]
                width = self._latent_width(window)
                initial = torch.stack([noise[i][c, :, :, offset : offset + width] for i, c, offset in offsets])
                waveform = gather_windows(clips, batch, window)
                enhanced = self.enhance_windows(waveform, initial, timesteps, step_generator, **callbacks)

                # 6.2 Cross-fade them into place
                for (i, ch, start, (fade_in, fade_out)), piece in zip(batch, enhanced):
                    outputs[i][ch, start : start + window] += crossfade_weights(window, fade_in, fade_out) * piece
                if self.interrupt:
                    break

        # 7. Post-process: back to each input's rate, length and layout
        results = [
            self.postprocess_audio(clip, out[:, : clip.audio.shape[1]], attenuation_limit_db, output_type, full_band)
            for clip, out in zip(clips, outputs)
        ]

        # 8. Offload all models
        self.maybe_free_model_hooks()

        single = not isinstance(audio, (list, tuple))
        audios = results[0] if single else results
        rates = clips[0].sampling_rate if single else [c.sampling_rate for c in clips]
        if not return_dict:
            return (audios, rates)
        return FUSEPipelineOutput(audios=audios, sampling_rate=rates)

    def postprocess_audio(self, clip: Clip, enhanced: np.ndarray, attenuation_limit_db, output_type, full_band=None):
        """`(channels, samples)` at the model's rate -> the clip's rate, length and layout ([`restore_clip`]); carries
        the high band over (`full_band`), mixes the input back for `attenuation_limit_db` and scales the result down
        if it would clip."""
        return restore_clip(clip, enhanced, self.sampling_rate, attenuation_limit_db, output_type, full_band)
