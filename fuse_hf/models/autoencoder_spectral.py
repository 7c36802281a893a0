"""Spectral VAE: diffusers' `AutoencoderKL` over compressed STFT spectrograms.

The network is diffusers' own; this subclass only adds what a spectrogram needs in its config, so that a saved
model knows how to read its input: the front end (sample rate, STFT size, hop, window, magnitude compression), the
representation (``"complex"``: 2 channels real/imaginary, or ``"magnitude"``: 1 channel) and the scale that
normalises compressed spectra to about unit spread.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, ModelMixin  # noqa: F401
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder

# diffusers' pipeline loader looks up `ModelMixin` in the module that defines a custom component to decide how
# to load it, hence the import above.
_CHANNELS = {"complex": 2, "magnitude": 1}
# The front end's defaults and windows are those of `fuse_hf.spectral` (SAMPLE_RATE, N_FFT, ..., WINDOWS), written
# out because this file travels alone as Hub remote code (tests/test_pipeline.py checks that they agree).
_WINDOWS = ("hann", "hamming", "blackman")
_SPECTRAL_KEYS = ("n_fft", "hop_length", "window", "compression_exponent", "compression_factor")


class SpectralAutoencoderKL(AutoencoderKL):
    r"""A KL autoencoder for spectrograms `(batch, channels, freq, frames)`.

    With three `block_out_channels` it down-samples frequency and time by 4: a `(batch, 2, 256, 256)` complex
    spectrogram becomes a `(batch, latent_channels, 64, 64)` latent.

    Parameters:
        sampling_rate (`int`, defaults to 16000): sample rate in Hz of the audio the model works on.
        n_fft (`int`, defaults to 510): STFT size; `n_fft // 2 + 1` frequency bins (256), which must equal
            `sample_size`.
        hop_length (`int`, defaults to 128): STFT hop in samples (8 ms at 16 kHz).
        window (`str`, defaults to `"hann"`): the periodic STFT window, `"hann"`, `"hamming"` or `"blackman"`.
        compression_exponent (`float`, defaults to 0.5) and compression_factor (`float`, defaults to 0.15):
            magnitudes are compressed to `compression_factor * |X| ** compression_exponent` (sgmse), phase kept.
        representation (`str`, defaults to `"complex"`):
            `"complex"` (2 channels, real and imaginary part of the compressed STFT) or `"magnitude"`
            (1 channel, the compressed magnitude; synthesis reuses the noisy input's phase).
        input_scale (`float`, defaults to 0.054):
            Compressed spectra are divided by this before encoding and multiplied after decoding. Measured on
            data as the standard deviation of the compressed values: unnormalised inputs of a few hundredths
            make a VAE collapse to an all-zero output.
        decoder_layers_per_block (`int`, *optional*): ResNet blocks per decoder up block minus one, when the decoder
            is lighter than the encoder (`layers_per_block`, the default). See `with_lighter_decoder`.
        decoder_block_out_channels (`tuple[int]`, *optional*): the decoder's channels per level, finest first, when
            they differ from the encoder's `block_out_channels` (a narrower full-resolution level costs least).
        decoder_mid_block_layers (`int`, *optional*): ResNet blocks of the decoder's mid block minus one (diffusers
            builds two: 1); 0 keeps one.
        encoder_block_out_channels (`tuple[int]`, *optional*) and encoder_mid_block_layers (`int`, *optional*): the
            same for the encoder. A narrower encoder is distilled from a trained one (`with_lighter_encoder`, then
            `train.py vae --distill_encoder`), so that it writes the latents a trained UNet works in.
        Other parameters: see [`~diffusers.AutoencoderKL`]; `sample_size` is the frequency axis.
        `in_channels`/`out_channels` follow the representation when left as `None`. `scaling_factor` should be
        measured on data (`1 / std` of the latents), not left at Stable Diffusion's 0.18215.
    """

    @register_to_config
    def __init__(
        self,
        representation: str = "complex",
        input_scale: float = 0.054,
        in_channels: int | None = None,
        out_channels: int | None = None,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 3,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 3,
        block_out_channels: tuple[int, ...] = (32, 64, 128),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 8,
        norm_num_groups: int = 32,
        sample_size: int = 256,
        scaling_factor: float = 1.0,
        shift_factor: float | None = None,
        latents_mean: tuple[float] | None = None,
        latents_std: tuple[float] | None = None,
        force_upcast: bool = False,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = False,
        sampling_rate: int = 16000,
        n_fft: int = 510,
        hop_length: int = 128,
        window: str = "hann",
        compression_exponent: float = 0.5,
        compression_factor: float = 0.15,
        decoder_layers_per_block: int | None = None,
        decoder_block_out_channels: tuple[int, ...] | None = None,
        decoder_mid_block_layers: int | None = None,
        encoder_block_out_channels: tuple[int, ...] | None = None,
        encoder_mid_block_layers: int | None = None,
    ):
        _check_front_end(sampling_rate, n_fft, hop_length, window, compression_exponent, compression_factor)
        if n_fft // 2 + 1 != sample_size:
            raise ValueError(
                f"sample_size ({sample_size}) must be the number of frequency bins, n_fft // 2 + 1 = {n_fft // 2 + 1}."
            )
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
        # diffusers' own Encoder / Decoder, built with other widths: the latents they write and read keep their shape.
        shared = dict(
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            mid_block_add_attention=mid_block_add_attention,
        )
        if encoder_block_out_channels is not None and tuple(encoder_block_out_channels) != tuple(block_out_channels):
            _check_widths("encoder_block_out_channels", encoder_block_out_channels, block_out_channels, norm_num_groups)
            self.encoder = Encoder(
                in_channels=in_channels,
                out_channels=latent_channels,
                down_block_types=tuple(down_block_types),
                block_out_channels=tuple(encoder_block_out_channels),
                double_z=True,
                **shared,
            )
        if decoder_block_out_channels is not None and tuple(decoder_block_out_channels) != tuple(block_out_channels):
            _check_widths("decoder_block_out_channels", decoder_block_out_channels, block_out_channels, norm_num_groups)
            self.decoder = Decoder(
                in_channels=latent_channels,
                out_channels=out_channels,
                up_block_types=tuple(up_block_types),
                block_out_channels=tuple(decoder_block_out_channels),
                **shared,
            )
        for name, layers, coder in (
            ("encoder_mid_block_layers", encoder_mid_block_layers, self.encoder),
            ("decoder_mid_block_layers", decoder_mid_block_layers, self.decoder),
        ):
            if layers is not None and layers != 1:
                if layers != 0 or mid_block_add_attention:
                    raise ValueError(
                        f"{name} can only be 0 (one ResNet block) or 1 (diffusers' two), and 0 needs "
                        f"mid_block_add_attention=False; got {layers!r}."
                    )
                # UNetMidBlock2D runs resnets[0], then one (attention, resnet) pair per layer: none left.
                coder.mid_block.resnets = coder.mid_block.resnets[:1]
                coder.mid_block.attentions = coder.mid_block.attentions[:0]
        if decoder_layers_per_block is not None and decoder_layers_per_block != layers_per_block:
            if not 0 <= decoder_layers_per_block < layers_per_block:
                raise ValueError(
                    f"decoder_layers_per_block must be in [0, layers_per_block = {layers_per_block}), got "
                    f"{decoder_layers_per_block}."
                )
            # A lighter decoder for the same latents: each up block keeps its first `decoder_layers_per_block + 1`
            # ResNet blocks (the first takes the block's input channels, the others are out -> out, so what is left
            # is diffusers' Decoder built with that depth); the encoder keeps `layers_per_block`.
            # `with_lighter_decoder` cuts one from a trained VAE.
            for block in self.decoder.up_blocks:
                block.resnets = block.resnets[: decoder_layers_per_block + 1]

    @property
    def spectral_settings(self) -> dict[str, Any]:
        """The front-end keyword arguments of `fuse_hf.spectral.to_spectrogram` / `to_waveform` for this model:
        `n_fft`, `hop_length`, `window`, `compression_exponent`, `compression_factor`."""
        return {name: self.config[name] for name in _SPECTRAL_KEYS}

    def with_lighter_decoder(
        self,
        decoder_layers_per_block: int | None = None,
        decoder_block_out_channels: tuple[int, ...] | None = None,
        decoder_mid_block_layers: int | None = None,
    ) -> SpectralAutoencoderKL:
        """A copy with a lighter decoder: fewer ResNet blocks per up block (`decoder_layers_per_block + 1`), narrower
        levels (`decoder_block_out_channels`), or one mid-block ResNet (`decoder_mid_block_layers=0`); the same
        encoder, so the same latents (the ones a trained UNet works in).

        The decoder starts from this one's weights ([`_lighter_copy`]); each block is residual, so what is left still
        decodes, roughly; fine-tune the decoder alone (`train.py vae --pretrained_model ... --train_decoder_only`) to
        recover the rest.

        Raises:
            ValueError: a setting the decoder cannot have, or one that would not make it lighter.
        """
        config = self.config
        changes = {}
        if decoder_layers_per_block is not None:
            current = config.decoder_layers_per_block
            current = config.layers_per_block if current is None else current
            if not 0 <= decoder_layers_per_block < current:
                raise ValueError(
                    f"decoder_layers_per_block must be in [0, {current}) to make the decoder lighter, got "
                    f"{decoder_layers_per_block}."
                )
            changes["decoder_layers_per_block"] = decoder_layers_per_block
        changes.update(self._narrower("decoder", decoder_block_out_channels, decoder_mid_block_layers))
        return self._lighter_copy("with_lighter_decoder", changes)

    def with_lighter_encoder(
        self,
        encoder_block_out_channels: tuple[int, ...] | None = None,
        encoder_mid_block_layers: int | None = None,
    ) -> SpectralAutoencoderKL:
        """A copy with a lighter encoder: narrower levels (`encoder_block_out_channels`) or one mid-block ResNet
        (`encoder_mid_block_layers=0`); the same decoder. It starts from this one's weights ([`_lighter_copy`]), but
        its latents are not this one's until it is distilled to write them (`train.py vae --pretrained_model ...
        --distill_encoder`: the decoder and a UNet trained on this VAE's latents then work on its output).

        Raises:
            ValueError: a setting the encoder cannot have, or one that would not make it lighter.
        """
        return self._lighter_copy(
            "with_lighter_encoder", self._narrower("encoder", encoder_block_out_channels, encoder_mid_block_layers)
        )

    def _narrower(self, part: str, block_out_channels, mid_block_layers) -> dict[str, Any]:
        """The config changes that narrow `part` ("encoder" or "decoder") level by level and/or keep one mid-block
        ResNet; a one-line error for widths that would widen it."""
        changes = {}
        if block_out_channels is not None:
            current = self.config.get(f"{part}_block_out_channels") or self.config.block_out_channels
            if len(block_out_channels) != len(current) or any(
                new > old for new, old in zip(block_out_channels, current)
            ):
                raise ValueError(
                    f"{part}_block_out_channels must narrow {tuple(current)} level by level, got "
                    f"{tuple(block_out_channels)}."
                )
            changes[f"{part}_block_out_channels"] = tuple(block_out_channels)
        if mid_block_layers is not None:
            changes[f"{part}_mid_block_layers"] = mid_block_layers
        return changes

    def _lighter_copy(self, caller: str, changes: dict[str, Any]) -> SpectralAutoencoderKL:
        """This model rebuilt with the config `changes`, every tensor taken from this one's: blocks that remain keep
        theirs, a narrower tensor takes the leading channels of this one's, and a block that now changes width gets
        an identity skip on them."""
        if not changes:
            raise ValueError(f"{caller}: no change asked for.")
        lighter = type(self).from_config(self.config, **changes)
        source = self.state_dict()
        kept = {}
        for name, tensor in lighter.state_dict().items():
            if name in source and source[name].dim() == tensor.dim():
                kept[name] = source[name][tuple(slice(0, size) for size in tensor.shape)]
            elif ".conv_shortcut." in name:  # a block that now changes width: its identity skip, on leading channels
                kept[name] = torch.eye(*tensor.shape[:2])[..., None, None] if name.endswith("weight") else 0 * tensor
            else:
                raise ValueError(f"{caller}: no weights for {name}.")
        lighter.load_state_dict(kept)
        return lighter.to(device=self.device, dtype=self.dtype)

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


def _check_front_end(sampling_rate, n_fft, hop_length, window, compression_exponent, compression_factor) -> None:
    """One line naming the first front-end setting that cannot work."""
    for name, value in (("sampling_rate", sampling_rate), ("n_fft", n_fft), ("hop_length", hop_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if hop_length > n_fft:
        raise ValueError(f"hop_length ({hop_length}) must not exceed n_fft ({n_fft}): frames would leave gaps.")
    if window not in _WINDOWS:
        raise ValueError(f"window must be one of {_WINDOWS}, got {window!r}.")
    for name, value in (("compression_exponent", compression_exponent), ("compression_factor", compression_factor)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}.")


def _check_widths(name: str, widths, block_out_channels, norm_num_groups: int) -> None:
    """One line unless `widths` are as many positive multiples of `norm_num_groups` as there are levels."""
    if len(widths) != len(block_out_channels) or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 or c % norm_num_groups for c in widths
    ):
        raise ValueError(
            f"{name} must be {len(block_out_channels)} positive multiples of norm_num_groups ({norm_num_groups}), "
            f"got {widths!r}."
        )
