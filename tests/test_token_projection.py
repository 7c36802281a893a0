"""BEATs tokens on the latent grid (`TokenGridProjection`): the alignment against the two front ends, the UNet
widening that keeps a trained model's output, and the pipeline's guidance with the extra channels."""

import numpy as np
import pytest
import torch

from conftest import TEST_LATENT_FRAMES, speech_like
from fuse_hf.factory import make_pipeline, widen_unet_input
from fuse_hf.models.beats.feature_extraction_beats import _kaldi_mel_banks
from fuse_hf.models.token_projection import TokenGridProjection, mel_band_of_rows, row_interpolation_weights


def test_each_latent_row_takes_the_band_whose_mel_filters_peak_at_its_frequency():
    """The band map agrees with the BEATs filterbank itself: for the FFT bin (512-point, as the filterbank) nearest a
    latent row's centre frequency, the mel filter with the largest weight lies in that row's band."""
    bands = mel_band_of_rows(64, 8).argmax(dim=1)
    banks = _kaldi_mel_banks()  # (128 mel bins, 257 FFT bins) at 31.25 Hz
    agree = 0
    for row in range(64):
        hz = (row * 4 + 1.5) * 16000 / 510  # centre of the 4 STFT bins the VAE pools into this row
        mel_bin = int(banks[:, int(round(hz / 31.25))].argmax())
        agree += int(mel_bin // 16 == int(bands[row]))
    assert agree >= 62  # at most a row on either side of a band edge may round the other way
    assert bands[0] == 0 and bands[-1] == 7 and bool((bands.diff() >= 0).all())


def test_row_weights_interpolate_between_token_row_centres():
    weights = row_interpolation_weights(latent_frames=40, num_rows=8)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(40))
    centres = torch.arange(40) * 512 + 192.0
    # The weighted token-row centre equals the frame's centre wherever it lies between the first and last row.
    row_centres = torch.arange(8) * 2560 + 1400.0
    inside = (centres >= row_centres[0]) & (centres <= row_centres[-1])
    torch.testing.assert_close((weights @ row_centres)[inside], centres[inside])
    assert torch.equal(weights[~inside & (centres < 1400)].argmax(dim=1), torch.zeros(3, dtype=torch.long))


def test_a_single_token_lands_on_its_own_time_and_band():
    """A token grid where one token (row 3, band 5) differs from the others lights up (against the grid of the
    uniform tokens) only the latent frames within a row of row 3's centre and only the latent rows of band 5."""
    projection = TokenGridProjection(condition_dim=4, hidden_dim=8, out_channels=2).eval()
    rows, bands = 6, 8
    background = torch.tensor([0.5, 1.0, -0.5, 0.2]).expand(1, rows * bands, 4)
    tokens = background.clone()
    tokens[0, 3 * bands + 5] = torch.tensor([3.0, -1.0, 2.0, 0.5])
    with torch.no_grad():
        grid = projection(tokens, 64, 32) - projection(background, 64, 32)  # what the one token changes
        # A row of all-zero tokens (conditioning dropout, guidance off) gives a zero grid; the other rows do not.
        both = projection(torch.cat([torch.zeros_like(tokens), tokens]), 64, 32)
    assert both[0].abs().amax() == 0 and torch.equal(both[1:], projection(tokens, 64, 32))
    touched = grid.abs().amax(dim=(0, 1)) > 1e-6  # (freq, frames)
    frames = touched.any(dim=0).nonzero().flatten()
    freq_rows = touched.any(dim=1).nonzero().flatten()
    centre = (3 * 2560 + 1400 - 192) / 512  # the latent frame at row 3's centre
    assert frames.min() > centre - 5 and frames.max() < centre + 5
    assert torch.equal(freq_rows, (mel_band_of_rows(64, 8).argmax(dim=1) == 5).nonzero().flatten())


def test_bad_token_shapes_are_one_line_errors():
    projection = TokenGridProjection(condition_dim=4)
    with pytest.raises(ValueError, match=r"expects \(batch, rows \* 8, 4\) BEATs tokens, got \(1, 12, 4\)"):
        projection(torch.zeros(1, 12, 4), 64, 32)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TokenGridProjection(num_mel_bins=100)


