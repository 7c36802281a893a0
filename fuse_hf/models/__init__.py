from .autoencoder_spectral import SpectralAutoencoderKL
from .beats import BEATsModel

__all__ = ["SpectralAutoencoderKL", "BEATsModel"]
