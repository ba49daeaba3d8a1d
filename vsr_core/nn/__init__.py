"""Shared neural-network building blocks for video methods built on image networks.

* :mod:`~vsr_core.nn.reshape`: exact reshapes between video ``[B,C,T,H,W]``, frames ``[B*T,C,H,W]`` and
  sequence ``[B*H*W,T,C]`` layouts;
* :mod:`~vsr_core.nn.shift`: exact temporal shifts (DiffVSR's fold 1/2 right shift, UltraVSR's RTS thirds);
* :mod:`~vsr_core.nn.zero_init`, :mod:`~vsr_core.nn.position`: zero initialisation, frame position encodings;
* :mod:`~vsr_core.nn.temporal_attention`, :mod:`~vsr_core.nn.temporal_conv`: residual temporal modules that start
  as the identity;
* :mod:`~vsr_core.nn.inflate`: attach temporal modules after chosen layers of a 2D network (a diffusers
  ``UNet2DConditionModel``) without renaming anything;
* :mod:`~vsr_core.nn.blockwise`: spatial stages in frame mini-batches, temporal stages on the whole clip.
"""

from vsr_core.nn.blockwise import BlockwiseRunner, Stage, spatial, temporal
from vsr_core.nn.inflate import (
    TEMPORAL_CHILD,
    TemporalSite,
    inflate_to_video,
    is_inflated,
    modules_of_type,
    output_channels,
    run_on_frames,
    temporal_modules,
    temporal_parameters,
    temporal_state_dict,
)
from vsr_core.nn.position import FramePositionEncoding, sinusoidal_frame_encoding
from vsr_core.nn.reshape import (
    clip_count,
    frames_to_sequence,
    frames_to_video,
    repeat_per_frame,
    sequence_to_frames,
    sequence_to_video,
    video_to_frames,
    video_to_sequence,
)
from vsr_core.nn.shift import TemporalShift, shift_frames, temporal_shift
from vsr_core.nn.temporal_attention import TemporalSelfAttention
from vsr_core.nn.temporal_conv import TemporalConvBlock
from vsr_core.nn.zero_init import is_zero_module, zero_module

__all__ = [
    "TEMPORAL_CHILD",
    "BlockwiseRunner",
    "FramePositionEncoding",
    "Stage",
    "TemporalConvBlock",
    "TemporalSelfAttention",
    "TemporalShift",
    "TemporalSite",
    "clip_count",
    "frames_to_sequence",
    "frames_to_video",
    "inflate_to_video",
    "is_inflated",
    "is_zero_module",
    "modules_of_type",
    "output_channels",
    "repeat_per_frame",
    "run_on_frames",
    "sequence_to_frames",
    "sequence_to_video",
    "shift_frames",
    "sinusoidal_frame_encoding",
    "spatial",
    "temporal",
    "temporal_modules",
    "temporal_parameters",
    "temporal_shift",
    "temporal_state_dict",
    "video_to_frames",
    "video_to_sequence",
    "zero_module",
]
