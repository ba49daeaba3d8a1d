"""Temporal self-attention: every spatial position attends over the frames of its clip.

``out = x + W_o · Attn(q, k, v)`` with ``q, k, v = W_{q,k,v} · (LN(x) + PE)`` computed on the sequence layout
``[B*H*W, T, C]`` (one sequence per pixel, so the cost is ``O(T^2)`` per position and nothing mixes across
space). ``W_o`` starts at zero, so the block starts as the identity (AnimateDiff's motion module, the ``TA`` of
DiffVSR's multi-scale temporal attention, eq. 3, without its AdaLN timestep modulation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.nn.position import FramePositionEncoding, PositionKind
from vsr_core.nn.reshape import sequence_to_video, video_to_sequence
from vsr_core.nn.zero_init import zero_module

__all__ = ["TemporalSelfAttention"]


class TemporalSelfAttention(nn.Module):
    """Residual multi-head self-attention over ``T``: video ``[B, C, T, H, W] -> [B, C, T, H, W]``.

    ``num_heads`` must divide ``channels`` (head width ``channels // num_heads``). ``position_encoding`` is
    ``"sinusoidal"``, ``"learned"`` (table of ``max_frames``) or ``None``. ``zero_init=True`` zeroes the output
    projection (weight and bias), making the block the exact identity until it is trained.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int = 8,
        position_encoding: PositionKind | None = "sinusoidal",
        max_frames: int = 64,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide channels={channels}")
        self.channels, self.num_heads = channels, num_heads
        self.norm = nn.LayerNorm(channels)
        self.position = (
            FramePositionEncoding(channels, position_encoding, max_frames) if position_encoding is not None else None
        )
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)
        if zero_init:
            zero_module(self.to_out)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        _, _, _, height, width = video.shape
        sequence = video_to_sequence(video)  # [N, T, C], N = B*H*W
        hidden = self.norm(sequence)
        if self.position is not None:
            hidden = self.position(hidden)
        n, t, c = hidden.shape

        def heads(x: torch.Tensor) -> torch.Tensor:  # [N, T, C] -> [N, heads, T, C/heads]
            return x.reshape(n, t, self.num_heads, c // self.num_heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            heads(self.to_q(hidden)), heads(self.to_k(hidden)), heads(self.to_v(hidden))
        )
        attended = attended.transpose(1, 2).reshape(n, t, c)
        return sequence_to_video(sequence + self.to_out(attended), height, width)
