"""BEATs: filterbank, feature extractor, model, padding, converter, Auto classes, remote code and pre-training.

The reference implementation is Microsoft's; it is not vendored. Exactness is checked against
`tests/fixtures/beats_golden.safetensors`, which Microsoft's code computed once from a seeded tiny model
(`tests/fixtures/README.md`); the filterbank also against the independent numpy Kaldi recipe of
`transformers.audio_utils`, the state-dict layout against the official key names and shapes written out below,
and converted checkpoints against the model that wrote them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fixtures.beats_golden import CONFIG as GOLDEN_CONFIG
from fixtures.beats_golden import FINETUNED_CONFIG as GOLDEN_FINETUNED_CONFIG
from fixtures.beats_golden import FIXTURE as GOLDEN_FIXTURE
from fixtures.beats_golden import SEED as GOLDEN_SEED
from fixtures.beats_golden import seeded_state_dict
from fuse_hf import convert_beats
from fuse_hf.commands import convert_beats as convert_beats_command
from fuse_hf.factory import TINY_BEATS
from fuse_hf.models.beats import (
    BEATsConfig,
    BEATsFeatureExtractor,
    BEATsModel,
    downsample_padding_mask,
    fbank,
    min_num_samples,
    patch_aligned_padding_mask,
)
from fuse_hf.models.beats_pretraining import BEATsForPretraining, RandomProjectionTokenizer, patchify

torch.set_num_threads(2)

# The official iter3 configuration (BEATs_iter3.pt).
ITER3 = dict(
    input_patch_size=16,
    embed_dim=512,
    conv_bias=False,
    encoder_layers=12,
    encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072,
    encoder_attention_heads=12,
    activation_fn="gelu",
    layer_wise_gradient_decay_ratio=0.6,
    layer_norm_first=False,
    deep_norm=True,
    dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    encoder_layerdrop=0.05,
    dropout_input=0.0,
    conv_pos=128,
    conv_pos_groups=16,
    relative_position_embedding=True,
    num_buckets=320,
    max_distance=800,
    gru_rel_pos=True,
    finetuned_model=False,
)

# Small but with every feature of iter3: the factory's tiny BEATs (deep norm, gated relative bias), wider than its
# patch embedding so that the post-extract projection exists too.
TINY = {**TINY_BEATS, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4}


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturbs every parameter, so that biases, norms and gates are all exercised (they start at 0 or 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("weight_g"):
                parameter.mul_(1 + 0.1 * noise.abs())
            elif "layer_norm" in name or name.endswith("grep_a"):
                parameter.add_(0.1 * noise)
            else:
                parameter.add_(0.02 * noise)
    return model.eval()


def _tiny(seed: int = 0, **overrides) -> BEATsModel:
    torch.manual_seed(seed)
    return _randomize(BEATsModel(BEATsConfig(**{**TINY, **overrides})), seed)


def _audio(num_samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / 16000
    tone = 0.3 * torch.sin(2 * math.pi * (300 + 900 * t) * t)
    return (tone + 0.05 * torch.randn(num_samples, generator=generator)).float()


def _padded_batch(lengths, pad_value: float = 0.0):
    total = max(lengths)
    waves = torch.zeros(len(lengths), total)
    mask = torch.zeros(len(lengths), total, dtype=torch.bool)
    for i, length in enumerate(lengths):
        waves[i, :length] = _audio(length, seed=i)
        waves[i, length:] = pad_value
        mask[i, length:] = True
    return waves, mask


def _save_official(path, cfg: dict, state_dict: dict) -> None:
    torch.save({"cfg": dict(cfg), "model": {k: v.clone() for k, v in state_dict.items()}}, path)


# ------------------------------------------------------------------------------------------------ filterbank


# transformers warns that some of Kaldi's lowest mel filters cover no 512-point FFT bin; Kaldi keeps them too.
@pytest.mark.filterwarnings("ignore:At least one mel filter has all zero values")
@pytest.mark.parametrize("num_samples", [400, 559, 4321, 16000])
def test_fbank_matches_transformers_kaldi_recipe(num_samples):
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    wave = _audio(num_samples, seed=num_samples)
    wave[: num_samples // 3] *= 0.02  # a quiet stretch (-34 dB): the log must stay accurate at low energies
    mel_filters = mel_filter_bank(
        num_frequency_bins=257,
        num_mel_filters=128,
        min_frequency=20,
        max_frequency=8000,
        sampling_rate=16000,
        norm=None,
        mel_scale="kaldi",
        triangularize_in_mel_space=True,
    )
    expected = spectrogram(
        wave.double().numpy() * 32768,
        window_function(400, "povey", periodic=False),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        power=2.0,
        center=False,
        preemphasis=0.97,
        mel_filters=mel_filters,
        log_mel="log",
        mel_floor=float(np.finfo(np.float32).eps),
        remove_dc_offset=True,
    ).T
    ours = fbank(wave)
    assert ours.shape == (1 + (num_samples - 400) // 160, 128)
    assert ours.dtype == torch.float32
    # float32 (ours, like Kaldi and torchaudio) against float64: about 1e-4 on log energies of -5..25, a few
    # 1e-3 at most in the deepest spectral valleys, where float32 FFT round-off dominates the tiny energies.
    error = np.abs(ours.double().numpy() - expected)
    assert np.quantile(error, 0.999) < 5e-4, np.quantile(error, 0.999)
    assert error.max() < 5e-3, error.max()


def test_fbank_batch_equals_rows_and_rejects_bad_input():
    waves = torch.stack([_audio(3000, seed=1), _audio(3000, seed=2)])
    torch.testing.assert_close(fbank(waves), torch.stack([fbank(waves[0]), fbank(waves[1])]), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="400 samples"):
        fbank(torch.zeros(399))
    with pytest.raises(ValueError, match="shape"):
        fbank(torch.zeros(1, 1, 4000))


# ------------------------------------------------------------------------------------------------ model structure


def _official_keys(cfg: dict) -> dict:
    """Key -> shape of an official BEATs state dict, written out from microsoft/unilm beats/ (BEATs.py, backbone.py)."""
    d, e, ffn = cfg["encoder_embed_dim"], cfg["embed_dim"], cfg["encoder_ffn_embed_dim"]
    heads = cfg["encoder_attention_heads"]
    p, k = cfg["input_patch_size"], cfg["conv_pos"]
    keys = {
        "post_extract_proj.weight": (d, e),
        "post_extract_proj.bias": (d,),
        "patch_embedding.weight": (e, 1, p, p),
        "encoder.pos_conv.0.bias": (d,),
        "encoder.pos_conv.0.weight_g": (1, 1, k),
        "encoder.pos_conv.0.weight_v": (d, d // cfg["conv_pos_groups"], k),
        "encoder.layer_norm.weight": (d,),
        "encoder.layer_norm.bias": (d,),
        "layer_norm.weight": (e,),
        "layer_norm.bias": (e,),
    }
    for i in range(cfg["encoder_layers"]):
        prefix = f"encoder.layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            keys[prefix + f"self_attn.{name}.weight"] = (d, d)
            keys[prefix + f"self_attn.{name}.bias"] = (d,)
        keys[prefix + "self_attn.grep_a"] = (1, heads, 1, 1)
        keys[prefix + "self_attn.grep_linear.weight"] = (8, d // heads)
        keys[prefix + "self_attn.grep_linear.bias"] = (8,)
        # Shared between layers in the reference, but listed under every layer in its checkpoints.
        keys[prefix + "self_attn.relative_attention_bias.weight"] = (cfg["num_buckets"], heads)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            keys[prefix + f"{norm}.weight"] = (d,)
            keys[prefix + f"{norm}.bias"] = (d,)
        keys[prefix + "fc1.weight"] = (ffn, d)
        keys[prefix + "fc1.bias"] = (ffn,)
        keys[prefix + "fc2.weight"] = (d, ffn)
        keys[prefix + "fc2.bias"] = (d,)
    if cfg.get("finetuned_model"):
        keys["predictor.weight"] = (cfg["predictor_class"], d)
        keys["predictor.bias"] = (cfg["predictor_class"],)
    return keys


@pytest.fixture(scope="module")
def iter3_model():
    torch.manual_seed(0)
    return _randomize(BEATsModel(BEATsConfig(**ITER3)), seed=3)


def test_iter3_state_dict_has_the_official_keys_and_shapes(iter3_model):
    state = {key: tuple(value.shape) for key, value in iter3_model.state_dict().items()}
    assert state == _official_keys(ITER3)
    # Every layer's copy of the shared relative-position table holds layer 0's values.
    first = iter3_model.state_dict()["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    last = iter3_model.state_dict()["encoder.layers.11.self_attn.relative_attention_bias.weight"]
    assert torch.equal(first, last)


def test_config_defaults_are_the_official_ones_and_round_trip(tmp_path):
    import inspect

    from fuse_hf.models.beats import OFFICIAL_DEFAULTS

    init_defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(BEATsConfig.__init__).parameters.items()
        if name not in ("self", "kwargs")
    }
    assert init_defaults == OFFICIAL_DEFAULTS
    config = BEATsConfig(**TINY)
    assert config.model_type == "beats" and config.hidden_size == 64 and config.num_hidden_layers == 2
    config.save_pretrained(tmp_path)
    assert BEATsConfig.from_pretrained(tmp_path).to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="input_patch_size=16"):
        BEATsModel(BEATsConfig())  # the official default -1 is a placeholder
    with pytest.raises(ValueError, match="conv_pos_groups"):
        BEATsModel(BEATsConfig(**{**TINY, "conv_pos_groups": 5}))


def test_weight_norm_matches_torch_parametrisation():
    model = _tiny()
    conv = model.encoder.pos_conv[0]
    reference = torch._weight_norm(conv.weight_v, conv.weight_g, 2)
    torch.testing.assert_close(conv.weight, reference, rtol=1e-6, atol=1e-7)


def test_shapes_token_order_and_input_checks():
    model = _tiny()
    wave = _audio(16000 + 123)
    with torch.no_grad():
        features, mask = model.encode_tokens(wave[None])
    frames = 1 + (wave.numel() - 400) // 160
    assert features.shape == (1, (frames // 16) * 8, 64) and mask is None
    with torch.no_grad():
        out = model(wave[None])
    torch.testing.assert_close(out.last_hidden_state, features)
    assert out.logits is None and out.probabilities is None

    with pytest.raises(ValueError, match="too short"):
        model.encode_tokens(torch.zeros(1, min_num_samples() - 1))
    with pytest.raises(ValueError, match="padding_mask"):
        model.encode_tokens(torch.zeros(1, 4000), torch.zeros(1, 3999, dtype=torch.bool))
    with pytest.raises(ValueError, match="padding_mode"):
        model.encode_tokens(torch.zeros(1, 4000), padding_mode="nope")
    with pytest.raises(ValueError, match="classification head"):
        model.classify(torch.zeros(1, 4000))


def test_forward_takes_waveforms_or_filterbanks_and_either_mask():
    model = _tiny()
    extractor = BEATsFeatureExtractor()
    waves, mask = _padded_batch([9000, 6000])
    inputs = extractor([waves[0], waves[1, :6000]], sampling_rate=16000, return_tensors="pt")
    assert torch.equal(inputs["attention_mask"].bool(), ~mask)
    with torch.no_grad():
        expected, expected_mask = model.encode_tokens(waves, mask)
        from_features = model(**inputs)
        from_waves = model(waves, attention_mask=(~mask).int(), output_hidden_states=True)
        as_tuple = model(waves, mask, return_dict=False)
    for out in (from_features, from_waves):
        assert torch.equal(out.last_hidden_state, expected) and torch.equal(out.padding_mask, expected_mask)
    assert len(from_waves.hidden_states) == 3 and torch.equal(from_waves.hidden_states[-1], expected)
    assert len(as_tuple) == 2 and torch.equal(as_tuple[0], expected)

    with pytest.raises(ValueError, match="either input_values"):
        model(waves, input_features=inputs["input_features"])
    with pytest.raises(ValueError, match="pass one of them"):
        model(waves, mask, attention_mask=~mask)
    with pytest.raises(ValueError, match="8000 samples give 48 frames, the features have 54"):
        model(input_features=inputs["input_features"], padding_mask=mask[:, :8000])
    with pytest.raises(ValueError, match=r"\(batch, frames, 128\)"):
        model(input_features=inputs["input_features"][..., :64])


def test_feature_extractor_pads_normalises_and_round_trips(tmp_path):
    extractor = BEATsFeatureExtractor()
    short, long = _audio(4000, seed=1).numpy(), _audio(7000, seed=2).numpy()
    inputs = extractor([short, long], sampling_rate=16000)
    assert isinstance(inputs["input_features"], np.ndarray) and inputs["input_features"].dtype == np.float32
    padded = torch.zeros(2, 7000)
    padded[0, :4000], padded[1] = torch.from_numpy(short), torch.from_numpy(long)
    expected = (fbank(padded) - 15.41663) / (2 * 6.55582)
    assert torch.equal(torch.from_numpy(inputs["input_features"]), expected)
    assert inputs["attention_mask"].tolist() == [[1] * 4000 + [0] * 3000, [1] * 7000]
    one = extractor(long, return_tensors="pt", return_attention_mask=False)
    assert set(one) == {"input_features"} and torch.equal(one["input_features"], expected[1:])
    assert extractor([short], padding="max_length", max_length=5000)["input_features"].shape == (1, 29, 128)

    extractor.save_pretrained(tmp_path)
    assert BEATsFeatureExtractor.from_pretrained(tmp_path).to_dict() == extractor.to_dict()
    for call, message in [
        (lambda: extractor(short, sampling_rate=8000), "8000 Hz"),
        (lambda: extractor((short * 32768).astype(np.int16)), "float audio"),
        (lambda: extractor(short[:399]), "399 samples"),
        (lambda: extractor([short, long], padding="do_not_pad"), "padding='longest'"),
        (lambda: extractor(np.zeros((1, 2, 4000), np.float32)), "shape"),
        (lambda: BEATsFeatureExtractor(sampling_rate=22050), "16000 Hz"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()


# ------------------------------------------------------------------------------------------------ padding


def test_official_padding_mask_grouping():
    # 10 samples onto 3 positions: the last sample is dropped, then groups of 3; padded = whole group padded.
    mask = torch.tensor([[False] * 5 + [True] * 5, [False] * 9 + [True]])
    expected = torch.tensor([[False, False, True], [False, False, False]])
    assert torch.equal(downsample_padding_mask(mask, 3), expected)


def test_official_token_mask_is_the_reference_grouping():
    # Sample mask -> frames (groups of N // frames samples) -> tokens (groups of frames // tokens frames), in
    # flat token order. Computed here by hand for 1 s padded to 2 s.
    model = _tiny()
    waves, mask = _padded_batch([32000, 16000])
    _, token_mask = model.encode_tokens(waves, mask)
    frames = 1 + (32000 - 400) // 160  # 198
    tokens = (frames // 16) * 8  # 96
    per_frame = 32000 // frames  # 161 samples per frame group
    frame_mask = mask[:, : frames * per_frame].reshape(2, frames, per_frame).all(-1)
    group = frames // tokens  # 2 frames per token
    expected = frame_mask[:, : tokens * group].reshape(2, tokens, group).all(-1)
    assert torch.equal(token_mask, expected)
    assert not token_mask[0].any()
    # The reference leaves the partly filled row of a padded item partly unmasked.
    assert token_mask[1].sum() < patch_aligned_padding_mask(mask)[1].sum()


def test_batch_with_padding_matches_items_alone():
    model = _tiny()
    lengths = [3 * 16000 + 77, 16000 + 555, 4000, 3 * 16000 + 77]
    waves, mask = _padded_batch(lengths, pad_value=0.2)  # whatever the padding holds must not matter
    with torch.no_grad():
        batch_features, token_mask = model.encode_tokens(waves, mask, padding_mode="patch")
        for i, length in enumerate(lengths):
            alone, _ = model.encode_tokens(waves[i : i + 1, :length])
            valid = ~token_mask[i]
            assert int(valid.sum()) == alone.shape[1]
            torch.testing.assert_close(batch_features[i, valid], alone[0], rtol=0, atol=2e-5)


def test_official_mode_without_padding_equals_no_mask():
    model = _tiny()
    waves, mask = _padded_batch([20000, 20000])
    with torch.no_grad():
        masked, _ = model.encode_tokens(waves, mask)
        plain, _ = model.encode_tokens(waves)
    torch.testing.assert_close(masked, plain, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ fine-tuned head


def test_class_probabilities_of_a_finetuned_model():
    model = _tiny(seed=4, finetuned_model=True, predictor_class=527)
    waves, mask = _padded_batch([24000, 9000])
    with torch.no_grad():
        probabilities, token_mask = model.extract_features(waves, mask)
        features, _ = model.encode_tokens(waves, mask)
        logits = model.predictor(features)
    assert probabilities.shape == (2, 527)
    assert features.shape[-1] == 64
    for i in range(2):
        valid = ~token_mask[i]
        expected = torch.sigmoid(logits[i, valid].mean(0))
        torch.testing.assert_close(probabilities[i], expected, rtol=0, atol=1e-6)
    scores, _ = model.classify(waves, mask)
    torch.testing.assert_close(scores, probabilities)


# ------------------------------------------------------------------------------------------------ converter


def test_convert_iter3_checkpoint(tmp_path, iter3_model):
    checkpoint = tmp_path / "BEATs_iter3.pt"
    official_cfg = {**ITER3, "unused_field": 1}  # real checkpoints may carry fields BEATsConfig ignores
    _save_official(checkpoint, official_cfg, iter3_model.state_dict())
    convert_beats.convert_beats_checkpoint(checkpoint, tmp_path / "converted")
    files = sorted(os.listdir(tmp_path / "converted"))
    assert files == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert set(load_file(str(tmp_path / "converted" / "model.safetensors"))) == set(_official_keys(ITER3))

    reloaded = BEATsModel.from_pretrained(tmp_path / "converted").eval()
    assert reloaded.config.max_distance == 800 and reloaded.config.deep_norm
    waves, mask = _padded_batch([5000, 3100])
    with torch.no_grad():
        expected, expected_mask = iter3_model.extract_features(waves, mask)
        features, token_mask = reloaded.extract_features(waves, mask)
    assert torch.equal(token_mask, expected_mask)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_convert_finetuned_checkpoint(tmp_path):
    cfg = {**TINY, "finetuned_model": True, "predictor_class": 527}
    model = _tiny(seed=5, finetuned_model=True, predictor_class=527)
    _save_official(tmp_path / "ft.pt", cfg, model.state_dict())
    convert_beats.convert_beats_checkpoint(tmp_path / "ft.pt", tmp_path / "ft")
    reloaded = BEATsModel.from_pretrained(tmp_path / "ft").eval()
    waves, mask = _padded_batch([20000, 7000])
    with torch.no_grad():
        expected, _ = model.extract_features(waves, mask)
        probabilities, _ = reloaded.extract_features(waves, mask)
    assert probabilities.shape == (2, 527)
    torch.testing.assert_close(probabilities, expected, rtol=0, atol=0)


def test_converter_names_the_first_mismatch(tmp_path):
    model = _tiny()
    state = model.state_dict()

    def convert(name, cfg=TINY, model_state=None):
        _save_official(tmp_path / name, cfg, state if model_state is None else model_state)
        return convert_beats.convert_beats_checkpoint(tmp_path / name, tmp_path / "out")

    missing = dict(state)
    del missing["encoder.layers.1.fc2.bias"]
    with pytest.raises(ValueError, match=r"missing key 'encoder\.layers\.1\.fc2\.bias'"):
        convert("missing.pt", model_state=missing)

    with pytest.raises(ValueError, match=r"unexpected key 'encoder\.extra\.weight'"):
        convert("unexpected.pt", model_state={**state, "encoder.extra.weight": torch.zeros(1)})

    shape_error = r"'encoder\.layers\.0\.fc1\.weight' has shape \(128, 64\), the configuration needs \(256, 64\)"
    with pytest.raises(ValueError, match=shape_error):
        convert("shape.pt", cfg={**TINY, "encoder_ffn_embed_dim": 256})

    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        convert_beats.convert_beats_checkpoint(tmp_path / "list.pt", tmp_path / "out")

    torch.save({"model": state}, tmp_path / "nocfg.pt")
    with pytest.raises(ValueError, match="no 'cfg' entry"):
        convert_beats.convert_beats_checkpoint(tmp_path / "nocfg.pt", tmp_path / "out")

    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_beats.convert_beats_checkpoint(tmp_path / "text.pt", tmp_path / "out")

    with pytest.raises(ValueError, match="no such file"):
        convert_beats.convert_beats_checkpoint(tmp_path / "absent.pt", tmp_path / "out")


def test_converter_keeps_fp16_and_upgrades_diffusers_folders(tmp_path):
    """A fuse-hf 0.1 conditioner folder (diffusers layout) converts with its fp16 tensors as they are; the config
    keeps float32, the precision the model computes in; loading the old folder directly says how to convert it."""
    model = _tiny()
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"_class_name": "BEATsModel", "_diffusers_version": "0.42.1", **TINY}))
    half = {key: value.half() for key, value in model.state_dict().items()}
    save_file(half, str(old / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match="convert-beats"):
        BEATsModel.from_pretrained(old)

    convert_beats.convert_beats_checkpoint(old, tmp_path / "new")
    stored = load_file(str(tmp_path / "new" / "model.safetensors"))
    assert set(stored) == set(half) and all(torch.equal(stored[key], half[key]) for key in half)
    assert json.loads((tmp_path / "new" / "config.json").read_text())["dtype"] == "float32"
    reloaded = BEATsModel.from_pretrained(tmp_path / "new")
    assert reloaded.dtype == torch.float32
    assert all(torch.equal(reloaded.state_dict()[key], half[key].float()) for key in half)


def test_from_pretrained_refuses_weights_that_do_not_fit(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    del weights["encoder.layers.1.fc2.bias"]
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys: encoder\.layers\.1\.fc2\.bias"):
        BEATsModel.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------ golden output


@pytest.fixture(scope="module")
def golden():
    """The fixture Microsoft's code computed (tests/fixtures/README.md): its tensors and metadata."""
    from safetensors import safe_open

    with safe_open(str(GOLDEN_FIXTURE), "pt") as handle:
        return handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}


