"""BEATs iteration 2: the acoustic tokenizer distilled from a BEATs teacher, and pre-training on its labels.

The training stages that use them (`beats_tokenizer`, and `beats` with `--tokenizer_path`) are tested end to end in
`test_training.py`.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModel

from fuse_hf.factory import TINY_BEATS
from fuse_hf.models.beats import BEATsConfig, BEATsModel, BEATsTokenizer, BEATsTokenizerConfig
from fuse_hf.models.beats.modeling_beats_tokenizer import (
    code_perplexity,
    code_statistics,
    ema_codebook_update,
    restart_dead_codes,
)
from fuse_hf.models.beats_pretraining import BEATsForPretraining, patchify

NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0}
TEACHER = {**TINY_BEATS, **NO_DROPOUT, "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 96}


def _tokenizer(seed: int = 0, **overrides) -> BEATsTokenizer:
    torch.manual_seed(seed)
    config = {**TINY_BEATS, **NO_DROPOUT, "quant_n": 32, "quant_dim": 8, "teacher_dim": 48, **overrides}
    return BEATsTokenizer(BEATsTokenizerConfig(**config))


def _speech(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """Chirps with a syllable-rate envelope and a little noise: `(batch, samples)`, different per row."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16000)) / 16000
    rows = []
    for row in range(batch):
        f0 = 200 + 150 * row
        tone = torch.sin(2 * math.pi * (f0 + 600 * t) * t) * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t)) ** 2
        rows.append(0.3 * tone + 0.02 * torch.randn(t.shape, generator=generator))
    return torch.stack(rows).float()


def test_labels_have_the_encoder_token_order_and_range_and_bad_shapes_are_refused():
    tokenizer = _tokenizer().eval()
    fbank_features = tokenizer.preprocess(_speech(2, 0.5))  # 48 frames: 3 rows of 8 patches
    labels = tokenizer.tokenize(fbank_features)
    assert labels.shape == (2, 24) and labels.dtype == torch.long
    assert 0 <= int(labels.min()) and int(labels.max()) < 32
    # Token t * 8 + f embeds patchify's patch t * 8 + f: the convolution is a linear map of the flattened patch.
    weight = tokenizer.patch_embedding.weight.reshape(tokenizer.config.embed_dim, -1)
    expected = tokenizer.layer_norm(patchify(fbank_features) @ weight.T)
    torch.testing.assert_close(tokenizer.embed_patches(fbank_features), expected, atol=1e-5, rtol=1e-4)
    # The labels are the nearest codewords of the encoded patches, and do not depend on the mode (no dropout).
    nearest = (tokenizer.encode(fbank_features) @ tokenizer.quantizer.codebook.T).argmax(dim=-1)
    assert torch.equal(labels, nearest)
    noisy = _tokenizer(dropout=0.5).train()
    assert torch.equal(noisy.tokenize(fbank_features), noisy.tokenize(fbank_features)) and noisy.training

    for bad, message in (
        (torch.randn(2, 48, 64), "normalised filterbank"),
        (torch.randn(48, 128), "normalised filterbank"),
        (torch.randn(2, 10, 128), "10 frames"),
    ):
        with pytest.raises(ValueError, match=message):
            tokenizer.tokenize(bad)
    with pytest.raises(ValueError, match="token mask"):
        tokenizer.tokenize(fbank_features, torch.zeros(2, 23, dtype=torch.bool))
    with pytest.raises(ValueError, match="too short"):  # the waveform checks are BEATsModel's
        tokenizer(input_values=torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="target_features"):
        tokenizer(input_features=fbank_features, target_features=torch.zeros(2, 24, 32))


def test_ema_update_moves_an_assigned_codeword_toward_the_mean_of_its_vectors():
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    usage = torch.tensor([1.0, 1.0, 1.0])
    vectors = F.normalize(torch.tensor([[0.6, 0.8], [0.8, 0.6], [0.0, 1.0]]), dim=-1)
    codes = torch.tensor([0, 0, 1])
    counts, sums = code_statistics(vectors, codes, 3)
    assert counts.tolist() == [2.0, 1.0, 0.0]
    new_codebook, new_usage = ema_codebook_update(codebook, usage, counts, sums, decay=0.9)
    # Code 0: the mean of its vectors is (0.7, 0.7), direction (1, 1) / sqrt 2; 0.9 (1, 0) + 0.1 (0.7071, 0.7071).
    moved = torch.tensor([0.9 + 0.1 / math.sqrt(2), 0.1 / math.sqrt(2)])
    torch.testing.assert_close(new_codebook[0], moved / moved.norm())
    direction = F.normalize(torch.tensor([1.0, 1.0]), dim=0)
    assert float(new_codebook[0] @ direction) > float(codebook[0] @ direction)
    torch.testing.assert_close(new_codebook[1], codebook[1])  # already the mean of its one vector
    torch.testing.assert_close(new_codebook[2], codebook[2])  # unassigned: unchanged
    torch.testing.assert_close(new_usage, torch.tensor([1.1, 1.0, 0.9]))

    # A code used less than threshold x expected is moved onto a vector of the batch, with the expected usage.
    restarted, restarted_usage = restart_dead_codes(
        new_codebook, torch.tensor([1.0, 1.0, 0.01]), vectors, expected_usage=1.0, threshold=0.1
    )
    assert torch.equal(restarted[:2], new_codebook[:2])
    assert any(torch.equal(restarted[2], vector) for vector in vectors)
    assert restarted_usage.tolist() == [1.0, 1.0, 1.0]
    assert float(code_perplexity(torch.tensor([0, 0, 1, 1]), 4)) == pytest.approx(2.0)


