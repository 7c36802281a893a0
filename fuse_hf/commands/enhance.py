"""`fuse-hf enhance INPUTS... -o OUTPUT_DIR`: enhance files, folders and globs, mirroring the input tree.

Outputs keep each input's sample rate, channel count and (where the format allows) subtype. Under
`accelerate launch -m fuse_hf enhance ...` the files are shared out between processes and nodes.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import error
from .options import add_generation_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers `enhance` on `subparsers` (from `ArgumentParser.add_subparsers`)."""
    parser = subparsers.add_parser(
        "enhance",
        help="enhance noisy speech files and folders",
        description=(
            "Enhance noisy speech. Inputs are files, folders (searched recursively) or globs; outputs mirror the "
            "input tree under --output-dir, at each input's sample rate, channel count and subtype. Under "
            "`accelerate launch -m fuse_hf enhance ...` the files are shared out between processes and nodes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="audio files, folders or glob patterns (quote globs)")
    parser.add_argument("-o", "--output-dir", default="enhanced", help="where enhanced files are written")
    add_generation_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)"
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="VAE/UNet arithmetic: auto = bf16 autocast where the CPU or GPU has native bf16 "
        "(default: auto, or the FUSE_HF_PRECISION environment variable)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)
    return parser


# ------------------------------------------------------------------------------------------- inputs


def collect_inputs(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """Expands files, folders (recursive) and globs into `(file, path relative to its input root)` pairs.

    Folders contribute their audio files (`fuse_hf.audio.AUDIO_EXTENSIONS`); files and glob matches are taken as
    named, so that a file with an unusual suffix can still be enhanced.

    Raises:
        ValueError: an input that does not exist, a folder or glob with no audio files, or two inputs that would
            be written to the same output path.
    """
    from ..audio import list_audio_files

    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_audio_files(path)
            if not found:
                raise ValueError(f"{item}: folder holds no audio files (.wav, .flac, .ogg, .oga, .opus, ...).")
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


def _load_pipeline(model: str | None, device: str | None, backend: str | None = None):
    """`fuse_hf.hub.load_pipeline`, falling back to the labelled random pipeline with a one-line warning."""
    import warnings

    from ..hub import RandomWeightsWarning, load_pipeline

    with warnings.catch_warnings(record=True) as caught:
        pipe = load_pipeline(model, device, random_fallback=True, backend=backend)
    for warning in caught:
        if issubclass(warning.category, RandomWeightsWarning):
            print(f"fuse-hf: WARNING: {warning.message} Pass --model FOLDER_OR_REPO_ID.", file=sys.stderr)
        else:  # not ours to silence: show it as it would have been shown
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return pipe


# ------------------------------------------------------------------------------------------- enhance


def run(args: argparse.Namespace) -> int:
    """Runs `fuse-hf enhance`; returns the exit code (1 when an input could not be enhanced)."""
    import torch

    from ..audio import audio_info, save_audio

    try:
        files = collect_inputs(args.inputs)
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}.")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}.")
        state = _distributed_state(args.device)
        device = args.device or (str(state.device) if state is not None else None)
        pipe = _load_pipeline(args.model, device, args.backend)
        if args.precision is not None:
            pipe.set_precision(args.precision)
    except ValueError as err:
        return error(str(err))

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
            subtype = audio_info(source).subtype if source.exists() else None
            out = pipe(
                str(source),
                num_inference_steps=args.steps,
                guidance_scale=args.guidance_scale,
                attenuation_limit_db=args.atten_lim_db,
                max_gain_db=args.max_gain_db,
                batch_size=args.batch_size,
                generator=torch.Generator().manual_seed(args.seed),
                full_band=args.full_band,
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


def _write_like_input(save_audio, target: Path, audio, sampling_rate: int, subtype: str | None) -> None:
    """Writes with the input's subtype where the output format supports it (e.g. PCM_16 stays PCM_16)."""
    try:
        save_audio(target, audio, sampling_rate, subtype=subtype)
    except Exception:  # libsndfile refuses some subtype/format pairs (e.g. VORBIS in FLAC): use the default
        save_audio(target, audio, sampling_rate)


def _distributed_state(device: str | None = None):
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
