"""Spectral VAE: diffusers' `AutoencoderKL` over compressed STFT spectrograms.

The network is diffusers' own; this subclass only adds what a spectrogram needs in its config, so that a saved
model knows how to read its input: the representation (``"complex"``: 2 channels real/imaginary, or
``"magnitude"``: 1 channel) and the scale that normalises compressed spectra to about unit spread.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from diffusers import AutoencoderKL, ModelMixin  # noqa: F401
from diffusers.configuration_utils import register_to_config

# diffusers' pipeline loader looks up `ModelMixin` in the module that defines a custom component to decide how
# to load it, hence the import above.
_CHANNELS = {"complex": 2, "magnitude": 1}


class SpectralAutoencoderKL(AutoencoderKL):
    r"""A KL autoencoder for spectrograms `(batch, channels, freq, frames)`.

    With three `block_out_channels` it down-samples frequency and time by 4: a `(batch, 2, 256, 256)` complex
    spectrogram becomes a `(batch, latent_channels, 64, 64)` latent.

    Parameters:
        representation (`str`, defaults to `"complex"`):
            `"complex"` (2 channels, real and imaginary part of the compressed STFT) or `"magnitude"`
            (1 channel, the compressed magnitude; synthesis reuses the noisy input's phase).
        input_scale (`float`, defaults to 0.054):
            Compressed spectra are divided by this before encoding and multiplied after decoding. Measured on
            data as the standard deviation of the compressed values: unnormalised inputs of a few hundredths
            make a VAE collapse to an all-zero output.
        Other parameters: see [`~diffusers.AutoencoderKL`]. `in_channels`/`out_channels` follow the
        representation when left as `None`. `scaling_factor` should be measured on data (`1 / std` of the
        latents), not left at Stable Diffusion's 0.18215.
    """

    @register_to_config
    def __init__(
        self,
        representation: str = "complex",
        input_scale: float = 0.054,
        in_channels: Optional[int] = None,
        out_channels: Optional[int] = None,
        down_block_types: Tuple[str, ...] = ("DownEncoderBlock2D",) * 3,
        up_block_types: Tuple[str, ...] = ("UpDecoderBlock2D",) * 3,
        block_out_channels: Tuple[int, ...] = (32, 64, 128),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 8,
        norm_num_groups: int = 32,
        sample_size: int = 256,
        scaling_factor: float = 1.0,
        shift_factor: Optional[float] = None,
        latents_mean: Optional[Tuple[float]] = None,
        latents_std: Optional[Tuple[float]] = None,
        force_upcast: bool = False,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = False,
    ):
        if representation not in _CHANNELS:
            raise ValueError(f"representation must be one of {tuple(_CHANNELS)}, got {representation!r}.")
        expected = _CHANNELS[representation]
        in_channels = expected if in_channels is None else in_channels
        out_channels = expected if out_channels is None else out_channels
        if in_channels != expected or out_channels != expected:
            raise ValueError(
                f"the {representation!r} representation has {expected} channel(s); got in_channels={in_channels}, "
                f"out_channels={out_channels}."
            )
        if len(block_out_channels) != len(down_block_types) or len(block_out_channels) != len(up_block_types):
            raise ValueError("block_out_channels, down_block_types and up_block_types must have the same length.")
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=tuple(down_block_types),
            up_block_types=tuple(up_block_types),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            shift_factor=shift_factor,
            latents_mean=latents_mean,
            latents_std=latents_std,
            force_upcast=force_upcast,
            use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv,
            mid_block_add_attention=mid_block_add_attention,
        )

    @property
    def downsample_factor(self) -> int:
        """How much the encoder shrinks frequency and time (4 for three blocks)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode_to_latents(self, spec: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Normalised spectrogram `(batch, C, 256, frames)` -> scaled latent `(batch, latent_channels, 64, frames/4)`.

        Uses the posterior mean unless `sample` is set; the result is multiplied by `scaling_factor` so that
        latents have about unit variance, the scale the diffusion model's noise schedule assumes.
        """
        posterior = self.encode(spec).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mode()
        return latents * self.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode_to_latents`: scaled latent -> normalised spectrogram."""
        return self.decode(latents / self.config.scaling_factor).sample