def test_the_quantizer_updates_its_codebook_in_training_only_and_starts_from_the_data():
    tokenizer = _tokenizer()
    fbank_features = tokenizer.preprocess(_speech(2, 0.5))
    before = tokenizer.quantizer.codebook.clone()
    with torch.no_grad():
        tokenizer.eval()(input_features=fbank_features)
    assert torch.equal(tokenizer.quantizer.codebook, before)
    with torch.no_grad():
        tokenizer.train()(input_features=fbank_features)
        vectors = tokenizer.encode(fbank_features).reshape(-1, 8)
    # The new codebook had no usage: every code was restarted on one of the batch's vectors.
    cosines = tokenizer.quantizer.codebook @ vectors.T
    assert float(cosines.max(dim=1).values.min()) > 0.99
    torch.testing.assert_close(tokenizer.quantizer.codebook.norm(dim=-1), torch.ones(32))


def test_a_few_steps_raise_the_cosine_similarity_to_a_fixed_teacher():
    torch.manual_seed(0)
    teacher = BEATsModel(BEATsConfig(**TEACHER)).eval()
    fbank_features = teacher.preprocess(_speech(4, 1.0))
    with torch.no_grad():
        target = teacher.encode_fbank(fbank_features)[0]
    tokenizer = _tokenizer().train()
    optimizer = torch.optim.Adam([p for p in tokenizer.parameters() if p.requires_grad], lr=3e-3)
    cosines = []
    for _ in range(15):
        out = tokenizer(input_features=fbank_features, target_features=target)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        cosines.append(float(out["cosine"]))
    assert cosines[-1] > cosines[0] + 0.3, cosines[::5]
    assert all(p.grad is not None for p in tokenizer.encoder.parameters() if p.requires_grad)


def test_save_and_load_give_the_same_labels(tmp_path):
    tokenizer = _tokenizer(dropout=0.1)
    fbank_features = tokenizer.preprocess(_speech(2, 0.5))
    with torch.no_grad():
        tokenizer.train()(input_features=fbank_features)  # a codebook and usage of its own, not the initial ones
    tokenizer.eval().save_pretrained(tmp_path / "tokenizer")
    for loaded in (
        BEATsTokenizer.from_pretrained(tmp_path / "tokenizer"),
        AutoModel.from_pretrained(tmp_path / "tokenizer"),
    ):
        assert type(loaded) is BEATsTokenizer and not loaded.training
        assert loaded.config.quant_n == 32 and loaded.config.teacher_dim == 48
        assert torch.equal(loaded.quantizer.codebook, tokenizer.quantizer.codebook)
        assert torch.equal(loaded.quantizer.usage, tokenizer.quantizer.usage)
        assert torch.equal(loaded.tokenize(fbank_features), tokenizer.tokenize(fbank_features))


def test_pretraining_with_a_distilled_tokenizer(tmp_path):
    tokenizer = _tokenizer()
    torch.manual_seed(1)
    encoder = BEATsModel(BEATsConfig(**{**TINY_BEATS, **NO_DROPOUT}))
    wrapper = BEATsForPretraining(encoder, predictor_layers=1, tokenizer=tokenizer).train()
    assert wrapper.label_head.out_features == 32 and not wrapper.tokenizer.training
    assert not any(p.requires_grad for p in tokenizer.parameters())
    waves = _speech(2, 1.0)
    out = wrapper(waves, generator=torch.Generator().manual_seed(0))
    assert out["logits"].shape == (2, 48, 32) and torch.isfinite(out["loss"])
    assert torch.equal(out["labels"], tokenizer.tokenize(encoder.preprocess(waves)))
    codebook = tokenizer.quantizer.codebook.clone()
    out["loss"].backward()
    assert encoder.encoder.layers[-1].fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tokenizer.parameters())
    assert torch.equal(tokenizer.quantizer.codebook, codebook)  # labelling never moves the codebook

    encoder.save_pretrained(tmp_path / "conditioner")
    saved = load_file(str(tmp_path / "conditioner" / "model.safetensors"))
    assert saved.keys() == encoder.state_dict().keys()
    assert not any(key.startswith(("quantize", "estimator", "tokenizer")) for key in saved)

    with pytest.raises(ValueError, match="the tokenizer has 32 codes"):
        BEATsForPretraining(encoder, codebook_size=64, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="patches of 8"):
        BEATsForPretraining(encoder, tokenizer=_tokenizer(input_patch_size=8))
