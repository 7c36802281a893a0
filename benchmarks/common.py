"""What the benchmark scripts share: where things are, thread pools, the machine they ran on, JSON and tables."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Timings are for 2 cores.
TIMING_THREADS = 2

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
BUNDLED_MODEL = REPO / "pipelines" / "fuse-small"
DEFAULT_CORPUS = Path(os.environ.get("FUSE_CORPUS", "~/.cache/fuse-corpus")).expanduser()
DEFAULT_CORPUS_V2 = Path(os.environ.get("FUSE_CORPUS_V2", "~/.cache/fuse-corpus-v2")).expanduser()

# CPU features that decide how fast the pipeline runs: bf16 autocast needs native bf16 (AVX512-BF16 or AMX).
_SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def fix_thread_pools(threads: int = TIMING_THREADS) -> None:
    """Sizes the OpenMP and MKL pools, unless the environment already does: numpy, torch and onnxruntime read these
    variables once, when they start their pools, so this runs before any of them is imported (the package's
    ``__init__`` calls it, and `python -m benchmarks.bench_x` imports the package first)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """The CPU's model name (e.g. "AMD EPYC 7B13"), else what `platform` knows."""
    return _cpuinfo_fields().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of the speed-relevant CPU features (AVX2, AVX-512, AVX512-BF16, AMX-BF16) this CPU has."""
    flags = set(_cpuinfo_fields().get("flags", "").split())
    return [flag for flag in _SPEED_FLAGS if flag in flags]


def machine_summary() -> str:
    """One line for a results file: architecture, CPU count and torch version (e.g. "x86_64, 2 CPUs, torch 2.13.0")."""
    import torch

    return f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def machine_info() -> dict[str, Any]:
    """The machine in detail: CPU model and features, cores, memory, Python, torch, load average, GPU."""
    import torch

    memory_gb = None
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    info = dict(
        cpu=cpu_model(),
        cpu_flags=cpu_flags(),
        cores=os.cpu_count(),
        memory_gb=memory_gb,
        python=platform.python_version(),
        torch=torch.__version__,
        platform=platform.platform(),
        load_average_start=os.getloadavg(),
    )
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Writes `data` as strict JSON (NaN and +-Inf as null: `fuse_hf.evaluate.json_safe`), creating the folder;
    returns the path."""
    from fuse_hf.evaluate import json_safe  # not at the top: the thread pools are sized before numpy loads

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=indent))
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right_align: bool = False) -> str:
    """A markdown table of already formatted cells; `right_align` right-aligns every column but the first."""
    rule = "|---|" + ("---:|" if right_align else "---|") * (len(headers) - 1)
    lines = ["| " + " | ".join(map(str, headers)) + " |", rule]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
