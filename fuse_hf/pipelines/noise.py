"""The initial noise of a clip's windows: one field over the clip's latent time axis, drawn in time order.

Overlapping windows take their slice of one field, so they share noise where they overlap and the output does not
depend on how windows are batched. The field is drawn in blocks of `NOISE_BLOCK_FRAMES` latent frames, first to
last, so that its frames `[a, b)` are the same numbers whether it is drawn whole for a clip
([`FUSEPipeline.__call__`]) or block by block as a stream reaches them ([`FUSEPipeline.stream`]), and whatever the
clip's length.

Imports only torch and diffusers, so that it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

__all__ = ["DEFAULT_NOISE_SCALE", "NOISE_BLOCK_FRAMES", "LatentNoise"]

# The standard deviation the initial noise is scaled to by default (`noise_scale`, a sampling temperature), chosen on
# a dev set of in-domain valid mixtures (not the benchmark's pairs): `benchmarks/bench_noise_scale.py`,
# `docs/sampling.md`.
DEFAULT_NOISE_SCALE = 0.25
# Latent frames per draw (0.5 s for fuse-small): long enough that a 10-minute clip takes a few hundred draws, short
# enough that a stream holds little more than its window's worth.
NOISE_BLOCK_FRAMES = 16


class LatentNoise:
    """Standard normal noise `(channels, latent_channels, latent_freq, frames)` over a clip's latent time axis,
    drawn from `generator` on the CPU in float32, `NOISE_BLOCK_FRAMES` frames at a time, as far as it is asked for.

    Args:
        shape: `(channels, latent_channels, latent_freq)`, the size of one latent frame.
        generator: a CPU `torch.Generator` (None: torch's global one).
    """

    def __init__(self, shape: tuple[int, int, int], generator: torch.Generator | None = None):
        self.shape, self.generator = tuple(shape), generator
        self._blocks: dict[int, torch.Tensor] = {}  # block index -> (*shape, NOISE_BLOCK_FRAMES)
        self._drawn = 0  # blocks drawn so far

    @classmethod
    def for_pipeline(cls, pipe, channels: int, generator: torch.Generator | None = None) -> LatentNoise:
        """The noise field of a clip of `channels` channels for the UNet of `pipe` (a [`FUSEPipeline`])."""
        latent_freq = pipe.vae.config.sample_size // pipe.vae.downsample_factor
        return cls((channels, pipe.unet.config.out_channels, latent_freq), generator)

    @property
    def held_frames(self) -> int:
        """Latent frames held in memory (see `forget`)."""
        return len(self._blocks) * NOISE_BLOCK_FRAMES

    def frames(self, start: int, stop: int) -> torch.Tensor:
        """Frames `[start, stop)`: `(channels, latent_channels, latent_freq, stop - start)` float32 on the CPU."""
        first, last = start // NOISE_BLOCK_FRAMES, (stop - 1) // NOISE_BLOCK_FRAMES
        while self._drawn <= last:
            self._blocks[self._drawn] = randn_tensor(
                (*self.shape, NOISE_BLOCK_FRAMES),
                generator=self.generator,
                device=torch.device("cpu"),
                dtype=torch.float32,
            )
            self._drawn += 1
        if first not in self._blocks:
            raise ValueError(f"latent frame {start} was forgotten: frames are kept from {self._kept_from()} on.")
        joined = torch.cat([self._blocks[index] for index in range(first, last + 1)], dim=-1)
        offset = start - first * NOISE_BLOCK_FRAMES
        return joined[..., offset : offset + stop - start]

    def forget(self, before: int) -> None:
        """Frees the blocks that hold only frames before `before` (a stream moving on)."""
        for index in [i for i in self._blocks if (i + 1) * NOISE_BLOCK_FRAMES <= before]:
            del self._blocks[index]

    def _kept_from(self) -> int:
        return min(self._blocks, default=self._drawn) * NOISE_BLOCK_FRAMES
