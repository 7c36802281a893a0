"""fuse-hf: FUSE speech enhancement (latent diffusion guided by BEATs) as a Hugging Face diffusers pipeline."""

__version__ = "0.1.0"

from .models.autoencoder_spectral import SpectralAutoencoderKL
from .pipelines.pipeline_fuse import FUSEPipeline, FUSEPipelineOutput


def __getattr__(name):
    # BEATs is imported on first use: it is the conditioner's class, and `import fuse_hf` should stay light.
    if name == "BEATsModel":
        from .models.beats import BEATsModel

        return BEATsModel
    raise AttributeError(f"module 'fuse_hf' has no attribute {name!r}")


__all__ = ["FUSEPipeline", "FUSEPipelineOutput", "SpectralAutoencoderKL", "BEATsModel", "__version__"]
