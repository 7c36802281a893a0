"""BEATs: filterbank, model, padding, converter and pre-training objective.

The reference implementation is Microsoft's; it is not vendored. These tests stand on their own: the filterbank
is checked against the independent numpy Kaldi recipe of `transformers.audio_utils`, the state-dict layout
against the official key names and shapes written out below, and converted checkpoints against the model that
wrote them.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from fuse_hf import convert_beats
from fuse_hf.models.beats import (
    BEATsModel,
    downsample_padding_mask,
    fbank,
    min_num_samples,
    patch_aligned_padding_mask,
)
from fuse_hf.models.beats_pretraining import (
    BEATsForPretraining,
    RandomProjectionTokenizer,
    fit_linear_probe,
    patchify,
    probe_features,
    row_targets_from_samples,
)

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

# Small but with every feature of iter3 (post-extract projection, deep norm, gated relative bias).
TINY = dict(
    input_patch_size=16,
    embed_dim=32,
    encoder_layers=2,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=4,
    conv_pos=16,
    conv_pos_groups=4,
    deep_norm=True,
    relative_position_embedding=True,
    num_buckets=32,
    max_distance=64,
    gru_rel_pos=True,
)


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
    return _randomize(BEATsModel(**{**TINY, **overrides}), seed)


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
    return _randomize(BEATsModel(**ITER3), seed=3)


def test_iter3_state_dict_has_the_official_keys_and_shapes(iter3_model):
    state = {key: tuple(value.shape) for key, value in iter3_model.state_dict().items()}
    assert state == _official_keys(ITER3)
    # Every layer's copy of the shared relative-position table holds layer 0's values.
    first = iter3_model.state_dict()["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    last = iter3_model.state_dict()["encoder.layers.11.self_attn.relative_attention_bias.weight"]
    assert torch.equal(first, last)


def test_config_defaults_are_the_official_ones():
    from fuse_hf.models.beats import OFFICIAL_DEFAULTS

    model = BEATsModel(**{**TINY, "input_patch_size": 16})
    init_defaults = {
        name: parameter.default
        for name, parameter in __import__("inspect").signature(BEATsModel.__init__).parameters.items()
        if name != "self"
    }
    assert init_defaults == OFFICIAL_DEFAULTS
    assert set(OFFICIAL_DEFAULTS) <= set(model.config)
    with pytest.raises(ValueError, match="input_patch_size=16"):
        BEATsModel()  # the official default -1 is a placeholder


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
    assert (tmp_path / "converted" / "config.json").exists()
    assert (tmp_path / "converted" / "diffusion_pytorch_model.safetensors").exists()

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


def test_convert_beats_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="fuse-hf")
    convert_beats.add_parser(parser.add_subparsers(dest="command"))
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
    encoder = BEATsModel(**{**TINY, "dropout": 0.0, "attention_dropout": 0.0})
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


def test_linear_probe_helpers():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 16, generator=generator)
    direction = torch.randn(16, generator=generator)
    classes = (features @ direction > 0).long()
    result = fit_linear_probe(features[:300], classes[:300], features[300:], classes[300:])
    assert result["accuracy"] > 0.85 and result["accuracy"] > result["chance"] + 0.2
    targets = features @ direction + 0.01 * torch.randn(400, generator=generator)
    result = fit_linear_probe(features[:300], targets[:300], features[300:], targets[300:], task="regression")
    assert result["r2"] > 0.99

    speech = torch.zeros(1, 16000)
    speech[:, 8000:] = 1.0
    rows = row_targets_from_samples(speech, num_rows=5)
    assert rows.shape == (1, 5) and rows[0, 0] == 0 and rows[0, -1] == 1

    model = _tiny()
    pooled = probe_features(model, _audio(16000)[None])
    assert pooled.shape == (1, 6, 64)