def test_a_widened_unet_computes_what_it_did_until_trained():
    pipe = make_pipeline(latent_frames=TEST_LATENT_FRAMES, seed=0)
    unet = pipe.unet
    widened = widen_unet_input(unet, unet.config.in_channels + 3)
    assert widened.config.in_channels == unet.config.in_channels + 3 and widened is not unet
    sample = torch.randn(2, unet.config.in_channels, 16, TEST_LATENT_FRAMES)
    tokens = torch.randn(2, 8, pipe.conditioner.config.encoder_embed_dim)
    with torch.no_grad():
        before = unet(sample, 500, encoder_hidden_states=tokens).sample
        extra = torch.randn(2, 3, 16, TEST_LATENT_FRAMES)
        after = widened(torch.cat([sample, extra], dim=1), 500, encoder_hidden_states=tokens).sample
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert widen_unet_input(unet, unet.config.in_channels) is unet
    with pytest.raises(ValueError, match="fewer than the UNet's"):
        widen_unet_input(unet, 2)


@pytest.fixture(scope="module")
def grid_pipeline():
    pipe = make_pipeline(latent_frames=TEST_LATENT_FRAMES, seed=0, token_projection={"hidden_dim": 16})
    with torch.no_grad():  # random weights large enough that the extra channels change the output
        pipe.unet.conv_in.weight[:, -8:] = torch.randn_like(pipe.unet.conv_in.weight[:, -8:]) * 0.5
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_unet_reads_the_token_grid_and_guidance_off_drops_it(grid_pipeline):
    pipe = grid_pipeline
    assert pipe.unet.config.in_channels == 2 * pipe.vae.config.latent_channels + 8
    audio = speech_like(1.0, seed=3)[0]
    seen = []
    forward = pipe.unet.forward

    def spy(sample, *args, **kwargs):
        seen.append(sample[:, -8:].detach().clone())
        return forward(sample, *args, **kwargs)

    pipe.unet.forward = spy
    try:

        def run(scale):
            generator = torch.Generator().manual_seed(0)
            return pipe(audio, sampling_rate=16000, num_inference_steps=2, guidance_scale=scale, generator=generator)

        on = run(1.0).audios
        grid_on = seen[-1]
        off = run(0.0).audios
        grid_off = seen[-1]
        seen.clear()
        cfg = run(2.0).audios
    finally:
        pipe.unet.forward = forward
    assert grid_on.abs().amax() > 0 and grid_off.abs().amax() == 0
    # Classifier-free guidance: the unconditional half has no tokens on the grid, the conditional half has them.
    half = seen[-1].shape[0] // 2
    assert seen[-1][:half].abs().amax() == 0 and torch.equal(seen[-1][half:], grid_on)
    assert on.shape == off.shape == cfg.shape == audio.shape
    assert np.abs(on - off).max() > 1e-4 and np.abs(cfg - on).max() > 1e-4


def test_a_pipeline_with_a_token_projection_saves_and_loads(grid_pipeline, tmp_path):
    from fuse_hf import FUSEPipeline

    grid_pipeline.save_pretrained(tmp_path)
    pipe = FUSEPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.token_projection, TokenGridProjection)
    audio = speech_like(0.8, seed=4)[0]
    kwargs = dict(sampling_rate=16000, num_inference_steps=2)
    a = grid_pipeline(audio, generator=torch.Generator().manual_seed(0), **kwargs).audios
    b = pipe(audio, generator=torch.Generator().manual_seed(0), **kwargs).audios
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_tokens_a_callback_replaces_bring_their_own_grid(grid_pipeline):
    """The grid is computed once per window, and again when `callback_on_step_end` hands back new tokens."""
    pipe = grid_pipeline
    seen = []
    forward = pipe.unet.forward

    def spy(sample, *args, **kwargs):
        seen.append(sample[:, -8:].detach().clone())
        return forward(sample, *args, **kwargs)

    def silence_tokens(pipe, step, timestep, kwargs):
        return {"encoder_hidden_states": torch.zeros_like(kwargs["encoder_hidden_states"])}

    pipe.unet.forward = spy
    try:
        pipe(
            speech_like(0.5, seed=5)[0],
            sampling_rate=16000,
            num_inference_steps=3,
            callback_on_step_end=silence_tokens,
            callback_on_step_end_tensor_inputs=["encoder_hidden_states"],
        )
    finally:
        pipe.unet.forward = forward
    assert len(seen) == 3 and seen[0].abs().amax() > 0
    assert seen[1].abs().amax() == 0 and seen[2].abs().amax() == 0
