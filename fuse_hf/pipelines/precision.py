"""How the pipeline's VAE and UNet compute: bf16 autocast where it is measured to be faster (GPUs with bf16, CPUs with
AVX512-BF16 or AMX), fp32 elsewhere, and the channels-last weight layout that makes oneDNN's bf16 convolutions fast on
a CPU. BEATs always runs in fp32 ([`FUSEPipeline.set_precision`]).

``"auto"`` chooses by measurement, not by a CPU flag alone: a flag says that bf16 is native, not that it is faster
for this model on this machine (small convolutions, thread counts and oneDNN versions decide that). Where bf16 is
native, the first call times one UNet forward pass in fp32 and under bf16 autocast and keeps bf16 only when it is at
least `BF16_MIN_SPEEDUP` times faster; the choice is cached per process and device. Where bf16 is not native it is
emulated (about 6x slower on an AVX2 CPU), so fp32 is chosen without measuring.

Imports only torch, so that it travels with the pipeline as Hub remote code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

import torch

__all__ = [
    "BF16_MIN_SPEEDUP",
    "PRECISIONS",
    "auto_precision",
    "autocast_context",
    "cached_auto_precision",
    "clear_auto_precision",
    "cpu_has_native_bf16",
    "has_native_bf16",
    "measure_bf16_speedup",
    "resolve_precision",
    "set_layout",
    "time_unet_forward",
    "uses_channels_last",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
# bf16 must save at least ~10 % of a UNet pass to be chosen: below that, timing noise could flip the choice, and
# fp32 is the reference output.
BF16_MIN_SPEEDUP = 1.10

# "auto"'s measured choice and the speed-up behind it, per (device type, device index), for this process.
_AUTO_CHOICES: dict[tuple[str, int | None], tuple[str, float | None]] = {}


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
                    return bool({"avx512_bf16", "amx_tile", "amx_bf16"} & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def _probe_inputs(unet, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window of the UNet's trained size (`config.sample_size`, batch 1) and 16 BEATs tokens, on `device`."""
    config = unet.config
    size = config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, config.in_channels, height, width, generator=generator)
    tokens = torch.randn(1, 16, config.cross_attention_dim, generator=generator)
    return sample.to(device, unet.dtype), torch.tensor([500.0], device=device), tokens.to(device, unet.dtype)


@torch.no_grad()
def time_unet_forward(unet, device: torch.device, bf16: bool, repeats: int = 3) -> float:
    """Seconds of one UNet forward pass on one trained-size window: the fastest of `repeats` after a warm-up (the
    first pass pays oneDNN's kernel selection). With `bf16` it runs under bf16 autocast, in the layout bf16 runs in
    (channels-last on a CPU); the UNet's layout is restored afterwards."""
    sample, timestep, tokens = _probe_inputs(unet, device)
    channels_last = bf16 and device.type == "cpu"
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        sample = sample.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    best = float("inf")
    try:
        with autocast:
            for index in range(repeats + 1):
                begin = time.perf_counter()
                unet(sample, timestep, encoder_hidden_states=tokens)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if index > 0:  # the first pass is the warm-up
                    best = min(best, time.perf_counter() - begin)
    finally:
        if channels_last:
            unet.to(memory_format=torch.contiguous_format)
    return best


def measure_bf16_speedup(unet, device: torch.device) -> float:
    """fp32 seconds / bf16 seconds of one UNet forward pass ([`time_unet_forward`]): above 1, bf16 is faster."""
    fp32 = time_unet_forward(unet, device, bf16=False)
    bf16 = time_unet_forward(unet, device, bf16=True)
    return fp32 / max(bf16, 1e-12)


def auto_precision(unet, device: torch.device | str) -> str:
    """What ``"auto"`` means for `unet` on `device`: ``"bf16"`` only where bf16 is native and a measured UNet pass is
    at least `BF16_MIN_SPEEDUP` times faster in it than in fp32, else ``"fp32"``.

    Measured once per process and device (about 8 UNet passes on one window) and cached: later calls, and other
    pipelines in the process, reuse the choice. A UNet that is not a torch module (the onnxruntime back end) or does
    not hold fp32 weights gets ``"fp32"`` without measuring: autocast does not apply to it.
    """
    device = torch.device(device)
    if not has_native_bf16(device):
        return "fp32"  # emulated bf16 is several times slower: never worth measuring
    if not isinstance(unet, torch.nn.Module) or unet.dtype != torch.float32:
        return "fp32"
    key = (device.type, device.index)
    if key not in _AUTO_CHOICES:
        speedup = measure_bf16_speedup(unet, device)
        choice = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
        _AUTO_CHOICES[key] = (choice, speedup)
        logger.info("precision auto on %s: bf16 is %.2fx as fast as fp32 -> %s", device, speedup, choice)
    return _AUTO_CHOICES[key][0]


def cached_auto_precision(device: torch.device | str) -> tuple[str, float | None] | None:
    """`(choice, measured speed-up)` that ``"auto"`` made on `device` in this process, or None before it measured."""
    device = torch.device(device)
    return _AUTO_CHOICES.get((device.type, device.index))


def clear_auto_precision() -> None:
    """Forgets the measured choices, so that the next ``"auto"`` call measures again."""
    _AUTO_CHOICES.clear()


def resolve_precision(precision: str, device: torch.device | str, unet=None) -> str:
    """`"fp32"` or `"bf16"` as given, or what `"auto"` means on `device`: the measured choice for `unet`
    ([`auto_precision`]); without a `unet`, the choice already measured there, else fp32 (where bf16 is not native,
    or before the first measurement: the reference until measured faster)."""
    if precision != "auto":
        return precision
    if unet is not None:
        return auto_precision(unet, device)
    cached = cached_auto_precision(device)
    return cached[0] if cached is not None and has_native_bf16(torch.device(device)) else "fp32"


def uses_channels_last(precision: str, dtype: torch.dtype) -> bool:
    """Whether VAE and UNet weights of `dtype` go in channels-last layout: when bf16 autocast will run on the CPU
    (fp32 weights, `precision` resolving to bf16 there), what makes oneDNN's bf16 convolutions fast. Otherwise they
    keep the default layout, whose fp32 results are the reference. ``"auto"`` not yet measured keeps the default
    layout; [`autocast_context`] changes it once the measurement chooses bf16."""
    return resolve_precision(precision, torch.device("cpu")) == "bf16" and dtype == torch.float32


def set_layout(pipe, channels_last: bool) -> None:
    """Puts `pipe`'s VAE and UNet weights in channels-last or the default layout (a no-op when already there)."""
    if channels_last != pipe._channels_last:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        pipe.unet.to(memory_format=memory_format)
        pipe.vae.to(memory_format=memory_format)
        pipe._channels_last = channels_last


def autocast_context(precision: str, device: torch.device | str, dtype: torch.dtype, pipe=None):
    """The autocast context of modules with weights of `dtype` on `device`: bf16 autocast where `precision` resolves
    to bf16 there and the weights are fp32, else a no-op context.

    With `pipe` (a [`FUSEPipeline`]), ``"auto"`` is resolved by measuring its UNet on first use, and the weight layout
    is set to match the choice on a CPU ([`set_layout`]).
    """
    device = torch.device(device)
    choice = resolve_precision(precision, device, pipe.unet if pipe is not None else None)
    if pipe is not None and precision == "auto" and device.type == "cpu":
        set_layout(pipe, choice == "bf16" and dtype == torch.float32)
    if choice == "bf16" and dtype == torch.float32:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
