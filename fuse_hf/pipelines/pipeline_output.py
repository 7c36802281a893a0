"""What [`FUSEPipeline`] returns (kept apart from the pipeline, as diffusers keeps each pipeline's output)."""

from __future__ import annotations

from dataclasses import dataclass

from diffusers.pipelines.pipeline_utils import AudioPipelineOutput


@dataclass
class FUSEPipelineOutput(AudioPipelineOutput):
    """Output of [`FUSEPipeline`].

    Args:
        audios (`np.ndarray`, `torch.Tensor` or a list of them):
            Enhanced audio with the shape of each input (`(samples,)` or `(channels, samples)`), float32 in [-1, 1]:
            numpy arrays for `output_type="np"`, torch tensors for `"pt"`. A list when the input was a list.
        sampling_rate (`int` or `list[int]`): the sample rate of each output in Hz, equal to the input's.
    """

    sampling_rate: int | list[int] | None = None
