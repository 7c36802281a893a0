"""ONNX Runtime back end of [`FUSEPipeline`]: export of its four networks, and modules that run them.

`export_onnx` writes a copy of the pipeline folder (configs, weights, scheduler, feature extractor) with the graphs
of its networks beside them, and checks each graph against torch on the same input:

    OUT_DIR/model_index.json, vae/, unet/, conditioner/, scheduler/, feature_extractor/  (`save_pretrained`;
                                    token_projection/ too where there is one: it runs in torch)
    OUT_DIR/onnx/config.json        opset, quantisation, the graphs' SNRs against torch, their inputs and outputs
    OUT_DIR/onnx/conditioner.onnx   input_features (batch, frames, 128) -> last_hidden_state (batch, tokens, dim)
    OUT_DIR/onnx/vae_encoder.onnx   spectrogram (batch, C, freq, frames) -> latents (batch, 8, freq/4, frames/4)
    OUT_DIR/onnx/unet.onnx          sample (batch, 2*8 [+ token grid channels], freq/4, width), timestep (batch,),
                                    encoder_hidden_states (batch, tokens, dim) -> sample (batch, 8, freq/4, width):
                                    one denoising step
    OUT_DIR/onnx/vae_decoder.onnx   latents (batch, 8, freq/4, frames/4) -> spectrogram (batch, C, freq, frames)

Batch, time (frames, width, tokens) are dynamic axes; the latents are the scaled posterior mean that
`SpectralAutoencoderKL.encode_to_latents` returns. `FUSEPipeline.from_pretrained(OUT_DIR)` then loads the SAME
pipeline class with the adapters below in place of its torch networks (`backend="onnx"`, the default for a folder
with `onnx/config.json`; `backend="torch"` loads the weights beside them): the windows, scheduler, cross-fades and
post-processing are the pipeline's own, only the four network calls run on onnxruntime. The STFT, the BEATs
filterbank and the iSTFT stay in torch (cheap, and exact).

The graphs are traced with torch's TorchScript exporter (`dynamo=False`; torch 2.13 deprecates it but keeps it): on
fuse-small's UNet it exports in 6 s where the torch.export one takes 84 s, and its graph ran ~20 % faster on
onnxruntime, both ~120 dB from torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import FrozenDict
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from ..models.autoencoder_spectral import SpectralAutoencoderKL
from ..models.beats.feature_extraction_beats import fbank, normalize_fbank
from ..models.beats.modeling_beats import BEATsModelOutput
from ..spectral import pad_frames, to_spectrogram

__all__ = [
    "BACKENDS",
    "GRAPHS",
    "ONNXConditioner",
    "ONNXSpectralAutoencoder",
    "ONNXUNet",
    "cached_onnx_folder",
    "export_onnx",
    "has_onnx_graphs",
    "load_onnx_pipeline",
    "make_session",
    "resolve_backend",
    "snr_db",
    "uses_onnx",
]

BACKENDS = ("torch", "onnx")
GRAPHS = ("conditioner", "vae_encoder", "unet", "vae_decoder")
ONNX_FOLDER = "onnx"
CONFIG_NAME = "config.json"
OPSET = 17
MIN_SNR_DB = 40.0  # an fp32 graph further than this from torch is a failed export
QUANTIZE = (None, "int8")
# The graphs' layout for the same weights; part of the cache key, so a changed export (2: up-samplers shuffle by a
# transposed convolution instead of DepthToSpace) replaces older cached graphs.
EXPORT_FORMAT = 2
logger = logging.getLogger(__name__)
_INSTALL_HINT = "pip install 'fuse-hf[onnx]'"


# ------------------------------------------------------------------------------------------ sessions


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError(f"the onnx back end needs onnxruntime: {_INSTALL_HINT}.") from None
    return onnxruntime


SPINNING_KEY = "session.intra_op.allow_spinning"


def make_session(path: str | Path, threads: int | None = None):
    """An `onnxruntime.InferenceSession` on the CPU with `threads` intra-op threads (default: torch's,
    `torch.get_num_threads()`, so that `OMP_NUM_THREADS` / `torch.set_num_threads` govern both back ends), whose
    idle threads sleep instead of spinning."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1  # the graphs are one chain of operators: parallel branches gain nothing
    # Each of the pipeline's four sessions has its own thread pool, and by default a pool's threads spin for a while
    # after every run: on a small CPU they take the cores from the next graph and from torch's STFT in between.
    # Sleeping instead made a 4 s clip at 1 step 0.57 s instead of 0.68-0.77 s (2-core AVX2 EPYC, medians of 10),
    # and was not slower at 6 steps or on 60 s.
    options.add_session_config_entry(SPINNING_KEY, "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _ONNXModule:
    """What the pipeline reads of a torch network besides calling it: `config`, `dtype`, `device`, `to()`.

    Not a `torch.nn.Module`: diffusers' `pipe.to(...)`, device and offloading logic skip it, and its outputs are
    CPU float32 tensors like those of the torch networks in fp32.
    """

    backend = "onnx"
    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, config: dict[str, Any], sessions: dict[str, Any], export_config: dict[str, Any] | None = None):
        self.config = FrozenDict(config)
        self.sessions = sessions
        self.export_config = export_config or {}  # `onnx/config.json`: opset, quantisation, SNRs at export

    def to(self, *args, **kwargs):
        """A no-op: the sessions run on the CPU in fp32, and the memory format is onnxruntime's choice."""
        return self

    def eval(self):
        return self

    def _run(self, graph: str, **inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: value.detach().to("cpu", torch.float32).contiguous().numpy() for name, value in inputs.items()}
        return torch.from_numpy(self.sessions[graph].run(None, feeds)[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(graphs={sorted(self.sessions)})"


class ONNXSpectralAutoencoder(_ONNXModule):
    """The pipeline's view of a [`SpectralAutoencoderKL`] whose encoder and decoder are ONNX graphs.

    Like the torch VAE in the pipeline, it encodes and decodes window by window while slicing is on (the default):
    the memory of a batch then does not grow with `batch_size`.
    """

    spectral_settings = SpectralAutoencoderKL.spectral_settings
    downsample_factor = SpectralAutoencoderKL.downsample_factor

    def __init__(self, config: dict[str, Any], sessions: dict[str, Any], export_config: dict[str, Any] | None = None):
        super().__init__(config, sessions, export_config)
        self.use_slicing = False

    def enable_slicing(self) -> None:
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    def _sliced(self, graph: str, name: str, batch: torch.Tensor) -> torch.Tensor:
        if not self.use_slicing or batch.shape[0] == 1:
            return self._run(graph, **{name: batch})
        return torch.cat([self._run(graph, **{name: item[None]}) for item in batch])

    def encode_to_latents(self, spec: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Normalised spectrogram `(batch, C, freq, frames)` -> scaled posterior mean `(batch, latent_channels,
        freq / 4, frames / 4)`, as `SpectralAutoencoderKL.encode_to_latents`."""
        if sample:
            raise ValueError("the ONNX VAE encoder gives the posterior mean only; sample=True needs backend='torch'.")
        return self._sliced("vae_encoder", "spectrogram", spec)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> normalised spectrogram, as `SpectralAutoencoderKL.decode_latents`."""
        return self._sliced("vae_decoder", "latents", latents)


class ONNXUNet(_ONNXModule):
    """The pipeline's view of a `UNet2DConditionModel` whose forward pass is an ONNX graph (one denoising step)."""

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> UNet2DConditionOutput | tuple[torch.Tensor]:
        """`sample` `(batch, in_channels, freq, width)`, a timestep (a number or `(batch,)`) and BEATs tokens
        `(batch, tokens, dim)` -> the model output `(batch, out_channels, freq, width)` in `.sample`."""
        if encoder_attention_mask is not None and not bool((encoder_attention_mask > 0).all()):
            raise ValueError("the ONNX UNet attends to every token; a padding mask needs backend='torch'.")
        unknown = sorted(key for key, value in kwargs.items() if value is not None)
        if unknown:
            raise ValueError(f"the ONNX UNet does not take {unknown}; use backend='torch'.")
        timestep = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        out = self._run("unet", sample=sample, timestep=timestep, encoder_hidden_states=encoder_hidden_states)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


class ONNXConditioner(_ONNXModule):
    """The pipeline's view of a [`BEATsModel`] whose encoder (patch embedding and transformer) is an ONNX graph;
    the filterbank of a waveform input is computed in torch, as `BEATsModel.preprocess` does."""

    def __call__(
        self,
        input_values: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> BEATsModelOutput | tuple[torch.Tensor]:
        """Token features `(batch, tokens, encoder_embed_dim)` of a waveform `(batch, samples)` at 16 kHz or of its
        normalised filterbank `(batch, frames, 128)`; no padded samples (the pipeline pads windows by mirroring)."""
        if attention_mask is not None:
            padding_mask = attention_mask == 0
        if padding_mask is not None and bool(padding_mask.any()):
            raise ValueError("the ONNX conditioner takes unpadded audio; a padding mask needs backend='torch'.")
        if (input_values is None) == (input_features is None):
            raise ValueError("pass either input_values (the waveform) or input_features (its filterbank).")
        if input_features is None:
            waveform = input_values if input_values.dim() == 2 else input_values[None]
            input_features = normalize_fbank(fbank(waveform))
        features = self._run("conditioner", input_features=input_features)
        output = BEATsModelOutput(last_hidden_state=features, padding_mask=None)
        return output if return_dict else output.to_tuple()


# ------------------------------------------------------------------------------------------ export


class _ConditionerGraph(torch.nn.Module):
    def __init__(self, conditioner):
        super().__init__()
        self.conditioner = conditioner

    def forward(self, input_features):
        return self.conditioner.encode_fbank(input_features)[0]


class _EncoderGraph(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, spectrogram):
        return self.vae.encode_to_latents(spectrogram)


class _DecoderGraph(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode_latents(latents)


class _UNetGraph(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample


# Per graph: the module that wraps the network, its input names with their dynamic axes, and its output name.
_SIGNATURES: dict[str, tuple[Callable, dict[str, dict[int, str]], str]] = {
    "conditioner": (
        lambda pipe: _ConditionerGraph(pipe.conditioner),
        {"input_features": {0: "batch", 1: "frames"}},
        "last_hidden_state",
    ),
    "vae_encoder": (lambda pipe: _EncoderGraph(pipe.vae), {"spectrogram": {0: "batch", 3: "frames"}}, "latents"),
    "unet": (
        lambda pipe: _UNetGraph(pipe.unet),
        {
            "sample": {0: "batch", 3: "width"},
            "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "tokens"},
        },
        "sample_out",
    ),
    "vae_decoder": (lambda pipe: _DecoderGraph(pipe.vae), {"latents": {0: "batch", 3: "frames"}}, "spectrogram"),
}


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """`10 log10(sum(reference^2) / sum((reference - estimate)^2))` in dB; inf when they are equal, -inf (and
    NaN turned into -inf) when the estimate is not finite."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    if not np.isfinite(estimate).all():
        return -math.inf
    error = float(np.sum((reference - estimate) ** 2))
    return math.inf if error == 0 else 10 * math.log10(float(np.sum(reference**2)) / error)


def _example_windows(pipe, audio: np.ndarray | None, count: int = 2) -> torch.Tensor:
    """`(count, window)` windows of the pipeline's trained length from `audio` (16 kHz-like mono float32, repeated
    if short), default: the bundled demo mixture, else a deterministic harmonic tone in noise."""
    window = pipe._window_geometry()[0]
    if audio is None:
        demo = Path(__file__).resolve().parents[1] / "assets" / "noisy_speech.wav"
        if demo.is_file():
            from ..audio import load_mono

            audio = load_mono(demo, pipe.sampling_rate)
        else:
            t = np.arange(window * count) / pipe.sampling_rate
            rng = np.random.default_rng(0)
            audio = 0.1 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(
                t.size
            )
    audio = np.asarray(audio, np.float32).reshape(-1)
    audio = np.tile(audio, math.ceil(window * count / audio.size))
    stride = max(1, (audio.size - window) // max(1, count - 1))
    return torch.from_numpy(np.stack([audio[i * stride : i * stride + window] for i in range(count)]))


@torch.no_grad()
def _graph_inputs(
    pipe, waveform: torch.Tensor, generator: torch.Generator
) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Inputs of each graph as the pipeline feeds them on `waveform` `(batch, window)`: the filterbank, the padded
    normalised spectrogram, UNet inputs at each timestep of a 6-step schedule (noise mixed into the encoded latents
    as the DDIM sampler sees them), and the encoded latents for the decoder. One dict per UNet timestep."""
    vae, conditioner = pipe.vae, pipe.conditioner
    config = vae.config
    if pipe.feature_extractor is not None:
        features = pipe.feature_extractor(waveform, return_attention_mask=False, return_tensors="pt")["input_features"]
    else:
        features = conditioner.preprocess(waveform)
    spec, _ = to_spectrogram(waveform, config.representation, config.input_scale, **vae.spectral_settings)
    spec = pad_frames(spec, pipe.frame_multiple).float()
    latents = vae.encode_to_latents(spec)
    tokens = conditioner.encode_fbank(features)[0]
    scheduler = pipe.scheduler
    scheduler.set_timesteps(6)
    for t in scheduler.timesteps:
        noise = torch.randn(latents.shape, generator=generator)
        alpha = scheduler.alphas_cumprod[int(t)].float()
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        sample = scheduler.scale_model_input(torch.cat([noisy, latents], dim=1), t)
        aligned = pipe.align_tokens(tokens, latents.shape)
        if aligned is not None:
            sample = torch.cat([sample, aligned], dim=1)
        yield {
            "conditioner": {"input_features": features},
            "vae_encoder": {"spectrogram": spec},
            "unet": {
                "sample": sample,
                "timestep": torch.full((sample.shape[0],), float(t)),
                "encoder_hidden_states": tokens,
            },
            "vae_decoder": {"latents": latents},
        }


def _export_graph(pipe, name: str, inputs: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    import warnings

    make_module, dynamic_axes, output = _SIGNATURES[name]
    module = make_module(pipe).eval()
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its deprecation and about Python-level shape checks it traces
        # as constants (asserts on channel counts, diffusers' batch >= 64 branch): neither changes the graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=[output],
            dynamic_axes={**dynamic_axes, output: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def _check_graph(pipe, name: str, inputs: dict[str, torch.Tensor], session) -> float:
    """SNR in dB of the graph's output against torch's on the same inputs."""
    module = _SIGNATURES[name][0](pipe).eval()
    with torch.no_grad():
        reference = module(*inputs.values()).float().numpy()
    feeds = {key: value.float().contiguous().numpy() for key, value in inputs.items()}
    return snr_db(reference, session.run(None, feeds)[0])


# Graphs whose convolutions are quantised statically (calibrated) with quantize="int8", and the convolutions kept in
# fp32 there: the first and last of each network (the raw input and what is decoded), which cost little and carried
# most of the error (fuse-small's VAE decoder: 17 dB from fp32 with them quantised, 28 dB without).
STATIC_INT8_GRAPHS = ("vae_encoder", "unet", "vae_decoder")
_FP32_CONVS = ("conv_in", "conv_out", "quant_conv", "post_quant_conv")
CALIBRATION_PERCENTILE = 99.999  # activation ranges clip the rarest outliers: 18 -> 28 dB on the VAE decoder


@contextlib.contextmanager
def _quiet_root_logger():
    """Keeps the quantiser's root-logger hints ("run pre-processing first") at ERROR for the block."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_int8(fp32: Path, int8: Path, calibration: list[dict[str, np.ndarray]] | None = None) -> None:
    """int8 weights of the linear layers by dynamic quantisation (MatMul/Gemm with a weight operand: projections and
    feed-forward; attention products of two activations stay fp32), and, given `calibration` feeds, int8
    convolutions by static quantisation (QLinearConv: per-channel int8 weights, uint8 activations whose ranges come
    from the calibration feeds' `CALIBRATION_PERCENTILE` percentile), the first and last convolution kept fp32.
    ORT's dynamic ConvInteger is slower than its fp32 convolution, hence calibrated convolutions.

    On fuse-small with an earlier, wider VAE (the 84 stranger pairs of `bench_quality`, 6 steps, against the fp32
    graphs): PESQ-WB -0.036, ESTOI -0.006, SI-SDR -0.26 dB, DNSMOS OVRL -0.06 (1 step: -0.045, -0.005, -0.13 dB,
    0.00); the pipeline runs 1.1-1.5x faster on a plain AVX2 CPU. Not free: an option, not the default.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self, feeds):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    # The calibrator prints its histogram progress to stdout: not for the user's terminal.
    with _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as scratch:
        source = fp32
        if calibration:
            # Constant folding first: the folded up-samplers' kernels are computed from the weights in the graph,
            # and the quantiser only quantises convolutions whose weights and bias are initialisers.
            folded = Path(scratch) / "folded.onnx"
            quant_pre_process(str(fp32), str(folded), skip_symbolic_shape=True)
            keep = [n.name for n in onnx.load(str(folded)).graph.node if n.op_type == "Conv" and _is_edge_conv(n.name)]
            source = Path(scratch) / "static.onnx"
            quantize_static(
                folded,
                source,
                Feeds(calibration),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=keep,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
            )
        quantize_dynamic(
            source,
            int8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            extra_options={"MatMulConstBOnly": True},
        )


def _is_edge_conv(node_name: str) -> bool:
    """Whether an exported Conv node is a network's first or last convolution (``/decoder/conv_out/Conv``)."""
    return any(f"/{name}/" in node_name for name in _FP32_CONVS)


def _calibration_feeds(pipe, audio: np.ndarray | None) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs of each statically quantised graph as the pipeline feeds them: windows of `audio` (default: the bundled
    demo mixture) at four levels 10 dB apart (what is loud and what is quiet both fit the activation ranges) and,
    for the UNet, every timestep of a 6-step schedule."""
    windows = _example_windows(pipe, audio, count=4)
    generator = torch.Generator().manual_seed(1)
    feeds = {name: [] for name in STATIC_INT8_GRAPHS}
    for gain_db in (0.0, -10.0, -20.0, -30.0):
        steps = list(_graph_inputs(pipe, windows * 10 ** (gain_db / 20), generator))
        for name in STATIC_INT8_GRAPHS:
            cases = steps if name == "unet" else steps[:1]
            feeds[name] += [{k: v.float().contiguous().numpy() for k, v in case[name].items()} for case in cases]
    return feeds


def export_onnx(
    pipe,
    out_dir: str | Path,
    quantize: str | None = None,
    *,
    opset: int = OPSET,
    min_snr_db: float = MIN_SNR_DB,
    check_audio: np.ndarray | None = None,
    calibration_audio: np.ndarray | None = None,
    overwrite: bool = False,
) -> dict[str, float]:
    """Exports the pipeline's four networks as ONNX graphs inside a copy of the pipeline folder (see the module
    docstring for the layout) and checks each against torch.

    Args:
        pipe ([`FUSEPipeline`]): with its torch networks (fp32 weights).
        out_dir: the folder to write; created, or replaced with `overwrite`. Must not be the pipeline's own folder.
        quantize: None (fp32 graphs) or ``"int8"`` (`_quantize_int8`: int8 linear layers everywhere, calibrated
            int8 convolutions in the VAE and the UNet).
        opset: ONNX opset (>= 17: LayerNormalization is one operator from 17 on).
        min_snr_db: an fp32 graph whose output is further than this from torch's fails the export.
        check_audio: mono float32 audio at the model's rate for the check (default: the bundled demo mixture).
        calibration_audio: mono float32 speech (noisy or not) at the model's rate whose activation ranges set the
            int8 convolutions' scales (default: the bundled demo mixture).
        overwrite: replace an existing non-empty `out_dir`.

    Returns:
        `{graph name: SNR in dB}` of each graph's output against torch's, on windows of `check_audio` (and, for the
        UNet, at every timestep of a 6-step schedule); also written to `out_dir/onnx/config.json`.

    Raises:
        ValueError: a bad argument, or a non-empty `out_dir` without `overwrite`.
        RuntimeError: onnxruntime is missing, or a graph's SNR is below `min_snr_db` (fp32) or not finite.
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}.")
    if not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an integer >= 17, got {opset!r}.")
    if uses_onnx(pipe):
        raise ValueError("export_onnx needs the torch networks: load the pipeline with backend='torch'.")
    if pipe.unet.dtype != torch.float32 or pipe.vae.dtype != torch.float32:
        raise ValueError(f"export_onnx needs fp32 weights, got {pipe.unet.dtype}: load with torch_dtype=torch.float32.")
    _import_onnxruntime()
    out_dir = Path(out_dir)
    source = pipe.config.get("_name_or_path")
    if source and Path(source).exists() and Path(source).resolve() == out_dir.resolve():
        raise ValueError(f"{out_dir}: the pipeline's own folder; export into another one.")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{out_dir}: exists and is not empty (overwrite=True / --overwrite replaces it).")
        if (out_dir / "model_index.json").is_file() and not (out_dir / ONNX_FOLDER).is_dir():
            raise ValueError(f"{out_dir}: a pipeline folder without ONNX graphs; not replacing it.")
        shutil.rmtree(out_dir)
    device = pipe.device
    was_channels_last, was_slicing = pipe._channels_last, pipe.vae.use_slicing
    pipe.to("cpu")
    if was_channels_last:  # the reference is the default layout's fp32 result (see `set_precision`)
        pipe.unet.to(memory_format=torch.contiguous_format)
        pipe.vae.to(memory_format=torch.contiguous_format)
    # Slicing would trace the batch as a fixed number of pieces; the adapter slices at run time instead.
    pipe.vae.disable_slicing()
    try:
        snrs = _export_checked(pipe, out_dir, quantize, opset, min_snr_db, check_audio, calibration_audio)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # no half-written folder that would load, or need --overwrite
        raise
    finally:
        if was_slicing:
            pipe.vae.enable_slicing()
        if was_channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        pipe.to(device)
    return snrs


def _export_checked(
    pipe, out_dir: Path, quantize, opset: int, min_snr_db: float, check_audio, calibration_audio
) -> dict[str, float]:
    """`export_onnx` on a CPU pipeline in fp32 layout without VAE slicing; stops at the first graph that fails."""
    pipe.save_pretrained(out_dir)
    calibration = _calibration_feeds(pipe, calibration_audio) if quantize == "int8" else {}
    graphs_dir = out_dir / ONNX_FOLDER
    graphs_dir.mkdir()
    steps = list(_graph_inputs(pipe, _example_windows(pipe, check_audio), torch.Generator().manual_seed(0)))
    snrs, report = {}, {}
    for name in GRAPHS:
        path = graphs_dir / f"{name}.onnx"
        _export_graph(pipe, name, steps[0][name], path, opset)
        if quantize == "int8":
            fp32 = path.with_suffix(".fp32.onnx")
            path.rename(fp32)
            _quantize_int8(fp32, path, calibration.get(name))
            fp32.unlink()
        session = make_session(path)
        # The UNet at the first, a middle and the last timestep: its input statistics change most along the way.
        cases = [steps[0], steps[len(steps) // 2], steps[-1]] if name == "unet" else steps[:1]
        snrs[name] = min(_check_graph(pipe, name, case[name], session) for case in cases)
        if math.isnan(snrs[name]) or snrs[name] == -math.inf or (quantize is None and snrs[name] < min_snr_db):
            raise RuntimeError(
                f"{out_dir}: the ONNX {name} does not match torch ({snrs[name]:.1f} dB SNR; need >= {min_snr_db:g} "
                "dB): export aborted."
            )
        report[name] = {
            "file": path.name,
            "inputs": {key: list(value.shape) for key, value in steps[0][name].items()},
            "output": _SIGNATURES[name][2],
            "snr_db": round(snrs[name], 2),
        }
    config = {
        "format": EXPORT_FORMAT,
        "opset": opset,
        "quantize": quantize,
        "graphs": report,
        "torch": torch.__version__,
    }
    (graphs_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return snrs


# ------------------------------------------------------------------------------------------ loading


def has_onnx_graphs(folder: str | Path) -> bool:
    """Whether `folder` holds an `export_onnx` result (`onnx/config.json`)."""
    return (Path(folder) / ONNX_FOLDER / CONFIG_NAME).is_file()


def resolve_backend(folder: str | Path, backend: str | None) -> str:
    """`backend` checked and resolved: None is ``"onnx"`` when `folder` holds exported graphs, else ``"torch"``;
    ``"auto"`` is ``"onnx"`` also for a torch folder when onnxruntime is installed (graphs exported once into the
    cache, `cached_onnx_folder`), else ``"torch"``."""
    if backend is not None and backend not in BACKENDS + ("auto",):
        raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {backend!r}.")
    if backend == "auto":
        return "onnx" if has_onnx_graphs(folder) or importlib.util.find_spec("onnxruntime") else "torch"
    return backend or ("onnx" if has_onnx_graphs(folder) else "torch")


def onnx_cache_dir() -> Path:
    """Where `cached_onnx_folder` keeps exports: ``$FUSE_HF_ONNX_CACHE``, else ``~/.cache/fuse-hf/onnx``."""
    return Path(os.environ.get("FUSE_HF_ONNX_CACHE") or Path.home() / ".cache" / "fuse-hf" / "onnx")


def _folder_digest(folder: Path) -> str:
    """sha256 over the pipeline folder's configs and weights (names and bytes), the torch version that traces and the
    export's format."""
    digest = hashlib.sha256(f"{torch.__version__} {EXPORT_FORMAT}".encode())
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".safetensors") and ONNX_FOLDER not in path.parts:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_onnx_folder(pipeline_class, folder: str | Path) -> Path:
    """The `export_onnx` (fp32) folder of the torch pipeline folder `folder`: exported once (~10-30 s for
    fuse-small) into `onnx_cache_dir()` under a digest of its configs and weights, then reused. Written under a
    temporary name and renamed, so a crash never leaves a half-written export that would load."""
    folder = Path(folder)
    target = onnx_cache_dir() / f"{folder.resolve().name}-{_folder_digest(folder)}"
    if has_onnx_graphs(target):
        return target
    logger.warning(f"exporting {folder} to ONNX once (about 20 s), into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    pipe = pipeline_class.from_pretrained(folder, backend="torch")
    try:
        export_onnx(pipe, scratch, overwrite=True)
        try:
            os.replace(scratch, target)
        except OSError:  # another process finished the same export first: use theirs
            if not has_onnx_graphs(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def uses_onnx(pipe) -> bool:
    """Whether a pipeline runs its networks on onnxruntime."""
    return getattr(pipe.unet, "backend", "torch") == "onnx"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"missing {path.parent.name}/{path.name}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.parent.name}/{path.name}: not valid JSON ({err.msg}).") from None


def load_onnx_pipeline(pipeline_class, folder: str | Path, threads: int | None = None, **kwargs):
    """`pipeline_class` (a [`FUSEPipeline`]) with ONNX Runtime sessions for the graphs of an `export_onnx` folder,
    its scheduler and feature extractor loaded as usual. No torch weights are read.

    Args:
        threads: intra-op threads of each session (default: `torch.get_num_threads()`).
        kwargs: `from_pretrained` options; `torch_dtype` other than float32 is refused, the rest does not apply.

    Raises:
        ValueError: one line naming a missing graph or config (`RuntimeError` when onnxruntime is missing).
    """
    import importlib

    folder = Path(folder)
    dtype = kwargs.pop("torch_dtype", None)
    if dtype not in (None, torch.float32):
        raise ValueError(f"the onnx back end computes in float32; torch_dtype={dtype} needs backend='torch'.")
    if not has_onnx_graphs(folder):
        raise ValueError(
            f"{folder}: no ONNX graphs ({ONNX_FOLDER}/{CONFIG_NAME}); export them with `fuse-hf export-onnx "
            "MODEL_DIR OUT_DIR` or pipe.export_onnx(OUT_DIR)."
        )
    export_config = _read_json(folder / ONNX_FOLDER / CONFIG_NAME)
    missing = [f"{ONNX_FOLDER}/{name}.onnx" for name in GRAPHS if not (folder / ONNX_FOLDER / f"{name}.onnx").is_file()]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}; export the folder again with `fuse-hf export-onnx`.")
    index = _read_json(folder / "model_index.json")
    sessions = {name: make_session(folder / ONNX_FOLDER / f"{name}.onnx", threads) for name in GRAPHS}
    vae = ONNXSpectralAutoencoder(
        _read_json(folder / "vae" / "config.json"),
        {name: sessions[name] for name in ("vae_encoder", "vae_decoder")},
        export_config,
    )
    unet = ONNXUNet(_read_json(folder / "unet" / "config.json"), {"unet": sessions["unet"]}, export_config)
    conditioner = ONNXConditioner(
        _read_json(folder / "conditioner" / "config.json"), {"conditioner": sessions["conditioner"]}, export_config
    )
    components = {}
    # The token projection is a small torch module (a per-token MLP and a fixed resampling): it stays in torch.
    for name in ("scheduler", "feature_extractor", "token_projection"):
        library, class_name = index.get(name) or (None, None)
        if library is None:
            components[name] = None
            continue
        component_class = getattr(importlib.import_module(library), class_name)
        components[name] = component_class.from_pretrained(folder / name)
    if components["scheduler"] is None:
        raise ValueError("model_index.json names no scheduler.")
    pipe = pipeline_class(vae=vae, conditioner=conditioner, unet=unet, **components)
    pipe.register_to_config(_name_or_path=str(folder))  # as diffusers' from_pretrained records it
    return pipe
