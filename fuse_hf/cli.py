"""The `fuse-hf` command line: enhance files and folders, evaluate results, convert BEATs, share models.

Every subcommand lives in a module with `add_parser(subparsers)` and `run(args) -> exit code`; this file wires
them together and owns `enhance`. Errors from bad input are printed as one line and give exit code 1.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


def _error(message: str) -> int:
    print(f"fuse-hf: error: {message}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------------------- inputs


def collect_inputs(inputs: Sequence[str]) -> List[Tuple[Path, Path]]:
    """Expands files, folders (recursive) and globs into `(file, path relative to its input root)` pairs.

    Raises:
        ValueError: an input that does not exist, or a folder or glob with no audio files.
    """
    pairs: List[Tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise ValueError(f"{item}: folder holds no audio files ({', '.join(AUDIO_EXTENSIONS[:5])}, ...).")
            pairs += [(p, p.relative_to(path)) for p in found]
        elif path.is_file():
            pairs.append((path, Path(path.name)))
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise ValueError(f"{item}: pattern matches no files.")
            root = _glob_root(item)
            pairs += [(p, p.relative_to(root) if p.is_relative_to(root) else Path(p.name)) for p in found]
        else:
            raise ValueError(f"{item}: no such file or folder.")
    seen = {}
    for source, relative in pairs:
        if relative in seen and seen[relative] != source.resolve():
            raise ValueError(
                f"{seen[relative]} and {source} would both be written to {relative}: pass their folder instead "
                "so the tree is mirrored, or enhance them in separate runs."
            )
        seen[relative] = source.resolve()
    return pairs


def _glob_root(pattern: str) -> Path:
    """The folder before a pattern's first wildcard (`a/b/**/*.wav` -> `a/b`): outputs mirror the tree below it."""
    parts = Path(pattern).parts
    for index, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:index]) if index else Path(".")
    return Path(pattern).parent


