"""`precision="auto"` chooses by measurement: bf16 only where it is native AND a timed UNet pass is faster in it,
cached per process and device; forced precisions never measure (`fuse_hf.pipelines.precision`)."""

from __future__ import annotations

import pytest
import torch

from fuse_hf import FUSEPipeline
from fuse_hf.pipelines import precision as P


@pytest.fixture(autouse=True)
def fresh_choices():
    P.clear_auto_precision()
    yield
    P.clear_auto_precision()


@pytest.fixture
def pipe(tiny_pipeline_dir):
    pipe = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fake_timer(monkeypatch, fp32_s: float, bf16_s: float) -> list[bool]:
    """Replaces the UNet timing with fixed seconds; returns the list of `bf16` flags it was called with."""
    calls: list[bool] = []

    def time_unet_forward(unet, device, bf16, repeats=3):
        calls.append(bf16)
        return bf16_s if bf16 else fp32_s

    monkeypatch.setattr(P, "time_unet_forward", time_unet_forward)
    return calls


def is_channels_last(pipe) -> bool:
    weight = pipe.unet.conv_in.weight
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_auto_picks_bf16_when_measured_faster_and_caches_it(monkeypatch, pipe):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    calls = fake_timer(monkeypatch, fp32_s=1.0, bf16_s=0.5)
    pipe.set_precision("auto")
    assert not is_channels_last(pipe)  # not measured yet: the fp32 reference layout until the first call
    assert isinstance(pipe._autocast(torch.device("cpu")), torch.autocast)
    assert sorted(calls) == [False, True] and is_channels_last(pipe)
    assert P.cached_auto_precision("cpu") == ("bf16", 2.0)
    # Cached per process: a second call, and a second pipeline, do not measure again.
    assert isinstance(pipe._autocast(torch.device("cpu")), torch.autocast)
    other = FUSEPipeline.from_pretrained(pipe.config._name_or_path)
    other.set_precision("auto")
    assert is_channels_last(other) and isinstance(other._autocast(torch.device("cpu")), torch.autocast)
    assert len(calls) == 2


@pytest.mark.parametrize("bf16_s", [0.95, 1.5])  # 5 % faster is not enough; slower never
def test_auto_keeps_fp32_unless_bf16_is_clearly_faster(monkeypatch, pipe, bf16_s):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    calls = fake_timer(monkeypatch, fp32_s=1.0, bf16_s=bf16_s)
    pipe.set_precision("auto")
    assert not isinstance(pipe._autocast(torch.device("cpu")), torch.autocast)
    assert len(calls) == 2 and not is_channels_last(pipe)
    assert P.cached_auto_precision("cpu")[0] == "fp32"


def test_auto_without_native_bf16_is_fp32_without_measuring(monkeypatch, pipe):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    calls = fake_timer(monkeypatch, fp32_s=1.0, bf16_s=0.1)
    pipe.set_precision("auto")
    assert not isinstance(pipe._autocast(torch.device("cpu")), torch.autocast)
    assert calls == [] and P.cached_auto_precision("cpu") is None


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_forced_precision_skips_the_measurement(monkeypatch, pipe, forced):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    calls = fake_timer(monkeypatch, fp32_s=1.0, bf16_s=0.5 if forced == "fp32" else 2.0)
    pipe.set_precision(forced)
    assert isinstance(pipe._autocast(torch.device("cpu")), torch.autocast) == (forced == "bf16")
    assert is_channels_last(pipe) == (forced == "bf16") and calls == []


def test_environment_variable_forces(monkeypatch, tiny_pipeline_dir):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    calls = fake_timer(monkeypatch, fp32_s=1.0, bf16_s=0.5)
    monkeypatch.setenv("FUSE_HF_PRECISION", "fp32")
    pipe = FUSEPipeline.from_pretrained(tiny_pipeline_dir)
    assert not isinstance(pipe._autocast(torch.device("cpu")), torch.autocast) and calls == []


def test_the_choice_is_per_device(monkeypatch, pipe):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    fake_timer(monkeypatch, fp32_s=1.0, bf16_s=0.5)
    assert P.auto_precision(pipe.unet, "cpu") == "bf16"
    assert P.cached_auto_precision("cpu") is not None and P.cached_auto_precision("cuda:0") is None
    assert P.resolve_precision("auto", "cpu") == "bf16"  # without a UNet: the choice measured there
    P.clear_auto_precision()
    assert P.resolve_precision("auto", "cpu") == "fp32"  # not measured yet: the reference


def test_non_torch_unets_are_not_measured(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    calls = fake_timer(monkeypatch, fp32_s=1.0, bf16_s=0.5)
    assert P.auto_precision(object(), "cpu") == "fp32" and calls == []  # e.g. the onnxruntime UNet


def test_real_timing_of_the_tiny_unet_restores_its_layout(pipe):
    seconds = P.time_unet_forward(pipe.unet, torch.device("cpu"), bf16=True, repeats=1)
    assert 0 < seconds < 10 and not is_channels_last(pipe)
    assert P.measure_bf16_speedup(pipe.unet, torch.device("cpu")) > 0
