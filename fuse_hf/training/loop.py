"""The one training loop every stage shares: Accelerate, EMA, clipping, atomic checkpoints, exact resume,
validation and logging. A stage (see `stages.py`) only says how to build its model, compute its loss,
validate and save.

Exact resume: the batch of step `s` is a pure function of `(seed, s)` (indices are drawn from the step, items
from `rng([seed, epoch, index])`), the DataLoader has its own generator, and `accelerator.save_state` keeps the
weights, optimizer, learning-rate schedule, EMA and RNG states. So N steps + resume + N steps equals 2N steps.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_trainer_state, resolve_checkpoint, save_checkpoint

logger = logging.getLogger("fuse_hf.training")


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields the index lists of micro-batches `start, start+1, ...` for one process.

    Micro-batch `m` of process `r` holds global indices `(m * world + r) * B + j`; a permutation per epoch
    (seeded by `(seed, epoch)`) maps them onto the dataset. The dataset sees `global_index` so it can derive
    the epoch itself.
    """

    def __init__(
        self,
        dataset_length: int,
        batch_size: int,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ):
        self.length, self.batch_size, self.seed = dataset_length, batch_size, seed
        self.start, self.rank, self.world_size, self.shuffle = start, rank, world_size, shuffle
        self._perm_epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            rng = np.random.default_rng([self.seed, 7919, epoch])
            self._perm = rng.permutation(self.length) if self.shuffle else np.arange(self.length)
            self._perm_epoch = epoch
        return self._perm

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        while True:
            first = (micro * self.world_size + self.rank) * self.batch_size
            batch = []
            for g in range(first, first + self.batch_size):
                epoch, position = divmod(g, self.length)
                batch.append(int(epoch * self.length + self._permutation(epoch)[position]))
            yield batch
            micro += 1

    def __len__(self) -> int:  # infinite in practice; DataLoader only needs it for its progress estimate
        return 2**31


class EpochIndexedDataset(torch.utils.data.Dataset):
    """Maps a global index `epoch * len + i` to item `i` of epoch `epoch` of a dataset with `set_epoch`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, global_index: int):
        epoch, index = divmod(int(global_index), len(self.dataset))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def make_train_loader(dataset, args, accelerator, start_micro_step: int):
    from ..data import collate

    if isinstance(dataset, torch.utils.data.IterableDataset):
        # Streaming data is sharded by node in the dataset itself; its position is not resumable exactly.
        return torch.utils.data.DataLoader(
            dataset, batch_size=args.train_batch_size, num_workers=args.dataloader_num_workers, collate_fn=collate
        )
    sampler = StepBatchSampler(
        len(dataset),
        args.train_batch_size,
        args.seed,
        start=start_micro_step,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    return torch.utils.data.DataLoader(
        EpochIndexedDataset(dataset),
        batch_sampler=sampler,
        num_workers=args.dataloader_num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(args.seed),
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def _init_trackers(accelerator, args, stage_name: str) -> None:
    report_to = (args.report_to or "none").lower()
    if report_to == "none" or not accelerator.is_main_process:
        return
    config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) or v is None}
    accelerator.init_trackers(f"fuse-{stage_name}", config={k: str(v) if v is None else v for k, v in config.items()})


@dataclass
class TrainingResult:
    """What `train` returns: the last validation record, the step reached, and the trained (unwrapped) model
    with its raw, non-EMA weights."""

    record: dict[str, Any]
    global_step: int
    model: torch.nn.Module
    final_dir: Path | None = None


def train(args, stage) -> TrainingResult:
    """Runs `stage` (an object from `stages.py`) to `args.max_train_steps` (or `--max_train_minutes`)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    output_dir = Path(args.output_dir)
    report_to = None if (args.report_to or "none").lower() == "none" else args.report_to
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
    )
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    checkpoint = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    resumed_state = load_trainer_state(checkpoint) if checkpoint is not None else {}
    if resumed_state and resumed_state.get("stage") != stage.name:
        raise ValueError(
            f"{checkpoint} is a checkpoint of the {resumed_state.get('stage')!r} stage, not {stage.name!r}: "
            "give each stage its own --output_dir."
        )
    set_seed(args.seed, device_specific=True)

    # 1. Model, data and optimizer
    model = stage.build(args, accelerator, resumed_state)
    dataset = stage.train_dataset(args)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), weight_decay=args.adam_weight_decay
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema = None
    if args.use_ema:
        # With a fixed decay, short runs keep a visible share of the random initial weights (0.999 ** 3000 = 5 %);
        # the warm-up lets the average start close to the current weights.
        ema = EMAModel(params, decay=args.ema_decay, use_ema_warmup=args.ema_power > 0, power=args.ema_power or 2 / 3)
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    # 2. Resume
    global_step = 0
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        if ema is not None:
            ema.to(accelerator.device)  # EMAModel.load_state_dict leaves its shadow weights on the CPU
        global_step = int(resumed_state["global_step"])
        accelerator.print(f"Resumed from {checkpoint} at step {global_step}.")
    elif args.resume_from_checkpoint:
        accelerator.print(f"No checkpoint in {output_dir} yet: starting from scratch.")

    loader = make_train_loader(dataset, args, accelerator, global_step * args.gradient_accumulation_steps)
    _init_trackers(accelerator, args, stage.name)
    history_file = output_dir / "validation_history.jsonl"
    progress = tqdm(
        total=args.max_train_steps,
        initial=global_step,
        desc=f"train {stage.name}",
        disable=not accelerator.is_local_main_process,
    )
    started = time.monotonic()
    last_record: dict[str, Any] = {}
    state_for_checkpoint = lambda: {"stage": stage.name, **stage.state()}  # noqa: E731
    validates = stage.validates(args)
    if not validates:
        accelerator.print("No validation data (--valid_data_dir, --valid_speech_dir or --speech_dir): not validating.")

    # 3. Train
    model.train()
    data = iter(loader)
    train_loss = 0.0  # of the current optimizer step: averaged over processes and micro-batches
    while global_step < args.max_train_steps:
        batch = next(data)
        with accelerator.accumulate(model):
            loss, logs = stage.loss(model, batch, accelerator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {global_step}; lower --learning_rate.")
            # As diffusers' train_text_to_image: every process's loss, weighted by its batch size.
            avg_loss = accelerator.gather(loss.detach().repeat(args.train_batch_size)).mean()
            train_loss += avg_loss.item() / args.gradient_accumulation_steps
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        global_step += 1
        if ema is not None:
            ema.step(params)
        logs = {"loss": train_loss, "lr": lr_scheduler.get_last_lr()[0], **logs}
        train_loss = 0.0
        progress.update(1)
        progress.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "lr", "accuracy")})
        accelerator.log({f"train/{k}": v for k, v in logs.items()}, step=global_step)

        out_of_time = args.max_train_minutes is not None and (time.monotonic() - started) / 60 > args.max_train_minutes
        done = global_step >= args.max_train_steps or out_of_time
        if global_step % args.checkpointing_steps == 0 or done:
            save_checkpoint(accelerator, output_dir, global_step, state_for_checkpoint(), args.checkpoints_total_limit)
        if validates and (global_step % args.validation_steps == 0 or done):
            last_record = _validate(accelerator, stage, model, ema, params, global_step, history_file)
        if out_of_time:
            accelerator.print(f"--max_train_minutes {args.max_train_minutes} reached at step {global_step}.")
            break
    progress.close()
    if not last_record:  # resumed a finished run: the card and the return value use its last validation
        history = read_history(output_dir)
        last_record = history[-1] if history else {}

    # 4. Save the final model (EMA weights)
    accelerator.wait_for_everyone()
    final_dir = None
    if accelerator.is_main_process:
        with _ema_weights(ema, params):
            final_dir = stage.save_final(accelerator.unwrap_model(model), args, last_record)
        accelerator.print(f"Saved the final model to {final_dir}.")
        if args.push_to_hub:
            stage.push_to_hub(final_dir, args)
    accelerator.end_training()
    return TrainingResult(last_record, global_step, accelerator.unwrap_model(model), final_dir)


