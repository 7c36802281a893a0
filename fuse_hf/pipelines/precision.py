"""How the pipeline's VAE and UNet compute: bf16 autocast where the hardware computes bf16 natively (GPUs with bf16,
CPUs with AVX512-BF16 or AMX), fp32 elsewhere, and the channels-last weight layout that makes oneDNN's bf16
convolutions fast on a CPU. BEATs always runs in fp32 ([`FUSEPipeline.set_precision`]).

Imports only torch, so that it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import contextlib
import functools

import torch

__all__ = ["PRECISIONS", "autocast_context", "cpu_has_native_bf16", "resolve_precision", "uses_channels_last"]

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), read from the kernel's CPU flags.

    torch has no public query for it (`torch.backends.cpu.get_cpu_capability()` says "AVX512" with or without
    bf16); where /proc/cpuinfo cannot be read (not Linux) the answer is False, and `set_precision("bf16")` still
    forces bf16.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return bool({"avx512_bf16", "amx_tile"} & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """`"auto"` -> `"bf16"` on GPUs with bf16 and on CPUs with native bf16, else `"fp32"`; others unchanged."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def uses_channels_last(precision: str, dtype: torch.dtype) -> bool:
    """Whether VAE and UNet weights of `dtype` go in channels-last layout: when bf16 autocast will run on the CPU
    (fp32 weights, `precision` resolving to bf16 there), what makes oneDNN's bf16 convolutions fast. Otherwise they
    keep the default layout, whose fp32 results are the reference."""
    return resolve_precision(precision, torch.device("cpu")) == "bf16" and dtype == torch.float32


def autocast_context(precision: str, device: torch.device | str, dtype: torch.dtype):
    """The autocast context of modules with weights of `dtype` on `device`: bf16 autocast where `precision` resolves
    to bf16 there and the weights are fp32, else a no-op context."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16" and dtype == torch.float32:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
