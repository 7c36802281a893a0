from .autoencoder_spectral import SpectralAutoencoderKL
from .beats import BEATsConfig, BEATsFeatureExtractor, BEATsModel
from .token_projection import TokenGridProjection

__all__ = ["SpectralAutoencoderKL", "BEATsConfig", "BEATsFeatureExtractor", "BEATsModel", "TokenGridProjection"]
