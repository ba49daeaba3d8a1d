"""Layouts of video features and the exact reshapes between them.

Three layouts, all holding the same numbers:

* **video**    ``[B, C, T, H, W]`` -- the project's convention for clips and latents.
* **frames**   ``[B*T, C, H, W]``  -- what a 2D (image) network runs on; row ``b*T + t`` is frame ``t``
  of clip ``b`` (clip-major, so the frames of one clip are contiguous).
* **sequence** ``[B*H*W, T, C]``   -- what temporal attention runs on: one length-``T`` sequence per
  spatial position; row ``(b*H + h)*W + w``.

Every function here is a pure permutation of elements: each ``x_to_y`` has an exact inverse ``y_to_x``.
"""

from __future__ import annotations

import torch

__all__ = [
    "clip_count",
    "frames_to_sequence",
    "frames_to_video",
    "repeat_per_frame",
    "sequence_to_frames",
    "sequence_to_video",
    "video_to_frames",
    "video_to_sequence",
]


def clip_count(frames: torch.Tensor, num_frames: int) -> int:
    """Number of clips ``B`` in a frames tensor ``[B*T, ...]`` with ``T = num_frames`` frames per clip."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if frames.shape[0] % num_frames:
        raise ValueError(
            f"a frames tensor of {frames.shape[0]} rows does not split into clips of num_frames={num_frames}"
        )
    return frames.shape[0] // num_frames


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W] -> [B*T, C, H, W]`` (row ``b*T + t``). Inverse: :func:`frames_to_video`."""
    if video.dim() != 5:
        raise ValueError(f"expected a video [B, C, T, H, W], got shape {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def frames_to_video(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B*T, C, H, W] -> [B, C, T, H, W]`` with ``T = num_frames``. Inverse: :func:`video_to_frames`."""
    if frames.dim() != 4:
        raise ValueError(f"expected frames [B*T, C, H, W], got shape {tuple(frames.shape)}")
    b = clip_count(frames, num_frames)
    _, c, h, w = frames.shape
    return frames.reshape(b, num_frames, c, h, w).transpose(1, 2)


def video_to_sequence(video: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, H, W] -> [B*H*W, T, C]`` (row ``(b*H + h)*W + w``). Inverse: :func:`sequence_to_video`."""
    if video.dim() != 5:
        raise ValueError(f"expected a video [B, C, T, H, W], got shape {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    return video.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)


def sequence_to_video(sequence: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B*H*W, T, C] -> [B, C, T, H, W]``. Inverse: :func:`video_to_sequence`."""
    if sequence.dim() != 3 or sequence.shape[0] % (height * width):
        raise ValueError(f"expected a sequence [B*{height}*{width}, T, C], got shape {tuple(sequence.shape)}")
    n, t, c = sequence.shape
    return sequence.reshape(n // (height * width), height, width, t, c).permute(0, 4, 3, 1, 2)


def frames_to_sequence(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B*T, C, H, W] -> [B*H*W, T, C]``. Inverse: :func:`sequence_to_frames`."""
    return video_to_sequence(frames_to_video(frames, num_frames))


def sequence_to_frames(sequence: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B*H*W, T, C] -> [B*T, C, H, W]``. Inverse: :func:`frames_to_sequence`."""
    return video_to_frames(sequence_to_video(sequence, height, width))


def repeat_per_frame(per_clip: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[B, ...] -> [B*T, ...]``: one copy per frame, in the frames layout's row order (``b*T + t``).

    For conditioning a 2D network on clips: timesteps ``[B]``, text embeddings ``[B, L, D]``, noise levels.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return per_clip.repeat_interleave(num_frames, dim=0)
