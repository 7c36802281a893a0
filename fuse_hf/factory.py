"""Builders for the FUSE components from plain keyword dictionaries (the `model:` sections of the configs).

Kept apart from the pipeline so that training, tests and benchmarks build models the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from .models.autoencoder_spectral import SpectralAutoencoderKL

# The layout of Microsoft's BEATs_iter3 checkpoint (12 layers x 768, 90 M parameters): 16x16 patches, deep norm and a
# gated relative position bias. Smaller conditioners keep the layout and change the sizes: {**BEATS_ITER3, ...}.
BEATS_ITER3 = dict(
    input_patch_size=16,
    embed_dim=512,
    encoder_layers=12,
    encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072,
    encoder_attention_heads=12,
    deep_norm=True,
    relative_position_embedding=True,
    num_buckets=320,
    max_distance=800,
    gru_rel_pos=True,
)

# Sizes small enough for unit tests (a forward pass in milliseconds); random weights, never shipped.
TINY_VAE = dict(block_out_channels=(8, 16, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1)
TINY_UNET = dict(
    block_out_channels=(16, 32),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=4,
    norm_num_groups=8,
    cross_attention_dim=32,
)
TINY_BEATS = dict(
    input_patch_size=16,
    embed_dim=32,
    encoder_layers=2,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=2,
    conv_pos=16,
    conv_pos_groups=4,
    relative_position_embedding=True,
    num_buckets=32,
    max_distance=64,
    gru_rel_pos=True,
    deep_norm=True,
)


def make_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """The DDIM scheduler FUSE samples with.

    Few steps need three things together: `trailing` spacing so that sampling starts at the last training
    timestep (999) rather than 833 after leading spacing at 6 steps, which would leave signal the model never
    saw; a zero terminal SNR schedule so that the first step starts from pure noise as in training; and
    v-prediction, because epsilon prediction is undefined at zero SNR (the input holds no signal to subtract).
    """
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        rescale_betas_zero_snr=True,
        clip_sample=False,
        set_alpha_to_one=True,
    )


def make_vae(**kwargs: Any) -> SpectralAutoencoderKL:
    """A spectral VAE; keyword arguments as [`SpectralAutoencoderKL`]."""
    return SpectralAutoencoderKL(**kwargs)


def make_unet(
    latent_channels: int,
    condition_dim: int,
    latent_frames: int = 64,
    latent_freq: int = 64,
    token_channels: int = 0,
    **kwargs: Any,
) -> UNet2DConditionModel:
    """The denoiser: input = noisy target latent ++ noisy-input latent (`2 * latent_channels` channels) ++ the
    `token_channels` of a [`TokenGridProjection`], if any.

    BEATs tokens `(batch, tokens, condition_dim)` enter through cross-attention after diffusers' `encoder_hid_dim`
    projection to `cross_attention_dim`.
    """
    kwargs.setdefault("cross_attention_dim", 128)
    return UNet2DConditionModel(
        sample_size=(latent_freq, latent_frames),
        in_channels=2 * latent_channels + token_channels,
        out_channels=latent_channels,
        encoder_hid_dim=condition_dim,
        **kwargs,
    )


def widen_unet_input(unet: UNet2DConditionModel, in_channels: int) -> UNet2DConditionModel:
    """The same UNet with `in_channels` input channels: the existing ones keep their weights, the new ones get zero
    weights in `conv_in`, so the widened UNet computes exactly what the original does until training moves them."""
    old = unet.config.in_channels
    if in_channels < old:
        raise ValueError(f"widen_unet_input: {in_channels} input channels is fewer than the UNet's {old}.")
    if in_channels == old:
        return unet
    widened = UNet2DConditionModel.from_config({**unet.config, "in_channels": in_channels})
    state = unet.state_dict()
    weight = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat(
        [weight, weight.new_zeros(weight.shape[0], in_channels - old, *weight.shape[2:])], 1
    )
    widened.load_state_dict(state)
    return widened if unet.dtype == widened.dtype else widened.to(dtype=unet.dtype)


def make_token_projection(vae: SpectralAutoencoderKL, condition_dim: int, **kwargs: Any):
    """A [`TokenGridProjection`] for this VAE's front end (rate, STFT, down-sampling) and BEATs width; keyword
    arguments (`hidden_dim`, `out_channels`, ...) as the class."""
    from .models.token_projection import TokenGridProjection

    c = vae.config
    front_end = dict(
        sampling_rate=int(c.sampling_rate),
        n_fft=int(c.n_fft),
        hop_length=int(c.hop_length),
        latent_downsample=int(vae.downsample_factor),
    )
    return TokenGridProjection(condition_dim=condition_dim, **{**front_end, **kwargs})


def make_conditioner(**kwargs: Any):
    """A BEATs encoder from [`BEATsConfig`] fields (random weights: pre-train it or load a converted checkpoint)."""
    from .models.beats import BEATsConfig, BEATsModel

    return BEATsModel(BEATsConfig(**kwargs))


def make_pipeline(
    vae: dict[str, Any] | None = None,
    unet: dict[str, Any] | None = None,
    conditioner: dict[str, Any] | None = None,
    latent_frames: int = 64,
    seed: int | None = 0,
    token_projection: dict[str, Any] | None = None,
):
    """A FUSEPipeline with freshly initialised weights from config dictionaries (defaults: tiny; no
    `token_projection` unless one is given, `{}` for the defaults)."""
    import torch

    from .models.beats import BEATsFeatureExtractor
    from .pipelines.pipeline_fuse import FUSEPipeline

    if seed is not None:
        torch.manual_seed(seed)
    vae_model = make_vae(**(TINY_VAE if vae is None else vae))
    beats = make_conditioner(**(TINY_BEATS if conditioner is None else conditioner))
    projection = None
    if token_projection is not None:
        projection = make_token_projection(vae_model, beats.config.encoder_embed_dim, **token_projection)
    unet_model = make_unet(
        latent_channels=vae_model.config.latent_channels,
        condition_dim=beats.config.encoder_embed_dim,
        latent_frames=latent_frames,
        latent_freq=vae_model.config.sample_size // vae_model.downsample_factor,
        token_channels=projection.config.out_channels if projection is not None else 0,
        **(TINY_UNET if unet is None else unet),
    )
    pipe = FUSEPipeline(
        vae=vae_model,
        conditioner=beats,
        unet=unet_model,
        scheduler=make_scheduler(),
        feature_extractor=BEATsFeatureExtractor(),
        token_projection=projection,
    )
    for module in (vae_model, beats, unet_model, projection):
        if module is not None:
            module.eval()
    return pipe