def load_pipeline(model: Optional[str], device: Optional[str] = None):
    """The pipeline named by `model` (folder or repo id), else the bundled model, else a labelled tiny random one."""
    import torch

    from .hub import bundled_model_path
    from .pipelines.pipeline_fuse import FUSEPipeline

    if model is None:
        bundled = bundled_model_path()
        if bundled is None:
            from .factory import make_pipeline

            print(
                "fuse-hf: WARNING: no trained model is installed; using a tiny pipeline with RANDOM weights. "
                "Its output is NOT enhanced speech. Pass --model FOLDER_OR_REPO_ID.",
                file=sys.stderr,
            )
            pipe = make_pipeline(seed=0)
        else:
            pipe = FUSEPipeline.from_pretrained(bundled)
    else:
        pipe = FUSEPipeline.from_pretrained(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipe.to(device)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(f"--device {device}: not usable here ({str(err).splitlines()[0]}).") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------ enhance


def add_enhance_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "enhance",
        help="enhance noisy speech files and folders",
        description=(
            "Enhance noisy speech. Inputs are files, folders (searched recursively) or globs; outputs mirror the "
            "input tree under --output-dir, at each input's sample rate, channel count and subtype. Under "
            "`accelerate launch -m fuse_hf.cli enhance ...` the files are shared out between processes and nodes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="audio files, folders or glob patterns (quote globs)")
    parser.add_argument("-o", "--output-dir", default="enhanced", help="where enhanced files are written")
    parser.add_argument("--model", default=None,
                        help="pipeline folder or Hub repo id (default: the bundled fuse-small model)")
    parser.add_argument("--steps", type=int, default=6, help="DDIM steps (num_inference_steps)")
    parser.add_argument("--guidance-scale", type=float, default=1.0,
                        help="1: BEATs guidance as trained; 0: without BEATs; >1: classifier-free guidance")
    parser.add_argument("--noise-scale", type=float, default=None,
                        help="initial noise std (sampling temperature; default: the pipeline's, 0.25): 1 samples "
                             "the model's distribution, lower stays closer to the input's words, 0 ignores --seed")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--atten-lim-db", type=float, default=None,
                        help="remove at most this many dB of noise by mixing the input back (default: no limit)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None,
                        help="VAE/UNet arithmetic: auto = bf16 autocast where the CPU or GPU has native bf16 "
                             "(default: auto, or the FUSE_HF_PRECISION environment variable)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run_enhance)
    return parser


def run_enhance(args) -> int:
    import torch

    from .audio import audio_info, save_audio

    try:
        files = collect_inputs(args.inputs)
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}.")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
        state = _distributed_state(args.device)
        device = args.device or (str(state.device) if state is not None else None)
        pipe = load_pipeline(args.model, device)
        if args.precision is not None:
            pipe.set_precision(args.precision)
    except ValueError as err:
        return _error(str(err))

    output_dir = Path(args.output_dir)
    if state is not None:
        with state.split_between_processes(files) as shard:
            files = list(shard)
    jobs, skipped = [], 0
    for source, relative in files:
        target = output_dir / relative
        if target.exists() and not args.overwrite:
            skipped += 1
            print(f"fuse-hf: skipping {target}: exists (use --overwrite)", file=sys.stderr)
            continue
        jobs.append((source, target))

    from tqdm.auto import tqdm

    failures, seconds, started = 0, 0.0, time.perf_counter()
    is_main = state is None or state.is_main_process
    for source, target in tqdm(jobs, desc="enhancing", unit="file", disable=not is_main or not jobs):
        try:
            rate, _, subtype = audio_info(source) if source.exists() else (None, None, None)
            out = pipe(
                str(source), num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                attenuation_limit_db=args.atten_lim_db, batch_size=args.batch_size,
                generator=torch.Generator().manual_seed(args.seed),
                **({} if args.noise_scale is None else {"noise_scale": args.noise_scale}),
            )
            audio = out.audios
            _write_like_input(save_audio, target, audio, out.sampling_rate, subtype)
            seconds += audio.shape[-1] / out.sampling_rate
        except ValueError as err:
            failures += 1
            tqdm.write(f"fuse-hf: error: {err}", file=sys.stderr)
    wall = time.perf_counter() - started
    rtf = wall / seconds if seconds else float("nan")
    rank = "" if state is None else f"[process {state.process_index}] "
    print(
        f"{rank}enhanced {len(jobs) - failures} file(s), {seconds:.1f} s of audio in {wall:.1f} s "
        f"(real-time factor {rtf:.3f}); {skipped} skipped, {failures} failed -> {output_dir}"
    )
    return 1 if failures else 0


def _write_like_input(save_audio, target: Path, audio, sampling_rate: int, subtype: Optional[str]) -> None:
    """Writes with the input's subtype where the output format supports it (e.g. PCM_16 stays PCM_16)."""
    try:
        save_audio(target, audio, sampling_rate, subtype=subtype)
    except Exception:  # libsndfile refuses some subtype/format pairs (e.g. VORBIS in FLAC): use the default
        save_audio(target, audio, sampling_rate)


def _distributed_state(device: Optional[str] = None):
    """accelerate's PartialState when launched with several processes (else None, to start fast)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    # Without `cpu=True` on a machine without a GPU, PartialState finds no backend and reports one process, so
    # every rank would enhance and write every file. (`accelerate launch --cpu` starts a single process; several
    # CPU processes come from torchrun or `accelerate launch --multi_gpu`, which do not set ACCELERATE_USE_CPU.)
    cpu = (
        os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        or (device is not None and torch.device(device).type == "cpu")
        or not torch.cuda.is_available()
    )
    return PartialState(cpu=cpu)


# --------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="fuse-hf",
        description="FUSE speech enhancement: latent diffusion guided by BEATs features (diffusers pipeline).",
    )
    parser.add_argument("--version", action="version", version=f"fuse-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_enhance_parser(subparsers)
    import importlib

    for module_name in ("evaluate", "convert_beats", "hub_cli"):
        importlib.import_module(f"fuse_hf.{module_name}").add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        return _error(str(err))
    except KeyboardInterrupt:
        return _error("interrupted.")


if __name__ == "__main__":
    sys.exit(main())
