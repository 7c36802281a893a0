"""Training throughput per stage: optimizer steps per second and audio seconds per second.

    python -m benchmarks.bench_training --corpus ~/.cache/fuse-corpus --configs configs/fuse-small --steps 8

Each stage is built exactly as `train.py` builds it (same configs, same data pipeline, batches from the
DataLoader) and timed over `--steps` optimizer steps after `--warmup` untimed ones. The diffusion stage needs
a VAE and a BEATs: by default the bundled model's. Prints a table and writes JSON.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from .common import BUNDLED_MODEL, DEFAULT_CORPUS, REPO, RESULTS_DIR, cpu_model, markdown_table, write_json


def time_stage(stage_name, argv, steps, warmup):
    from accelerate import Accelerator

    from fuse_hf.training import STAGES, parse_args
    from fuse_hf.training.loop import make_train_loader

    args = parse_args([stage_name, *argv])
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=args.mixed_precision)
    stage = STAGES[stage_name]()
    model = stage.build(args, accelerator, {})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    model, optimizer = accelerator.prepare(model, optimizer)
    loader = iter(make_train_loader(stage.dataset, args, accelerator, 0))
    durations = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        batch = next(loader)
        loss, _ = stage.loss(model, batch, accelerator)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            durations.append(time.perf_counter() - start)
    seconds = statistics.median(durations)
    audio = args.train_batch_size * args.segment_samples / 16000
    return {
        "stage": stage_name,
        "batch": args.train_batch_size,
        "crop_s": round(args.segment_samples / 16000, 3),
        "s_per_step": round(seconds, 3),
        "steps_per_s": round(1 / seconds, 3),
        "audio_s_per_s": round(audio / seconds, 2),
        "steps_per_hour": int(3600 / seconds),
        "trainable_params_M": round(sum(p.numel() for p in params) / 1e6, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--configs", default=str(REPO / "configs" / "fuse-small"))
    parser.add_argument("--stages", default="beats,vae,diffusion")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--model", default=str(BUNDLED_MODEL), help="pipeline whose VAE and BEATs the diffusion stage uses"
    )
    parser.add_argument("--out", default=str(RESULTS_DIR / "training.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    data = [
        "--speech_dir",
        str(corpus / "speech" / "train"),
        "--noise_dir",
        str(corpus / "noise" / "train"),
        "--valid_speech_dir",
        str(corpus / "speech" / "valid"),
        "--valid_noise_dir",
        str(corpus / "noise" / "valid"),
        "--num_validation_pairs",
        "1",
        "--dataloader_num_workers",
        "0",
        "--output_dir",
        "/tmp/fuse-bench-training",
    ]
    rows = []
    for stage in args.stages.split(","):
        extra = []
        if stage == "diffusion":
            extra = ["--vae_path", f"{args.model}/vae", "--conditioner_path", f"{args.model}/conditioner"]
        argv = ["--config", f"{args.configs}/{stage}.yaml", *data, *extra]
        rows.append(time_stage(stage, argv, args.steps, args.warmup))
        print(rows[-1], flush=True)
    header = ["stage", "batch", "crop_s", "trainable_params_M", "s_per_step", "steps_per_hour", "audio_s_per_s"]
    print("\n" + markdown_table(header, [[row[h] for h in header] for row in rows]))
    result = {"machine": f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}", "rows": rows}
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
