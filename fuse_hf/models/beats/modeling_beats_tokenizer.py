"""The acoustic tokenizer of BEATs iteration 2 and later (Chen et al., "BEATs: Audio Pre-Training with Acoustic
Tokenizers", ICML 2023, Sec. 3): distilled from the previous iteration's BEATs, the teacher.

Iteration 1 labels the patches with a frozen random projection; from iteration 2 on the labels come from a
tokenizer trained to keep what the teacher knows. A Transformer encoder reads all the patches, every patch
becomes the nearest of `quant_n` codewords, and a small Transformer *estimator* must predict the teacher's
last-layer features from the codes alone. Only what passes that bottleneck survives, so the codes are labels
that carry the teacher's semantics into the next round of masked prediction
(:class:`~fuse_hf.models.beats_pretraining.BEATsForPretraining` with ``tokenizer=``).

Pipeline, for `(batch, frames, 128)` normalised filterbanks (the teacher's input, :meth:`BEATsTokenizer.preprocess`):

1. 16x16 patches embedded by a strided convolution, in the encoder's token order (time-major: token ``t * 8 + f``);
2. a Transformer encoder over all the patches (the encoder class of [`BEATsModel`]);
3. a linear map to `quant_dim`, L2-normalised, and the nearest of `quant_n` unit codewords by cosine. The codebook
   is no parameter: each codeword follows an exponential moving average of the vectors assigned to it, a code
   that falls out of use is restarted on a vector of the current batch (so the codebook cannot collapse onto a
   few codes), and gradients pass straight through the quantiser;
4. the estimator: a small Transformer from the codes to the teacher's feature width.

Training loss: ``mean(1 - cos(estimate, teacher)) + commitment_weight * mean ||sg(codeword) - v||^2``. The crops of
training have a fixed length, so :meth:`BEATsTokenizer.forward` takes no padding mask; :meth:`BEATsTokenizer.tokenize`
takes a token padding mask, so that the padding of a batch does not change the labels of its real patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_beats import BEATsConfig
from .modeling_beats import BEATsModel, _check_config, _TransformerEncoder

__all__ = [
    "BEATsTokenizer",
    "BEATsTokenizerConfig",
    "code_perplexity",
    "code_statistics",
    "ema_codebook_update",
    "restart_dead_codes",
]


class BEATsTokenizerConfig(BEATsConfig):
    r"""Configuration of a [`BEATsTokenizer`]: the [`BEATsConfig`] fields (patches and encoder) plus the quantiser's
    and the estimator's.

    Args:
        quant_n (`int`, defaults to 1024): number of codes, the labels' range.
        quant_dim (`int`, defaults to 256): width of the codewords.
        estimator_layers (`int`, defaults to 1): depth of the estimator (a Transformer of the encoder's width).
        teacher_dim (`int`, *optional*): width of the teacher's features the estimator predicts; None: the
            encoder's width.
        codebook_decay (`float`, defaults to 0.99): decay of the codewords' moving average.
        commitment_weight (`float`, defaults to 0.25): weight of the commitment loss (VQ-VAE's beta).
        dead_code_threshold (`float`, defaults to 0.03): a code whose moving usage falls below this fraction of
            the average code's is restarted on a vector of the current batch.
        kwargs: the [`BEATsConfig`] fields.
    """

    model_type = "beats_tokenizer"

    def __init__(
        self,
        quant_n: int = 1024,
        quant_dim: int = 256,
        estimator_layers: int = 1,
        teacher_dim: int | None = None,
        codebook_decay: float = 0.99,
        commitment_weight: float = 0.25,
        dead_code_threshold: float = 0.03,
        **kwargs,
    ) -> None:
        self.quant_n = quant_n
        self.quant_dim = quant_dim
        self.estimator_layers = estimator_layers
        self.teacher_dim = teacher_dim
        self.codebook_decay = codebook_decay
        self.commitment_weight = commitment_weight
        self.dead_code_threshold = dead_code_threshold
        super().__init__(**kwargs)


def _check_tokenizer_config(config: BEATsTokenizerConfig) -> None:
    """Raises a `ValueError` naming the first field of `config` that describes no tokenizer."""
    _check_config(config)
    for name in ("quant_n", "quant_dim", "estimator_layers"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: {getattr(config, name)} must be at least 1.")
    if config.teacher_dim is not None and config.teacher_dim < 1:
        raise ValueError(f"teacher_dim: {config.teacher_dim} must be at least 1 (or None: the encoder's width).")
    if not 0.0 < config.codebook_decay < 1.0:
        raise ValueError(f"codebook_decay: {config.codebook_decay} must be in (0, 1).")


# ------------------------------------------------------------------------------------------------ the codebook


def code_statistics(vectors: torch.Tensor, codes: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How often each code was assigned and the sum of its vectors.

    Args:
        vectors: `(n, dim)` float; codes: `(n,)` long in ``[0, num_codes)``.

    Returns:
        `(counts (num_codes,), sums (num_codes, dim))`, in the vectors' dtype.
    """
    counts = torch.bincount(codes, minlength=num_codes).to(vectors.dtype)
    sums = vectors.new_zeros(num_codes, vectors.shape[-1]).index_add_(0, codes, vectors)
    return counts, sums


def ema_codebook_update(
    codebook: torch.Tensor, usage: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor, decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One moving-average step of a unit-norm codebook.

    Each assigned codeword moves toward the direction of the mean of its vectors,
    ``normalize(decay * c + (1 - decay) * normalize(sum / count))``; an unassigned one stays where it is (its
    usage decays, see :func:`restart_dead_codes`).

    Args:
        codebook: `(num_codes, dim)` unit rows; usage: `(num_codes,)` moving count of assignments per step.
        counts, sums: this step's :func:`code_statistics`.
        decay: in (0, 1).

    Returns:
        `(codebook, usage)`, new tensors.
    """
    means = F.normalize(sums / counts.clamp_min(1.0)[:, None], dim=-1)
    moved = F.normalize(decay * codebook + (1.0 - decay) * means, dim=-1)
    codebook = torch.where((counts > 0)[:, None], moved, codebook)
    return codebook, decay * usage + (1.0 - decay) * counts


def restart_dead_codes(
    codebook: torch.Tensor,
    usage: torch.Tensor,
    vectors: torch.Tensor,
    expected_usage: float,
    threshold: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Moves every code used less than ``threshold * expected_usage`` onto a random vector of the batch.

    Without it, codes that no vector is near never move and the labels use a fraction of the codebook. A
    restarted code gets the expected usage, so it has time (about ``log(threshold) / log(decay)`` steps) to win
    vectors before it can be restarted again. A codebook with zero usage (a new one) is thus initialised from the
    data at the first training step.

    Args:
        codebook: `(num_codes, dim)` unit rows; usage: `(num_codes,)`.
        vectors: `(n, dim)` unit vectors of the current batch (no gradient).
        expected_usage: the average code's usage per step (assignments per step / num_codes).
        threshold: fraction of `expected_usage` below which a code counts as dead.
        generator: for the choice of vectors.

    Returns:
        `(codebook, usage)`, new tensors (the inputs themselves when no code is dead).
    """
    dead = usage < threshold * expected_usage
    num_dead = int(dead.sum())
    if num_dead == 0 or vectors.shape[0] == 0:
        return codebook, usage
    # Drawn on the CPU (a CPU generator, or the CPU RNG a checkpoint saves), whatever the device.
    picks = torch.randint(vectors.shape[0], (num_dead,), generator=generator)
    codebook = codebook.clone()
    codebook[dead] = vectors[picks.to(vectors.device)].to(codebook.dtype)
    return codebook, torch.where(dead, torch.full_like(usage, expected_usage), usage)


def code_perplexity(codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """``exp(entropy)`` of the codes' histogram: the number of equally used codes with the same spread (1 when one
    code takes all, `num_codes` when all are used alike). Scalar float tensor."""
    counts = torch.bincount(codes.flatten(), minlength=num_codes).float()
    probabilities = counts / counts.sum().clamp_min(1.0)
    return torch.exp(-(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum())


def _all_reduce(*tensors: torch.Tensor) -> None:
    """Sums each tensor over the processes of a distributed run, in place (nothing in a single process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.all_reduce(tensor)


class _EMAVectorQuantizer(nn.Module):
    """Nearest unit codeword by cosine, a moving-average codebook with dead-code restarts, straight-through gradients.

    The codebook and the usage are buffers: saved with the model, never touched by the optimizer. They change only
    in training mode. In a distributed run the statistics are summed over the processes first, so the update is
    the same on each; restarts draw from each process's own batch, and the buffers DDP broadcasts from the first
    process at the next step make them equal again.
    """

    def __init__(self, num_codes: int, code_dim: int, decay: float, dead_code_threshold: float) -> None:
        super().__init__()
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.register_buffer("codebook", F.normalize(torch.randn(num_codes, code_dim), dim=-1))
        # Zero usage: every code is dead until the first training step restarts it on the data.
        self.register_buffer("usage", torch.zeros(num_codes))

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """`(..., dim)` unit vectors -> `(...)` long index of the codeword of highest cosine."""
        return (vectors.float() @ self.codebook.float().T).argmax(dim=-1)

    def forward(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(batch, tokens, dim)` unit vectors -> `(quantized (batch, tokens, dim), codes (batch, tokens) long,
        commitment (scalar))`: the quantized vectors carry the input's gradient (straight through), and the
        commitment ``mean ||sg(codeword) - v||^2`` pulls the vectors toward their codewords."""
        flat = vectors.reshape(-1, vectors.shape[-1])
        if self.training:  # before the assignment, so that restarted codes compete for this batch already
            self.restart(flat.detach().float())
        codes = self.nearest(flat.detach())
        codewords = self.codebook[codes].to(flat.dtype)
        commitment = (codewords - flat).pow(2).sum(dim=-1).mean()
        quantized = flat + (codewords - flat).detach()
        if self.training:
            self.update(flat.detach().float(), codes)
        return quantized.view_as(vectors), codes.view(vectors.shape[:-1]), commitment

    @torch.no_grad()
    def restart(self, vectors: torch.Tensor) -> None:
        """Restarts the dead codes on `(n, dim)` unit vectors of the batch (:func:`restart_dead_codes`)."""
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        expected = vectors.shape[0] * world / self.num_codes
        codebook, usage = restart_dead_codes(self.codebook, self.usage, vectors, expected, self.dead_code_threshold)
        self.codebook.copy_(codebook)
        self.usage.copy_(usage)

    @torch.no_grad()
    def update(self, vectors: torch.Tensor, codes: torch.Tensor) -> None:
        """The moving-average step (:func:`ema_codebook_update`) for `(n, dim)` unit vectors assigned to `codes`."""
        counts, sums = code_statistics(vectors, codes, self.num_codes)
        _all_reduce(counts, sums)
        codebook, usage = ema_codebook_update(self.codebook, self.usage, counts, sums, self.decay)
        self.codebook.copy_(codebook)
        self.usage.copy_(usage)


# ------------------------------------------------------------------------------------------------ the model


class BEATsTokenizer(BEATsModel):
    r"""BEATs acoustic tokenizer distilled from a BEATs teacher: patches -> Transformer -> vector quantiser ->
    Transformer estimator of the teacher's features.

    The front end and the encoder are a [`BEATsModel`]'s (this class extends it, so its filterbank, input checks,
    patch embedding and state-dict keys are the same); the quantiser and the estimator are added. Saves and loads
    like every transformers model (``save_pretrained`` / ``from_pretrained``, safetensors; the codebook is saved
    with the weights).

    Args:
        config ([`BEATsTokenizerConfig`]): the encoder's [`BEATsConfig`] fields plus the quantiser's.

    Example:

    ```py
    >>> import torch
    >>> from fuse_hf.models.beats import BEATsTokenizer, BEATsTokenizerConfig
    >>> config = BEATsTokenizerConfig(input_patch_size=16, embed_dim=64, encoder_layers=2, encoder_embed_dim=64,
    ...                               encoder_ffn_embed_dim=128, encoder_attention_heads=4, conv_pos_groups=4,
    ...                               quant_n=256, quant_dim=32, teacher_dim=256)
    >>> tokenizer = BEATsTokenizer(config)
    >>> features = tokenizer.preprocess(torch.randn(2, 16000) * 0.1)  # (2, 98, 128), the teacher's input
    >>> out = tokenizer(input_features=features, target_features=torch.randn(2, 48, 256))  # teacher's features
    >>> out["loss"].backward()
    >>> tokenizer.tokenize(features).shape  # labels in [0, 256), 6 time rows x 8 bands
    torch.Size([2, 48])
    ```
    """

    config_class = BEATsTokenizerConfig
    base_model_prefix = "beats_tokenizer"
    main_input_name = "input_features"

    def __init__(self, config: BEATsTokenizerConfig) -> None:
        _check_tokenizer_config(config)
        if config.finetuned_model:
            raise ValueError("finetuned_model: a tokenizer has no classifier head; leave it False.")
        super().__init__(config)
        width = config.encoder_embed_dim
        self.quantize_proj = nn.Linear(width, config.quant_dim)
        self.quantizer = _EMAVectorQuantizer(
            config.quant_n, config.quant_dim, config.codebook_decay, config.dead_code_threshold
        )
        self.estimator_proj = nn.Linear(config.quant_dim, width)
        self.estimator = _TransformerEncoder.from_config(
            config, num_layers=config.estimator_layers, layerdrop=0.0, layer_wise_gradient_decay_ratio=1.0
        )
        self.estimator_head = nn.Linear(width, config.teacher_dim or width)
        self.post_init()

    @property
    def patch_size(self) -> int:
        return self.config.input_patch_size

    @property
    def codebook_size(self) -> int:
        """The number of labels, `quant_n`."""
        return self.config.quant_n

    def _check_features(self, fbank_features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> None:
        """Raises a `ValueError` for a filterbank ([`BEATsModel.check_features`]) or token mask that the tokenizer
        cannot label."""
        self.check_features(fbank_features)
        if padding_mask is not None:
            tokens = (fbank_features.shape[1] // self.patch_size) * self.num_freq_patches
            if tuple(padding_mask.shape) != (fbank_features.shape[0], tokens) or padding_mask.dtype != torch.bool:
                raise ValueError(
                    f"padding_mask: expected a bool (batch, tokens) = {(fbank_features.shape[0], tokens)} token "
                    f"mask, True = padded, got {_describe(padding_mask)}."
                )

    # -- the parts -------------------------------------------------------------------------------------------

    def encode(self, fbank_features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, frames, 128)` -> `(batch, tokens, quant_dim)` float32 unit vectors, before quantisation.

        Args:
            padding_mask: `(batch, tokens)` bool, True = padded token (never attended), or None.
        """
        hidden, _ = self.encoder(self.project(self.embed_patches(fbank_features)), padding_mask)
        return F.normalize(self.quantize_proj(hidden).float(), dim=-1)

    def estimate(self, quantized: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, tokens, quant_dim)` codewords -> `(batch, tokens, teacher_dim)` estimated teacher features."""
        hidden, _ = self.estimator(self.estimator_proj(quantized), padding_mask)
        return self.estimator_head(hidden)

    # -- entry points ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def tokenize(self, fbank_features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Labels of the patches: `(batch, frames, 128)` normalised filterbank -> `(batch, tokens)` long in
        ``[0, quant_n)``, tokens in the encoder's order. Never updates the codebook, and runs without dropout
        whatever the mode, so the labels are a fixed function of the input.

        Args:
            padding_mask: `(batch, tokens)` bool, True = padded token: padded tokens are not attended, so the real
                tokens' labels do not depend on the padding (padded tokens get labels too; ignore them).
        """
        self._check_features(fbank_features, padding_mask)
        was_training = self.training
        self.eval()
        try:
            return self.quantizer.nearest(self.encode(fbank_features, padding_mask))
        finally:
            self.train(was_training)

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        target_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One distillation step on fixed-length crops (no padding); in training mode it also updates the codebook.

        Args:
            input_values: `(batch, samples)` 16 kHz waveform in [-1, 1], or
            input_features: `(batch, frames, 128)` normalised filterbank (the teacher's input); one of the two.
            target_features: `(batch, tokens, teacher_dim)` the teacher's last-layer features of the same input,
                or None (no loss).

        Returns:
            dict with `codes` `(batch, tokens)` long, `estimate` `(batch, tokens, teacher_dim)` and `commitment`
            (scalar); with `target_features` also `loss` (scalar, to minimise), `cosine_loss` (mean of 1 - cosine)
            and `cosine` (mean cosine similarity, detached).

        Raises:
            ValueError: both or neither input, or shapes that do not fit.
        """
        if (input_values is None) == (input_features is None):
            raise ValueError(
                "BEATsTokenizer: pass either input_values (the waveform) or input_features (its filterbank)."
            )
        if input_features is None:
            input_features = self.preprocess(self.check_inputs(input_values)[0])
        self._check_features(input_features)
        quantized, codes, commitment = self.quantizer(self.encode(input_features))
        estimate = self.estimate(quantized)
        out = {"codes": codes, "estimate": estimate, "commitment": commitment}
        if target_features is None:
            return out
        if target_features.shape != estimate.shape:
            raise ValueError(
                f"target_features: shape {tuple(target_features.shape)}, the estimate's is {tuple(estimate.shape)} "
                "(batch, tokens, teacher_dim). Pass the teacher's features of the same filterbank, and set "
                "teacher_dim to the teacher's encoder_embed_dim."
            )
        cosine = F.cosine_similarity(estimate.float(), target_features.float(), dim=-1)
        cosine_loss = (1.0 - cosine).mean()
        loss = cosine_loss + self.config.commitment_weight * commitment
        return {**out, "loss": loss, "cosine_loss": cosine_loss, "cosine": cosine.mean().detach()}


def _describe(value) -> str:
    """A short description of an input for error messages: shape and dtype of a tensor, the type otherwise."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}, {value.dtype}"
    return type(value).__name__
