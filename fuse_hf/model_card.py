"""Model cards rendered from `model_cards/fuse.md` with `huggingface_hub.ModelCard`, metrics as `model-index`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

METRIC_NAMES = {
    "pesq": ("PESQ-WB", "pesq"),
    "estoi": ("ESTOI", "estoi"),
    "si_sdr": ("SI-SDR (dB)", "si_sdr"),
    "dnsmos_sig": ("DNSMOS SIG", "dnsmos"),
    "dnsmos_bak": ("DNSMOS BAK", "dnsmos"),
    "dnsmos_ovrl": ("DNSMOS OVRL", "dnsmos"),
}
_TEMPLATE_PLACES = (
    Path(__file__).resolve().parent.parent / "model_cards" / "fuse.md",  # source checkout
    Path(__file__).resolve().parent / "assets" / "model_card.md",  # installed wheel
)


def template_path() -> Path:
    for path in _TEMPLATE_PLACES:
        if path.is_file():
            return path
    raise ValueError("model card template not found (model_cards/fuse.md).")


def _count_parameters(folder: Path, component: str) -> str:
    from safetensors import safe_open

    total = 0
    for file in (folder / component).glob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return f"{total / 1e6:.2f} M"


def render_model_card(
    folder,
    metrics: dict[str, float] | None = None,
    repo_id: str = "fuse-hf/fuse-small",
    model_name: str | None = None,
    datasets: Iterable[str] = (),
    dataset_name: str = "held-out noisy speech",
    dataset_type: str = "custom",
    description: str = "",
    training_command: str = "accelerate launch train.py diffusion --config configs/fuse-small/diffusion.yaml",
    training_description: str = "Trained with the `fuse-hf` package's `train.py` in three stages (BEATs, VAE, UNet).",
    limitations: str = "Trained on a small corpus; expect artefacts on voices, languages and noises far from it.",
    license: str = "apache-2.0",
    num_inference_steps: int = 6,
):
    """A `huggingface_hub.ModelCard` for a pipeline folder with `pipeline_tag: audio-to-audio` and the metrics
    as `model-index` results.

    Args:
        folder: the pipeline folder (its `model_index.json` and weights fill the components table).
        metrics: mean scores keyed as `fuse_hf.metrics` names them (`pesq`, `estoi`, `si_sdr`, `dnsmos_ovrl`, ...);
            other keys and NaN are left out.
        repo_id: the Hub repo the card describes; the usage snippets load it.
        datasets: Hub dataset ids the model was trained on (card metadata `datasets`).
        dataset_name, dataset_type: the evaluation set of the `model-index` results.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    metrics = {k: float(v) for k, v in (metrics or {}).items() if k in METRIC_NAMES and v == v}
    eval_results = [
        EvalResult(
            task_type="audio-to-audio",
            task_name="Speech enhancement",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            metric_type=METRIC_NAMES[k][1],
            metric_name=METRIC_NAMES[k][0],
            metric_value=round(v, 4),
        )
        for k, v in metrics.items()
    ]
    card_data = ModelCardData(
        license=license,
        library_name="fuse-hf",
        pipeline_tag="audio-to-audio",
        tags=["speech-enhancement", "diffusion", "audio", "beats", "diffusers"],
        datasets=list(datasets) or None,
        model_name=model_name or repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )
    results = (
        "\n".join(
            ["| metric | value |", "|---|---:|"] + [f"| {METRIC_NAMES[k][0]} | {v:.3f} |" for k, v in metrics.items()]
        )
        if metrics
        else "No measured results yet."
    )
    components = []
    index = json.loads((folder / "model_index.json").read_text()) if (folder / "model_index.json").is_file() else {}
    for name, spec in index.items():
        if isinstance(spec, list) and name != "scheduler":
            components.append(f"| {name} | `{spec[1]}` | {_count_parameters(folder, name)} |")
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=model_name or repo_id.split("/")[-1],
        repo_id=repo_id,
        description=description,
        results_table=results,
        training_command=training_command,
        training_description=training_description,
        components_table="\n".join(components) or "| - | - | - |",
        limitations=limitations,
        num_inference_steps=num_inference_steps,
    )


def write_model_card(folder, metrics: dict[str, float] | None = None, training_args: Any = None, **kwargs) -> Path:
    """Renders the card into `folder/README.md`."""
    if training_args is not None:
        kwargs.setdefault("repo_id", getattr(training_args, "hub_model_id", None) or "fuse-hf/fuse-small")
    card = render_model_card(folder, metrics, **kwargs)
    path = Path(folder) / "README.md"
    card.save(str(path))
    return path


def card_settings(card_or_path) -> dict[str, Any]:
    """What a rendered card records that a re-render must keep: `metrics`, `datasets`, `dataset_name`,
    `dataset_type` and `license`, read back from its metadata (the `model-index` results included).

    Used when a folder is pushed to another repo: the card is rendered again for the new repo id with the same
    measured results. Accepts a `ModelCard` or the path of a README.md; an unreadable card gives `{}`.
    """
    from huggingface_hub import ModelCard

    card = card_or_path
    if not isinstance(card, ModelCard):
        try:
            card = ModelCard.load(str(card_or_path), ignore_metadata_errors=True)
        except Exception:  # a hand-written README without front matter: nothing to keep
            return {}
    names = {label: key for key, (label, _) in METRIC_NAMES.items()}
    settings: dict[str, Any] = {}
    metrics = {}
    for result in card.data.eval_results or []:
        key = names.get(result.metric_name) or (result.metric_type if result.metric_type in METRIC_NAMES else None)
        if key is not None:
            metrics[key] = float(result.metric_value)
            settings["dataset_name"] = result.dataset_name
            settings["dataset_type"] = result.dataset_type
    if metrics:
        settings["metrics"] = metrics
    if card.data.datasets:
        settings["datasets"] = [card.data.datasets] if isinstance(card.data.datasets, str) else list(card.data.datasets)
    if card.data.license:
        settings["license"] = card.data.license
    return settings


def load_metrics(path) -> dict[str, float]:
    """Mean metrics from a JSON file: a `fuse-hf evaluate --out` report (its `"mean"`) or a flat `{name: value}`.

    Raises:
        ValueError: the file is missing, not JSON, or holds no known metric.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such metrics file.") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}).") from None
    values = data.get("mean", data) if isinstance(data, dict) else {}
    metrics = {k: float(v) for k, v in values.items() if k in METRIC_NAMES and isinstance(v, (int, float))}
    if not metrics:
        raise ValueError(f'{path}: holds none of the metrics {", ".join(METRIC_NAMES)} (flat or under "mean").')
    return metrics
