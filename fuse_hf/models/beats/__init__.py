"""BEATs as a transformers model: configuration, model and feature extractor, laid out as in transformers
(``configuration_beats.py``, ``modeling_beats.py``, ``feature_extraction_beats.py``).

Importing this package registers the three classes with transformers' Auto classes, so that
``AutoConfig`` / ``AutoModel`` / ``AutoFeatureExtractor.from_pretrained(folder)`` load a BEATs folder (and
``AutoModel`` a folder of the iteration-2 acoustic tokenizer, ``modeling_beats_tokenizer.py``). The module files
are what a Hub repo uploads as remote code (:func:`fuse_hf.remote_code.export_beats_remote_code`), so that
``AutoModel.from_pretrained(repo_id, trust_remote_code=True)`` works without fuse-hf.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .configuration_beats import OFFICIAL_DEFAULTS, BEATsConfig
from .feature_extraction_beats import (
    FBANK_MEAN,
    FBANK_STD,
    FRAME_LENGTH,
    FRAME_SHIFT,
    NUM_MEL_BINS,
    SAMPLE_RATE,
    BEATsFeatureExtractor,
    fbank,
    min_num_samples,
    normalize_fbank,
    num_frames,
)
from .modeling_beats import (
    BEATsModel,
    BEATsModelOutput,
    BEATsPreTrainedModel,
    downsample_padding_mask,
    patch_aligned_padding_mask,
)
from .modeling_beats_tokenizer import BEATsTokenizer, BEATsTokenizerConfig

__all__ = [
    "FBANK_MEAN",
    "FBANK_STD",
    "FRAME_LENGTH",
    "FRAME_SHIFT",
    "NUM_MEL_BINS",
    "OFFICIAL_DEFAULTS",
    "SAMPLE_RATE",
    "BEATsConfig",
    "BEATsFeatureExtractor",
    "BEATsModel",
    "BEATsModelOutput",
    "BEATsPreTrainedModel",
    "BEATsTokenizer",
    "BEATsTokenizerConfig",
    "downsample_padding_mask",
    "fbank",
    "min_num_samples",
    "normalize_fbank",
    "num_frames",
    "patch_aligned_padding_mask",
]

AutoConfig.register(BEATsConfig.model_type, BEATsConfig, exist_ok=True)
AutoModel.register(BEATsConfig, BEATsModel, exist_ok=True)
AutoFeatureExtractor.register(BEATsConfig, BEATsFeatureExtractor, exist_ok=True)
AutoConfig.register(BEATsTokenizerConfig.model_type, BEATsTokenizerConfig, exist_ok=True)
AutoModel.register(BEATsTokenizerConfig, BEATsTokenizer, exist_ok=True)