def test_matches_microsofts_reference_through_the_converter(tmp_path, golden):
    """Seeded weights in the official layout -> official checkpoint -> `fuse-hf convert-beats` -> Auto classes:
    the filterbank, the features, the token mask and the class scores are Microsoft's."""
    from transformers import AutoFeatureExtractor, AutoModel

    metadata, expected = golden
    assert json.loads(metadata["config"]) == GOLDEN_CONFIG and int(metadata["seed"]) == GOLDEN_SEED
    for name, cfg in (("base", GOLDEN_CONFIG), ("finetuned", GOLDEN_FINETUNED_CONFIG)):
        weights = seeded_state_dict(_official_keys(cfg), GOLDEN_SEED)
        _save_official(tmp_path / f"{name}.pt", cfg, {key: torch.from_numpy(v) for key, v in weights.items()})
        convert_beats.convert_beats_checkpoint(tmp_path / f"{name}.pt", tmp_path / name)
    model = AutoModel.from_pretrained(tmp_path / "base")
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "base")
    finetuned = AutoModel.from_pretrained(tmp_path / "finetuned")
    assert type(model) is BEATsModel and type(extractor) is BEATsFeatureExtractor

    waveform, padding_mask = expected["waveform"], expected["padding_mask"]
    with torch.no_grad():
        input_features = extractor(waveform, sampling_rate=16000, return_tensors="pt")["input_features"]
        features, token_mask = model.extract_features(waveform, padding_mask)
        probabilities, _ = finetuned.extract_features(waveform, padding_mask)
    fbank_error = (input_features - expected["fbank"]).abs().max().item()
    feature_error = (features - expected["features"]).abs().max().item()
    probability_error = (probabilities - expected["probabilities"]).abs().max().item()
    assert fbank_error <= 1e-5, fbank_error
    assert feature_error <= 1e-5, feature_error  # float32 round-off of features about 4 in size
    assert probability_error <= 1e-6, probability_error
    assert torch.equal(token_mask, expected["token_padding_mask"])
    assert token_mask[1].any() and not token_mask[0].any()  # the padded item masks part of its tokens


