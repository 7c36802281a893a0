"""`fuse-hf export-onnx MODEL_DIR OUT_DIR [--quantize int8]`: the pipeline's four networks as ONNX graphs.

OUT_DIR is a copy of the pipeline folder with `onnx/` beside its configs (`fuse_hf.pipelines.onnx_backend`); each
graph is checked against torch on the same input and its SNR printed. `fuse-hf enhance --model OUT_DIR` and
`FUSEPipeline.from_pretrained(OUT_DIR)` then run on onnxruntime.
"""

from __future__ import annotations

import argparse

from . import error


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `export-onnx MODEL_DIR OUT_DIR` on `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "export-onnx",
        help="export a pipeline's networks to ONNX Runtime graphs",
        description=(
            "Export the BEATs conditioner, the VAE encoder and decoder and one UNet step as ONNX graphs (opset "
            ">= 17, dynamic batch and time) into a copy of the pipeline folder. Each graph is run by torch and "
            "onnxruntime on the same input: the export fails below 40 dB SNR (fp32). OUT_DIR then loads with "
            "`fuse-hf enhance --model OUT_DIR` on onnxruntime. Needs `pip install 'fuse-hf[onnx]'`."
        ),
        epilog="Example: fuse-hf export-onnx pipelines/fuse-small fuse-small-onnx --quantize int8",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="pipeline folder or Hub repo id")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (must be new or empty)")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="int8 weights for the linear layers (dynamic quantisation; convolutions stay fp32)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous export in OUT_DIR")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Exports, prints each graph's SNR against torch, returns the exit code (1 on a bad folder or a failed check)."""
    from ..hub import load_pipeline

    try:
        pipe = load_pipeline(args.model_dir, "cpu", backend="torch")
        snrs = pipe.export_onnx(args.out_dir, quantize=args.quantize, opset=args.opset, overwrite=args.overwrite)
    except (ValueError, RuntimeError) as err:
        return error(str(err), "export-onnx")
    listed = ", ".join(f"{name} {snr:.1f} dB" for name, snr in snrs.items())
    print(f"exported {args.model_dir} ({args.quantize or 'fp32'}) -> {args.out_dir}; SNR to torch: {listed}")
    return 0
