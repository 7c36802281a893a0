"""The two encodings of noisy audio that condition the UNet: spectral VAE latents and BEATs tokens.

Training (`fuse_hf.training.stages`) and inference ([`FUSEPipeline`]) both encode through these two functions, so
that the UNet sees at inference exactly what it was trained on.

Imports only torch and the spectral front end, so that it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import torch

from ..spectral import pad_frames, to_spectrogram

__all__ = ["encode_condition", "encode_spectral_latents"]


def encode_spectral_latents(vae, waveform: torch.Tensor, frame_multiple: int = 1):
    """Waveforms -> the VAE latents the UNet works on. Training and inference both encode through here, so that the
    UNet sees at inference exactly the kind of latent it was trained on.

    The VAE encodes the whole batch in one pass, or window by window after `vae.enable_slicing()` (the pipeline's
    default: see [`FUSEPipeline`]).

    Args:
        vae ([`SpectralAutoencoderKL`]): reads its front end, representation and input scale from its config.
        waveform: `(batch, samples)` float at `vae.config.sampling_rate`.
        frame_multiple: spectrogram frames are zero-padded to a multiple of this (`pad_frames`).

    Returns:
        `(latents, compressed, frames)`: latents `(batch, latent_channels, latent_freq, padded_frames / 4)` in the
        VAE's dtype, the compressed complex spectrum `(batch, freq, frames)` whose phase the decoder output reuses,
        and the number of frames before padding.
    """
    spec, compressed = to_spectrogram(
        waveform, vae.config.representation, vae.config.input_scale, **vae.spectral_settings
    )
    frames = spec.shape[-1]
    spec = pad_frames(spec, frame_multiple).to(vae.dtype)
    return vae.encode_to_latents(spec), compressed, frames


def encode_condition(
    conditioner, waveform: torch.Tensor, padding_mask: torch.Tensor | None = None, feature_extractor=None
):
    """BEATs tokens of noisy 16 kHz windows `(batch, samples)` -> `(batch, tokens, embed_dim)` and a cross-attention
    mask `(batch, tokens)` (1 = attend), or None when no token is padded. Shared by training and inference.

    The filterbank comes from `feature_extractor` (a `BEATsFeatureExtractor`) when given, else from the
    conditioner's own front end; both compute the same official filterbank."""
    inputs = {"input_values": waveform}
    if feature_extractor is not None:
        inputs = feature_extractor(waveform, return_attention_mask=False, return_tensors="pt")
    # "patch" masks whole padded patch rows, so a padded last window gets the tokens its audio gets alone.
    output = conditioner(**inputs, padding_mask=padding_mask, padding_mode="patch", return_dict=True)
    features, token_padding = output.last_hidden_state, output.padding_mask
    mask = None
    if token_padding is not None and token_padding.shape == features.shape[:2] and bool(token_padding.any()):
        mask = (~token_padding).to(features.dtype)
    return features, mask
