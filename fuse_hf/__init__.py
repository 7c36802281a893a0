"""fuse-hf: FUSE speech enhancement (latent diffusion guided by BEATs) as a Hugging Face diffusers pipeline."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The public classes, imported on first use as diffusers and transformers import theirs: `import fuse_hf` (and so
# `fuse-hf --help`) then starts without loading torch and diffusers.
_LAZY_IMPORTS = {
    "FUSEPipeline": ".pipelines.pipeline_fuse",
    "FUSEPipelineOutput": ".pipelines.pipeline_output",
    "SpectralAutoencoderKL": ".models.autoencoder_spectral",
    "BEATsModel": ".models.beats",
}

__all__ = ["FUSEPipeline", "FUSEPipelineOutput", "SpectralAutoencoderKL", "BEATsModel", "__version__"]

if TYPE_CHECKING:
    from .models.autoencoder_spectral import SpectralAutoencoderKL
    from .models.beats import BEATsModel
    from .pipelines.pipeline_fuse import FUSEPipeline, FUSEPipelineOutput


def __getattr__(name: str):
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_IMPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_IMPORTS))
