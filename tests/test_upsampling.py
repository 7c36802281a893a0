"""The folded up-samplers (fuse_hf/pipelines/upsampling.py) against diffusers' nearest 2x + 3x3 convolution."""

import pytest
import torch
from diffusers.models.upsampling import Upsample2D
from torch import nn

from fuse_hf.pipelines.upsampling import FoldedUpsample2D, fold_upsamplers, phase_kernels, shuffle_kernels


@pytest.mark.parametrize(
    "channels, out_channels, height, width", [(8, 8, 7, 9), (4, 6, 1, 1), (16, 5, 12, 3), (3, 3, 2, 40)]
)
def test_folded_upsampler_equals_nearest_then_conv(channels, out_channels, height, width):
    torch.manual_seed(channels * 100 + height)
    original = Upsample2D(channels, use_conv=True, out_channels=out_channels)
    folded = FoldedUpsample2D(original)
    x = torch.randn(2, channels, height, width)
    with torch.no_grad():
        expected, got = original(x), folded(x)
    assert got.shape == (2, out_channels, 2 * height, 2 * width)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_folded_upsampler_other_output_size_goes_the_original_way():
    original = Upsample2D(4, use_conv=True)
    folded = FoldedUpsample2D(original)
    x = torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x, output_size=(9, 11)), original(x, output_size=(9, 11)))
        torch.testing.assert_close(folded(x, output_size=(10, 12)), original(x), rtol=1e-5, atol=1e-5)


def test_phase_kernels_sum_the_taps_each_phase_sees():
    weight = torch.arange(9.0).reshape(1, 1, 3, 3)  # rows (0 1 2), (3 4 5), (6 7 8)
    kernels = phase_kernels(weight)  # pixel-shuffle order: phases (1,1), (1,0), (0,1), (0,0)
    # Phase (0, 0) reads input rows (i-1, i) and columns (j-1, j): tap row 0 alone, rows 1 + 2 summed, and the same
    # for columns.
    torch.testing.assert_close(kernels[3, 0], torch.tensor([[0.0, 1 + 2], [3 + 6, 4 + 5 + 7 + 8]]))
    # Phase (1, 1) reads rows (i, i+1) and columns (j, j+1): rows 0 + 1 summed, row 2 alone.
    torch.testing.assert_close(kernels[0, 0], torch.tensor([[0 + 1 + 3 + 4, 2 + 5], [6 + 7, 8.0]]))
    assert kernels.sum() == 4 * weight.sum()  # every tap lands once in each phase


def test_fold_upsamplers_keeps_weights_and_state_dict(tiny_pipeline):
    # The tiny pipeline was folded on construction: its state dicts have diffusers' keys and it saves and loads as
    # any other; a fresh copy of an unfolded module folds with the same keys.
    keys = [k for k in tiny_pipeline.vae.state_dict() if "upsamplers" in k]
    assert keys and all(".conv." in k for k in keys)
    assert any(isinstance(m, FoldedUpsample2D) for m in tiny_pipeline.vae.modules())
    assert any(isinstance(m, FoldedUpsample2D) for m in tiny_pipeline.unet.modules())
    model = nn.Sequential(Upsample2D(4, use_conv=True), nn.ReLU(), Upsample2D(4, use_conv=True, name="Conv2d_0"))
    before = dict(model.state_dict())
    assert fold_upsamplers(model) == 1  # the second names its convolution otherwise: left alone
    assert isinstance(model[0], FoldedUpsample2D) and type(model[2]) is Upsample2D
    assert model.state_dict().keys() == before.keys()
    assert fold_upsamplers(model) == 0  # idempotent


def test_shuffle_kernels_transposed_convolution_is_pixel_shuffle():
    # What an ONNX export computes in place of pixel_shuffle (onnxruntime's DepthToSpace is slow): the same
    # permutation, and padding 1 crops one row and column on every side.
    x = torch.randn(2, 3 * 4, 5, 7)
    kernels = shuffle_kernels(3)
    shuffled = torch.nn.functional.pixel_shuffle(x, 2)
    torch.testing.assert_close(torch.nn.functional.conv_transpose2d(x, kernels, stride=2, groups=3), shuffled)
    cropped = torch.nn.functional.conv_transpose2d(x, kernels, stride=2, padding=1, groups=3)
    torch.testing.assert_close(cropped, shuffled[:, :, 1:-1, 1:-1])


def test_folded_upsampler_exports_without_depth_to_space(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    original = Upsample2D(4, use_conv=True, out_channels=6)
    folded = FoldedUpsample2D(original)
    x = torch.randn(2, 4, 5, 9)
    path = tmp_path / "up.onnx"
    with torch.no_grad():
        torch.onnx.export(folded, (x,), path, input_names=["x"], opset_version=17, dynamo=False)
        expected = original(x).numpy()
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert "ConvTranspose" in ops and "DepthToSpace" not in ops
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert got.shape == (2, 6, 10, 18)
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), rtol=1e-5, atol=1e-5)