class _ema_weights:
    """Context manager: swap the EMA weights in (and back out) for validation and saving."""

    def __init__(self, ema, params):
        self.ema, self.params = ema, params

    def __enter__(self):
        if self.ema is not None:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)

    def __exit__(self, *exc):
        if self.ema is not None:
            self.ema.restore(self.params)


def _validate(accelerator, stage, model, ema, params, step: int, history_file: Path) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        # Validation must not consume the training RNG, or a validated run would differ from a resumed one.
        cpu_state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            with _ema_weights(ema, params), torch.no_grad():
                record = {"step": step, **stage.validate(unwrapped, step, accelerator)}
        finally:
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
            unwrapped.train()
        figure = record.pop("figure", None)
        scalars = {f"valid/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        accelerator.log(scalars, step=step)
        if figure is not None:
            _log_figure(accelerator, figure, step)
        with open(history_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        summary = ", ".join(f"{k} {v:.3f}" for k, v in record.items() if isinstance(v, float) and math.isfinite(v))
        accelerator.print(f"step {step}: {summary}")
    accelerator.wait_for_everyone()
    return record


def _log_figure(accelerator, path, step: int) -> None:
    """Sends a validation PNG to the trackers that take images (TensorBoard, wandb)."""
    for tracker in accelerator.trackers:
        try:
            if tracker.name == "tensorboard":
                import matplotlib.image

                image = matplotlib.image.imread(str(path))[..., :3]
                tracker.writer.add_image("valid/spectrograms", image, step, dataformats="HWC")
            elif tracker.name == "wandb":
                import wandb

                tracker.log({"valid/spectrograms": wandb.Image(str(path))}, step=step)
        except Exception as err:  # a tracker failing to take an image must not stop training
            logger.warning(f"could not log {path} to {tracker.name}: {err}")


def read_history(output_dir) -> list[dict[str, Any]]:
    """The validation records of a run (one per validation, in order; a resumed run may repeat a step)."""
    path = Path(output_dir) / "validation_history.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    latest = {r["step"]: r for r in records}
    return [latest[s] for s in sorted(latest)]


__all__ = ["train", "TrainingResult", "read_history", "StepBatchSampler", "make_train_loader"]
