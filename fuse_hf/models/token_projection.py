"""BEATs tokens laid onto the UNet's latent grid, aligned in time and frequency.

Through cross-attention alone, a UNet that already sees the noisy latent learns to ignore BEATs: its queries carry no
position, so the tokens reach it as an unordered bag, and only at the coarse levels. This module gives every latent
cell the token of its own time and mel band instead: a per-token MLP to a few channels, then a fixed resampling of
the token grid (160 ms rows x 8 mel bands) onto the latent grid (32 ms frames x 64 linear-frequency rows). The UNet
reads those channels beside the two latents it already gets, `cat([latents, noisy_latents, aligned])`, so they
enter at full resolution and every level sees them. The resampling follows from the two front ends, which are saved
in the config: the STFT and the VAE's down-sampling on one side, the BEATs filterbank and patches on the other.

Imports only torch and diffusers, so that it travels with a pipeline as Hub remote code.
"""

from __future__ import annotations

import math

import torch
from diffusers import ModelMixin  # noqa: F401 (diffusers' loader looks it up in this module)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from torch import nn

__all__ = ["TokenGridProjection", "mel_band_of_rows", "row_interpolation_weights"]


def _mel(hz: float) -> float:
    """Kaldi's mel scale (the BEATs filterbank's)."""
    return 1127.0 * math.log(1.0 + hz / 700.0)


