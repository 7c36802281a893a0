"""Nearest-neighbour 2x up-sampling followed by a 3x3 convolution, computed at the input's resolution.

diffusers' `Upsample2D` (VAE decoder and UNet up blocks) repeats every pixel 2x2 and then runs a 3x3 convolution on
the 4x larger map. Each of the four output phases `(a, b)` (row and column parity) only ever sees two distinct input
rows and two input columns through that kernel, so the same result comes from four 2x2 convolutions on the small map:
16 taps per input pixel instead of 36, 2.25x fewer multiply-adds in the most expensive convolutions of the VAE
decoder (its up-samplers are ~40 % of its convolution time). The weights stay those of the original convolution
(the same parameter, the same state-dict key): the phase kernels are sums of its taps, computed on each call.

Exact up to float rounding (about 1e-6 relative); `fold_upsamplers` swaps the modules of a loaded model in place.
In an ONNX export the pixel shuffle becomes a grouped transposed convolution with one-hot kernels (the same
permutation): onnxruntime's `DepthToSpace` on these maps took longer than the convolution it follows.
Imports only torch and diffusers: it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D
from torch import nn

__all__ = ["FoldedUpsample2D", "fold_upsamplers", "phase_kernels", "shuffle_kernels"]

# Which taps of a 3x3 kernel's row (column) land on each of the two input rows (columns) an output phase reads:
# phase 0 (even output rows) reads rows (i - 1, i): tap 0 on i - 1, taps 1 + 2 on i; phase 1 (odd rows) reads rows
# (i, i + 1): taps 0 + 1 on i, tap 2 on i + 1. Ordered by pixel-shuffle sub-row (see `FoldedUpsample2D.forward`):
# sub-row 0 holds phase 1, sub-row 1 phase 0. Axes: (sub-row, input row, the kernel's three taps).
_TAP_SUMS = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """`(out * 4, in, 2, 2)` kernels of the four output phases in pixel-shuffle order (channel = out channel * 4 +
    sub-row * 2 + sub-column; sub-row/-column 0 is phase 1, 1 is phase 0), from a `(out, in, 3, 3)` kernel that
    follows a nearest 2x up-sampling."""
    sums = _TAP_SUMS.to(device=weight.device, dtype=weight.dtype)
    kernels = torch.einsum("arh,bsw,oihw->oabirs", sums, sums, weight)  # (out, 2, 2, in, 2, 2)
    return kernels.flatten(0, 2)


def shuffle_kernels(channels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`(channels * 4, 1, 2, 2)` one-hot kernels: `conv_transpose2d(x, kernels, stride=2, groups=channels)` is
    `pixel_shuffle(x, 2)` (input channel `c * 4 + s` lands on sub-row `s // 2`, sub-column `s % 2` of output channel
    `c`)."""
    return torch.eye(4, dtype=dtype).reshape(4, 1, 2, 2).repeat(channels, 1, 1, 1)


def _is_foldable(module: nn.Module) -> bool:
    conv = getattr(module, "conv", None)
    return (
        type(module) is Upsample2D
        and module.use_conv
        and not module.use_conv_transpose
        and module.norm is None
        and module.interpolate
        and isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


class FoldedUpsample2D(nn.Module):
    """Drop-in for a diffusers `Upsample2D` (nearest 2x, then a 3x3 convolution with padding 1): the same output from
    four 2x2 convolutions at the input's resolution. Holds the original `conv`, so weights load and save unchanged.
    """

    def __init__(self, upsample: Upsample2D):
        super().__init__()
        self.channels, self.out_channels = upsample.channels, upsample.out_channels
        self.conv = upsample.conv
        self._original = [upsample]  # in a list: not a submodule, so the state dict keeps one copy of the weights

    def forward(self, hidden_states: torch.Tensor, output_size=None, *args, **kwargs) -> torch.Tensor:
        """`(batch, channels, H, W)` -> `(batch, out_channels, 2H, 2W)`; any other `output_size` goes the original
        way."""
        height, width = hidden_states.shape[-2:]
        if output_size is not None and tuple(output_size) != (2 * height, 2 * width):
            return self._original[0](hidden_states, output_size, *args, **kwargs)
        conv = self.conv
        # Padded by one on every side, a 2x2 convolution's output row m reads input rows (m - 1, m): phase 0 of input
        # row i is its output row i, phase 1 its row i + 1. Shuffled with phase 0 in the odd sub-row and phase 1 in
        # the even one, output row i's phase 0 lands on row 2i + 1 and phase 1 on row 2(i + 1) = 2i + 2, so the
        # up-sampled map is the shuffled one less its first row (the same for columns).
        bias = None if conv.bias is None else conv.bias.repeat_interleave(4)
        phases = F.conv2d(hidden_states, phase_kernels(conv.weight), bias, padding=1)  # (B, 4out, H+1, W+1)
        if torch.onnx.is_in_onnx_export():
            # onnxruntime's DepthToSpace is ~4x slower than this equal grouped transposed convolution (18 vs 78 ms on
            # fuse-small's largest map, 2 AVX2 cores); its padding of 1 is the crop. In torch pixel_shuffle is faster.
            kernels = shuffle_kernels(conv.out_channels, phases.dtype).to(phases.device)
            return F.conv_transpose2d(phases, kernels, stride=2, padding=1, groups=conv.out_channels)
        return F.pixel_shuffle(phases, 2)[:, :, 1 : 2 * height + 1, 1 : 2 * width + 1]


def fold_upsamplers(model: nn.Module) -> int:
    """Replaces every foldable `Upsample2D` in `model` (in place) by a [`FoldedUpsample2D`]; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_foldable(child):
                setattr(parent, name, FoldedUpsample2D(child))
                count += 1
    return count
