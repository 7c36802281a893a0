"""Command-line and config-file options of `train.py` (flag names follow diffusers' training examples).

Options come from a YAML/JSON file (`--config`) and flags override them. Model architectures, loss weights and
the mixer's augmentation settings (`fuse_hf.data.AugmentConfig` fields) are nested sections of the config file
(`vae:`, `unet:`, `token_projection:`, `beats:`, `loss:`, `augmentation:`), which have no flags.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STAGES = ("vae", "diffusion", "beats", "beats_tokenizer")
NESTED_SECTIONS = ("vae", "unet", "token_projection", "beats", "loss", "augmentation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description=(
            "Train FUSE with Accelerate: `accelerate launch train.py STAGE --config FILE [flags]`. Stages: `beats` "
            "(self-supervised BEATs pre-training; iteration 2 with --tokenizer_path), `beats_tokenizer` (the "
            "iteration-2 acoustic tokenizer, distilled from the BEATs given as --pretrained_model), `vae` (spectral "
            "VAE), `diffusion` (latent diffusion UNet with a frozen VAE and a frozen BEATs). Flags override the "
            "config file."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("stage", choices=STAGES, help="what to train")
    parser.add_argument("--config", default=None, help="YAML or JSON file of options; flags override it")

    g = parser.add_argument_group("output and logging")
    g.add_argument("--output_dir", default="runs/fuse", help="checkpoints, logs, figures and the final model")
    g.add_argument("--logging_dir", default="logs", help="tracker folder, relative to --output_dir")
    g.add_argument(
        "--report_to",
        default="tensorboard",
        help="tensorboard, wandb, trackio, all or none (others need their package installed)",
    )
    g.add_argument("--push_to_hub", action="store_true", help="upload the final model to the Hub")
    g.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub, e.g. user/fuse-small")
    g.add_argument("--hub_token", default=None, help="Hub token (default: the cached login)")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, data order, noise and masking")
    g.add_argument("--max_train_steps", type=int, default=1000, help="optimizer steps to train for")
    g.add_argument(
        "--max_train_minutes",
        type=float,
        default=None,
        help="stop (checkpoint and save) after this much wall time, even before --max_train_steps",
    )
    g.add_argument("--train_batch_size", type=int, default=8, help="clips per process per micro-batch")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--learning_rate", type=float, default=1e-3, help="peak learning rate (AdamW)")
    g.add_argument(
        "--lr_scheduler",
        default="constant_with_warmup",
        help="diffusers scheduler name: constant, constant_with_warmup, cosine, linear",
    )
    g.add_argument("--lr_warmup_steps", type=int, default=100, help="warm-up steps of the learning rate")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.99)
    g.add_argument("--adam_weight_decay", type=float, default=1e-2)
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping norm")
    g.add_argument(
        "--mixed_precision",
        default="no",
        choices=["no", "fp16", "bf16"],
        help="autocast precision (bf16 also works on CPU)",
    )
    g.add_argument(
        "--use_ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep an exponential moving average of the weights; the final model uses it",
    )
    g.add_argument("--ema_decay", type=float, default=0.999, help="the EMA decay reached after its warm-up")
    g.add_argument(
        "--ema_power",
        type=float,
        default=2 / 3,
        help="EMA warm-up: decay = min(ema_decay, 1 - (1 + step) ** -ema_power); 0 disables the warm-up",
    )
    g.add_argument("--allow_tf32", action="store_true", help="TF32 matmuls on Ampere+ GPUs")

    g = parser.add_argument_group("checkpoints and validation")
    g.add_argument("--checkpointing_steps", type=int, default=500, help="save a resumable checkpoint every N steps")
    g.add_argument("--checkpoints_total_limit", type=int, default=3, help="keep only the last K checkpoints")
    g.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="a checkpoint folder, or `latest` (starts fresh when there is none yet)",
    )
    g.add_argument(
        "--validation_steps",
        type=int,
        default=500,
        help="validate every N steps and at the end; only with validation data: --valid_data_dir, "
        "--valid_speech_dir, or mixtures of --speech_dir",
    )
    g.add_argument("--num_validation_pairs", type=int, default=8, help="fixed noisy/clean pairs for validation")
    g.add_argument(
        "--validation_metrics", default="pesq,estoi,si_sdr", help="comma-separated: pesq, estoi, si_sdr, dnsmos"
    )

    g = parser.add_argument_group("data (exactly one of --train_data_dir, --speech_dir, --dataset_name)")
    g.add_argument("--train_data_dir", default=None, help="paired clean/ + noisy/ folders with matching names")
    g.add_argument("--train_split", default=None, help="sub-folder or dataset split for training (e.g. train)")
    g.add_argument(
        "--speech_dir", nargs="+", default=None, help="clean speech folder(s), mixed on the fly with --noise_dir"
    )
    g.add_argument("--noise_dir", nargs="+", default=None, help="noise folder(s) for on-the-fly mixing")
    g.add_argument("--dataset_name", default=None, help="Hugging Face dataset (Hub name or local path)")
    g.add_argument("--dataset_config_name", default=None)
    g.add_argument("--clean_column", default="clean")
    g.add_argument("--noisy_column", default="noisy", help="`none` for speech-only datasets mixed with --noise_dir")
    g.add_argument("--streaming", action="store_true", help="stream the Hugging Face dataset")
    g.add_argument("--valid_data_dir", default=None, help="paired folders for validation")
    g.add_argument("--valid_speech_dir", default=None, help="clean speech for validation pairs")
    g.add_argument("--valid_noise_dir", default=None, help="noise for validation pairs")
    g.add_argument("--segment_seconds", type=float, default=2.04, help="training crop length")
    g.add_argument("--snr_db_min", type=float, default=-5.0)
    g.add_argument("--snr_db_max", type=float, default=20.0)
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="synthetic noises, reverb, EQ and band-limiting of the input",
    )
    g.add_argument(
        "--wideband_weight",
        type=float,
        default=4.0,
        help="sampling weight of wideband speech (corpus manifest hf4k_db > -30 dB)",
    )
    g.add_argument("--dataloader_num_workers", type=int, default=0)

    g = parser.add_argument_group("models")
    g.add_argument(
        "--representation", default=None, choices=["complex", "magnitude"], help="VAE input representation (vae stage)"
    )
    g.add_argument("--vae_path", default=None, help="trained VAE folder (diffusion stage)")
    g.add_argument(
        "--conditioner_path",
        default=None,
        help="pre-trained BEATs folder (diffusion stage; `fuse-hf convert-beats` makes one)",
    )
    g.add_argument(
        "--pretrained_model",
        default=None,
        help="start from these weights: a model folder (vae, beats) or pipeline folder (diffusion); for "
        "beats_tokenizer, the frozen BEATs teacher whose features the tokenizer learns",
    )
    g.add_argument(
        "--tokenizer_path",
        default=None,
        help="beats stage: BEATs iteration 2, labels from this distilled tokenizer folder (the `tokenizer/` that "
        "`train.py beats_tokenizer` writes) instead of the iteration-1 random projection",
    )
    g.add_argument(
        "--train_decoder_only",
        action="store_true",
        help="vae stage: train the decoder alone, the encoder frozen (its latents stay the ones a trained UNet "
        "works in); with `vae: decoder_layers_per_block: N` a lighter decoder is cut from --pretrained_model",
    )
    g.add_argument(
        "--distill_encoder",
        action="store_true",
        help="vae stage: train a lighter encoder (`vae: encoder_block_out_channels`, `encoder_mid_block_layers`) cut "
        "from --pretrained_model to write that model's latents (MSE to its posterior), the decoder frozen",
    )
    g.add_argument(
        "--conditioning_dropout",
        type=float,
        default=0.15,
        help="probability of training the UNet without BEATs tokens (enables guidance_scale 0 / >1)",
    )
    g.add_argument(
        "--prediction_type",
        default=None,
        choices=["epsilon", "v_prediction", "sample"],
        help="what the UNet predicts (diffusion stage); default: the scheduler's, v_prediction",
    )
    g.add_argument("--num_inference_steps", type=int, default=6, help="DDIM steps for diffusion validation")
    return parser


def load_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text() if Path(path).is_file() else None
    if text is None:
        raise ValueError(f"--config {path}: no such file.")
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option names to values.")
    return data


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Flags > config file > defaults. Unknown config keys are an error (a typo must not be silently ignored)."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    nested: dict[str, Any] = {name: {} for name in NESTED_SECTIONS}
    if first.config:
        config = load_config_file(first.config)
        dests = {action.dest for action in parser._actions}
        unknown = [k for k in config if k not in dests and k not in NESTED_SECTIONS]
        if unknown:
            raise ValueError(f"--config {first.config}: unknown option(s) {unknown}; see `train.py --help`.")
        for name in NESTED_SECTIONS:
            nested[name] = dict(config.pop(name, None) or {})
        config.pop("stage", None)
        parser.set_defaults(**config)
    args = parser.parse_args(argv)
    for name, value in nested.items():
        setattr(args, name, value)
    if args.checkpointing_steps < 1 or args.validation_steps < 1 or args.max_train_steps < 1:
        raise ValueError("--max_train_steps, --checkpointing_steps and --validation_steps must be at least 1.")
    return args