# ------------------------------------------------------------------------------------------------ remote code


REMOTE_BEATS_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["fuse_hf"] = None  # as on a machine with only torch, numpy and transformers
    sys.path[:] = [p for p in sys.path if p and p.rstrip('/') != sys.argv[2]]  # the source checkout
    import numpy as np, torch
    from transformers import AutoFeatureExtractor, AutoModel

    folder, audio = sys.argv[1], sys.argv[3]
    try:
        AutoModel.from_pretrained(folder)
    except ValueError as err:
        assert "trust_remote_code" in str(err), err
    else:
        raise SystemExit("loaded remote code without trust_remote_code=True")
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    waveform = torch.from_numpy(np.load(audio))
    with torch.no_grad():
        features = model(**extractor(waveform, sampling_rate=16000, return_tensors="pt")).last_hidden_state
        official, _ = model.extract_features(waveform)
    np.save(audio, np.stack([features.numpy(), official.numpy()]))
    """
)


def test_saved_folder_loads_as_remote_code_without_fuse_hf(tmp_path):
    from fuse_hf.convert_beats import save_beats_folder
    from fuse_hf.remote_code import check_remote_code, export_beats_remote_code

    model = _tiny()
    folder = save_beats_folder(model, tmp_path / "beats")
    written = export_beats_remote_code(folder)
    assert sorted(path.name for path in written) == ["feature_extraction_beats.py", "modeling_beats.py"]
    imported = set(check_remote_code(folder)["modeling_beats.py"]) - set(sys.stdlib_module_names)
    assert imported == {"numpy", "torch", "transformers"}
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "modeling_beats.BEATsConfig", "AutoModel": "modeling_beats.BEATsModel"}
    assert json.loads((folder / "preprocessor_config.json").read_text())["auto_map"] == {
        "AutoFeatureExtractor": "feature_extraction_beats.BEATsFeatureExtractor"
    }

    waves = _padded_batch([9000, 9000])[0]
    np.save(tmp_path / "audio.npy", waves.numpy())
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_BEATS_SCRIPT)
    repo_root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),
        "PYTHONPATH": "",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }  # same threads: same float sums
    command = [sys.executable, "-I", str(script), str(folder), repo_root, str(tmp_path / "audio.npy")]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL
    )  # no prompt for trust_remote_code: the refusal is an error
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        expected, _ = model.extract_features(waves)
    remote_features, remote_official = np.load(tmp_path / "audio.npy")
    np.testing.assert_array_equal(remote_features, expected.numpy())
    np.testing.assert_array_equal(remote_official, expected.numpy())


# ------------------------------------------------------------------------------------------------ the pipeline


def test_bundled_conditioner_is_a_transformers_model_with_fp16_weights():
    from fuse_hf.hub import bundled_model_path

    folder = bundled_model_path()
    if folder is None:
        pytest.skip("no bundled fuse-small in this install")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["conditioner"] == ["fuse_hf.models.beats.modeling_beats", "BEATsModel"]
    assert index["feature_extractor"] == ["fuse_hf.models.beats.feature_extraction_beats", "BEATsFeatureExtractor"]
    stored = load_file(str(folder / "conditioner" / "model.safetensors"))
    assert {tensor.dtype for tensor in stored.values()} == {torch.float16}
    model = BEATsModel.from_pretrained(folder / "conditioner")
    assert model.dtype == torch.float32 and model.config.encoder_embed_dim == 256
    assert BEATsFeatureExtractor.from_pretrained(folder / "feature_extractor").fbank_std == 6.55582


def test_pipeline_condition_is_the_same_with_or_without_the_feature_extractor():
    from fuse_hf.pipelines.encoding import encode_condition

    model = _tiny()
    windows = torch.stack([_audio(12800, seed=1), _audio(12800, seed=2)])
    with torch.no_grad():
        alone, mask_alone = encode_condition(model, windows)
        extracted, mask_extracted = encode_condition(model, windows, feature_extractor=BEATsFeatureExtractor())
        expected, _ = model.encode_tokens(windows, padding_mode="patch")
    assert torch.equal(alone, expected) and torch.equal(extracted, expected)
    assert mask_alone is None and mask_extracted is None


def test_convert_beats_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="fuse-hf")
    convert_beats_command.add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["convert-beats", "--help"])
    help_text = capsys.readouterr().out
    assert "CHECKPOINT" in help_text and "OUTPUT_DIR" in help_text and "microsoft/unilm" in help_text

    model = _tiny()
    _save_official(tmp_path / "ok.pt", TINY, model.state_dict())
    args = parser.parse_args(["convert-beats", str(tmp_path / "ok.pt"), str(tmp_path / "out")])
    assert args.func(args) == 0
    assert "2 layers x 64 dims" in capsys.readouterr().out

    args = parser.parse_args(["convert-beats", str(tmp_path / "absent.pt"), str(tmp_path / "out")])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------ pre-training


def test_tokenizer_is_seeded_and_uses_the_encoder_token_order():
    a, b = RandomProjectionTokenizer(seed=7), RandomProjectionTokenizer(seed=7)
    assert torch.equal(a.projection, b.projection) and torch.equal(a.codebook, b.codebook)
    torch.testing.assert_close(a.codebook.norm(dim=-1), torch.ones(1024))
    # Token t * 8 + f holds frames [16 t, 16 t + 16) and mel bins [16 f, 16 f + 16).
    fbank_features = torch.arange(40 * 128, dtype=torch.float32).reshape(1, 40, 128)
    patches = patchify(fbank_features)
    assert patches.shape == (1, 16, 256)
    torch.testing.assert_close(patches[0, 1 * 8 + 3].reshape(16, 16), fbank_features[0, 16:32, 48:64])
    labels = a(torch.randn(2, 40, 128))
    assert labels.shape == (2, 16) and labels.dtype == torch.long and int(labels.max()) < 1024


def test_pretraining_step(tmp_path):
    torch.manual_seed(0)
    encoder = BEATsModel(BEATsConfig(**{**TINY, "dropout": 0.0, "attention_dropout": 0.0}))
    wrapper = BEATsForPretraining(encoder, predictor_layers=1)
    waves, mask = _padded_batch([32000, 20000])
    out = wrapper(waves, mask, generator=torch.Generator().manual_seed(0))
    tokens = out["labels"].shape[1]
    assert out["logits"].shape == (2, tokens, 1024)
    assert torch.isfinite(out["loss"]) and 0.0 <= out["accuracy"].item() <= 1.0
    # 75% of each row masked; padded rows of the shorter item never count.
    masked_per_row = round(0.75 * tokens)
    assert out["target_mask"][0].sum() == masked_per_row
    assert out["target_mask"][1].sum() < masked_per_row
    out["loss"].backward()
    assert encoder.patch_embedding.weight.grad is not None
    assert encoder.encoder.layers[-1].fc2.weight.grad.abs().sum() > 0
    assert wrapper.tokenizer.projection.grad is None

    # The same generator gives the same mask (reproducible validation).
    again = wrapper(waves, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again["target_mask"], out["target_mask"])

    encoder.save_pretrained(tmp_path / "conditioner")
    reloaded = BEATsModel.from_pretrained(tmp_path / "conditioner").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_tokens(waves)[0], encoder.eval().encode_tokens(waves)[0])
