from .autoencoder_spectral import SpectralAutoencoderKL
from .beats import BEATsConfig, BEATsFeatureExtractor, BEATsModel

__all__ = ["SpectralAutoencoderKL", "BEATsConfig", "BEATsFeatureExtractor", "BEATsModel"]
