from .autoencoder_spectral import SpectralAutoencoderKL


def __getattr__(name):
    if name == "BEATsModel":
        from .beats import BEATsModel

        return BEATsModel
    raise AttributeError(f"module 'fuse_hf.models' has no attribute {name!r}")


__all__ = ["SpectralAutoencoderKL", "BEATsModel"]
