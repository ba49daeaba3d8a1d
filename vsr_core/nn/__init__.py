"""Shared neural-network building blocks for video methods built on image networks.

* :mod:`~vsr_core.nn.reshape`: exact reshapes between video ``[B,C,T,H,W]``, frames ``[B*T,C,H,W]`` and
  sequence ``[B*H*W,T,C]`` layouts;
* :mod:`~vsr_core.nn.shift`: exact temporal shifts (DiffVSR's fold 1/2 right shift, UltraVSR's RTS thirds);
* :mod:`~vsr_core.nn.zero_init`, :mod:`~vsr_core.nn.position`: zero initialisation, frame position encodings;
* :mod:`~vsr_core.nn.temporal_attention`, :mod:`~vsr_core.nn.temporal_conv`: residual temporal modules that start
  as the identity.
"""

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
    "FramePositionEncoding",
    "TemporalConvBlock",
    "TemporalSelfAttention",
    "TemporalShift",
    "clip_count",
    "frames_to_sequence",
    "frames_to_video",
    "is_zero_module",
    "repeat_per_frame",
    "sequence_to_frames",
    "sequence_to_video",
    "shift_frames",
    "sinusoidal_frame_encoding",
    "temporal_shift",
    "video_to_frames",
    "video_to_sequence",
    "zero_module",
]