def mel_band_of_rows(
    latent_freq: int,
    num_bands: int,
    sampling_rate: int = 16000,
    n_fft: int = 510,
    num_mel_bins: int = 128,
    mel_low_freq: float = 20.0,
) -> torch.Tensor:
    """Which BEATs frequency patch covers each latent frequency row: `(latent_freq, num_bands)` one-hot float.

    Latent row `i` pools the `(n_fft // 2 + 1) / latent_freq` STFT bins above `i` times that many (the VAE's
    down-sampling); its centre frequency falls in one mel bin of the filterbank (centres equally spaced in mel from
    `mel_low_freq` to Nyquist), and the patch of `num_mel_bins / num_bands` mel bins holding it is its band.
    """
    bins_per_row = (n_fft // 2 + 1) / latent_freq
    mel_low, mel_high = _mel(mel_low_freq), _mel(sampling_rate / 2)
    mel_delta = (mel_high - mel_low) / (num_mel_bins + 1)
    bins_per_band = num_mel_bins / num_bands
    bands = []
    for row in range(latent_freq):
        hz = (row + 0.5) * bins_per_row * sampling_rate / n_fft - 0.5 * sampling_rate / n_fft
        mel_bin = (_mel(max(hz, 0.0)) - mel_low) / mel_delta - 1.0
        bands.append(min(max(int(math.floor(max(mel_bin, 0.0) / bins_per_band)), 0), num_bands - 1))
    return torch.nn.functional.one_hot(torch.tensor(bands), num_bands).float()


def row_interpolation_weights(
    latent_frames: int,
    num_rows: int,
    frame_samples: int = 512,
    frame_offset: float = 192.0,
    row_samples: int = 2560,
    row_offset: float = 1400.0,
) -> torch.Tensor:
    """Linear-interpolation weights from token rows to latent frames: `(latent_frames, num_rows)`, rows sum to 1.

    Latent frame `j` is centred at `j * frame_samples + frame_offset` samples (4 centred STFT frames of hop 128:
    `(4 j + 1.5) * 128`), token row `r` at `r * row_samples + row_offset` (16 filterbank frames of shift 160 and
    length 400 from sample 0: `2560 r + 1400`). Frames before the first row's centre or after the last's take
    that row.
    """
    centres = torch.arange(latent_frames, dtype=torch.float64) * frame_samples + frame_offset
    position = ((centres - row_offset) / row_samples).clamp(0, max(num_rows - 1, 0))
    lower = position.floor().long().clamp(max=num_rows - 1)
    upper = (lower + 1).clamp(max=num_rows - 1)
    fraction = (position - lower).float()
    weights = torch.zeros(latent_frames, num_rows)
    index = torch.arange(latent_frames)
    weights[index, lower] += 1.0 - fraction
    weights[index, upper] += fraction
    return weights


class TokenGridProjection(ModelMixin, ConfigMixin):
    r"""BEATs tokens `(batch, rows * bands, condition_dim)` -> `(batch, out_channels, latent_freq, latent_frames)`.

    Each token goes through LayerNorm -> Linear -> SiLU -> Linear to `out_channels`; the token grid (rows of
    `patch_size` filterbank frames, bands of `patch_size` mel bins) is then resampled onto the latent grid: each
    latent row takes the band holding its centre frequency (`mel_band_of_rows`), each latent frame the linear
    interpolation of the two nearest token rows (`row_interpolation_weights`).

    Parameters:
        condition_dim (`int`, defaults to 256): width of the BEATs tokens (`encoder_embed_dim`).
        hidden_dim (`int`, defaults to 128): width of the per-token MLP.
        out_channels (`int`, defaults to 8): channels given to the UNet (its `in_channels` grows by this much).
        sampling_rate (`int`, defaults to 16000), n_fft (`int`, defaults to 510), hop_length (`int`, defaults to
            128), latent_downsample (`int`, defaults to 4): the VAE's front end and its down-sampling factor.
        patch_size (`int`, defaults to 16), num_mel_bins (`int`, defaults to 128), mel_low_freq (`float`,
            defaults to 20.0), fbank_frame_shift (`int`, defaults to 160), fbank_frame_length (`int`, defaults to
            400): the BEATs filterbank (in samples at `sampling_rate`) and patches.
    """

    @register_to_config
    def __init__(
        self,
        condition_dim: int = 256,
        hidden_dim: int = 128,
        out_channels: int = 8,
        sampling_rate: int = 16000,
        n_fft: int = 510,
        hop_length: int = 128,
        latent_downsample: int = 4,
        patch_size: int = 16,
        num_mel_bins: int = 128,
        mel_low_freq: float = 20.0,
        fbank_frame_shift: int = 160,
        fbank_frame_length: int = 400,
    ) -> None:
        super().__init__()
        if num_mel_bins % patch_size:
            raise ValueError(f"num_mel_bins ({num_mel_bins}) must be a multiple of patch_size ({patch_size}).")
        self.norm = nn.LayerNorm(condition_dim)
        self.proj_in = nn.Linear(condition_dim, hidden_dim)
        self.act = nn.SiLU()
        self.proj_out = nn.Linear(hidden_dim, out_channels)

    @property
    def num_bands(self) -> int:
        return self.config.num_mel_bins // self.config.patch_size

    def grid_weights(self, latent_freq: int, latent_frames: int, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(band weights (latent_freq, bands), row weights (latent_frames, rows))` for this geometry."""
        c = self.config
        bands = mel_band_of_rows(latent_freq, self.num_bands, c.sampling_rate, c.n_fft, c.num_mel_bins, c.mel_low_freq)
        row_samples = c.patch_size * c.fbank_frame_shift
        rows = row_interpolation_weights(
            latent_frames,
            num_rows,
            frame_samples=c.latent_downsample * c.hop_length,
            frame_offset=(c.latent_downsample - 1) / 2 * c.hop_length,
            row_samples=row_samples,
            row_offset=((c.patch_size - 1) * c.fbank_frame_shift + c.fbank_frame_length) / 2,
        )
        return bands, rows

    def forward(self, tokens: torch.Tensor, latent_freq: int, latent_frames: int) -> torch.Tensor:
        """Tokens `(batch, rows * bands, condition_dim)`, in BEATs' order (row-major: token `r * bands + b`) ->
        aligned channels `(batch, out_channels, latent_freq, latent_frames)` in the tokens' dtype.

        A batch row of all-zero tokens (conditioning dropout in training; guidance off and the unconditional half
        of classifier-free guidance in the pipeline) gives an all-zero grid: "without BEATs" means without both."""
        batch, num_tokens, width = tokens.shape
        if width != self.config.condition_dim or num_tokens % self.num_bands:
            raise ValueError(
                f"TokenGridProjection expects (batch, rows * {self.num_bands}, {self.config.condition_dim}) BEATs "
                f"tokens, got {tuple(tokens.shape)}."
            )
        rows = num_tokens // self.num_bands
        values = self.proj_out(self.act(self.proj_in(self.norm(tokens))))
        values = values.reshape(batch, rows, self.num_bands, -1)
        bands, frames = (w.to(values) for w in self.grid_weights(latent_freq, latent_frames, rows))
        grid = torch.einsum("brnc,fn,tr->bcft", values, bands, frames)
        dropped = tokens.flatten(1).abs().amax(dim=1) == 0
        return grid.masked_fill(dropped[:, None, None, None], 0.0)
