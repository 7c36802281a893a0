"""fuse-hf: FUSE speech enhancement (latent diffusion guided by BEATs) as a Hugging Face diffusers pipeline."""

__version__ = "0.1.0"

from .models.autoencoder_spectral import SpectralAutoencoderKL
from .models.beats import BEATsModel
from .pipelines.pipeline_fuse import FUSEPipeline, FUSEPipelineOutput


__all__ = ["FUSEPipeline", "FUSEPipelineOutput", "SpectralAutoencoderKL", "BEATsModel", "__version__"]
