"""Frame position encodings for temporal attention: which frame of the clip a token belongs to.

Temporal self-attention is permutation-equivariant over frames without one. ``sinusoidal`` is the fixed encoding
of Vaswani et al. (2017, sec. 3.5) over the frame index, as AnimateDiff and DiffVSR's temporal attention use it;
``learned`` is a trainable table (initialised to zero, so adding it changes nothing at the start).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["FramePositionEncoding", "sinusoidal_frame_encoding"]

PositionKind = Literal["sinusoidal", "learned"]


def sinusoidal_frame_encoding(
    num_frames: int, dim: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[T, dim]`` with ``pe[t, 2i] = sin(t / 10000^(2i/dim))`` and ``pe[t, 2i+1] = cos(t / 10000^(2i/dim))``."""
    position = torch.arange(num_frames, device=device, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_frames, dim, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency[: dim // 2])  # an odd dim has one sine more than cosines
    return pe.to(dtype)


class FramePositionEncoding(nn.Module):
    """Adds a per-frame vector to a sequence: ``[N, T, C] -> [N, T, C]`` (``N`` = clips x spatial positions).

    ``max_frames`` bounds ``T`` for the ``learned`` table; the sinusoidal encoding works for any ``T``.
    """

    def __init__(self, dim: int, kind: PositionKind = "sinusoidal", max_frames: int = 64) -> None:
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"position encoding must be 'sinusoidal' or 'learned', got {kind!r}")
        self.dim, self.kind, self.max_frames = dim, kind, max_frames
        if kind == "learned":
            self.table = nn.Parameter(torch.zeros(max_frames, dim))

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        frames = sequence.shape[1]
        if self.kind == "learned":
            if frames > self.max_frames:
                raise ValueError(f"{frames} frames exceed the learned position table of {self.max_frames}")
            return sequence + self.table[:frames].to(sequence.dtype)
        return sequence + sinusoidal_frame_encoding(frames, self.dim, device=sequence.device, dtype=sequence.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kind={self.kind!r}" + (
            f", max_frames={self.max_frames}" if self.kind == "learned" else ""
        )
