"""Temporal attention of DiffVSR's release: multi-head attention over frames with rotary and relative position terms.

The release's ``TemporalAttention`` (``models/attention.py``, the LaVie / Upscale-A-Video lineage) attends over the
``T`` frames of every spatial position, sequence layout ``[N, T, C]`` with ``N = B*H*W``:

* ``q, k, v = W_q x, W_k x, W_v x`` (no biases), split into ``heads`` of ``d = C / heads``;
* ``q`` is scaled by ``d^-1/2``, then ``q`` and ``k`` are rotated by a rotary embedding of dimension ``r = min(32, d)``
  applied to the first ``r`` features of each head (frequencies ``10000^(-2i/r)``, pairs interleaved: features
  ``(2i, 2i+1)`` rotate together; ``rotary-embedding-torch`` 0.2.3, which the release pins);
* scores ``q . k + b_h(i - j)``: a learned bias per head and T5 relative-position bucket (32 buckets, max distance 32);
* ``softmax`` over keys, ``W_o (attn v) + b_o``.

It returns the attention *output* (no residual, no normalisation); callers add their residual. The release
zero-initialises ``W_o`` but not ``b_o``; here ``zero_init`` zeroes both, so the output is exactly zero at
initialisation (see :mod:`diffvsr.msta`).

The rotary frequencies are constants derived from ``r``: they are a non-persistent buffer here, while the release
stores them as a frozen ``nn.Parameter`` (``rotary_emb.freqs``) under every attention module;
:mod:`diffvsr.weights` checks those entries against :func:`rotary_frequencies` and drops them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vsr_core.nn import zero_module

__all__ = [
    "MAX_ROTARY_DIM",
    "RelativePositionBias",
    "TemporalAttention",
    "apply_rotary",
    "relative_position_bucket",
    "rotary_frequencies",
]

#: The release's ``RotaryEmbedding(32)``: at most 32 features of each head are rotated.
MAX_ROTARY_DIM = 32


def rotary_frequencies(dim: int, theta: float = 10000.0) -> torch.Tensor:
    """``[dim // 2]`` rotation frequencies ``theta^(-2i/dim)`` (``rotary-embedding-torch``'s ``freqs_for='lang'``)."""
    return 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))


def apply_rotary(x: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``2 * len(frequencies)`` features of ``x [..., T, D]`` by position ``t`` along ``T``.

    Pair ``(x_{2i}, x_{2i+1})`` at position ``t`` becomes ``(x_{2i} cos a - x_{2i+1} sin a, x_{2i+1} cos a + x_{2i}
    sin a)``
    with ``a = t * frequencies[i]``; the remaining features are unchanged. Same shape as ``x``.
    """
    rot = 2 * frequencies.numel()
    positions = torch.arange(x.shape[-2], device=x.device, dtype=frequencies.dtype)
    angles = torch.outer(positions, frequencies.to(x.device)).repeat_interleave(2, dim=-1).to(x.dtype)  # [T, rot]
    head, tail = x[..., :rot], x[..., rot:]
    pairs = head.unflatten(-1, (-1, 2))
    rotated_half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (-x2, x1) per pair
    return torch.cat((head * angles.cos() + rotated_half * angles.sin(), tail), dim=-1)


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int = 32, max_distance: int = 32
) -> torch.Tensor:
    """T5's bucket of ``relative_position = j - i`` (key minus query), as the release computes it.

    With ``n = i - j``: half of the buckets for ``n < 0`` (offset ``num_buckets // 2``); within a half, distances below
    ``num_buckets // 4`` get their own bucket, larger ones a logarithmic bucket up to ``max_distance``.
    """
    n = -relative_position
    half = num_buckets // 2
    bucket = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    small = n < exact
    large = (
        exact + (torch.log(n.float().clamp_min(1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    )
    large = torch.minimum(large, torch.full_like(large, half - 1))
    return bucket + torch.where(small, n, large)


class RelativePositionBias(nn.Module):
    """Learned attention bias per head and relative-position bucket: ``num_frames -> [heads, T, T]``."""

    def __init__(self, heads: int, num_buckets: int = 32, max_distance: int = 32) -> None:
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, num_frames: int, device: torch.device) -> torch.Tensor:
        position = torch.arange(num_frames, device=device)
        buckets = relative_position_bucket(position[None, :] - position[:, None], self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)


class TemporalAttention(nn.Module):
    """Attention over frames: sequence ``[N, T, C] -> [N, T, C]`` (the output only, no residual).

    ``heads`` must divide ``channels``. ``zero_init`` zeroes the output projection (weight and bias).
    """

    def __init__(self, channels: int, heads: int, *, zero_init: bool = True) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads={heads} does not divide channels={channels}")
        self.channels, self.heads = channels, heads
        self.head_dim = channels // heads
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        self.position_bias = RelativePositionBias(heads)
        rotary_dim = min(MAX_ROTARY_DIM, self.head_dim)
        self.register_buffer("rotary_freqs", rotary_frequencies(rotary_dim), persistent=False)
        if zero_init:
            zero_module(self.to_out)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        n, t, c = sequence.shape

        def split(x: torch.Tensor) -> torch.Tensor:  # [N, T, C] -> [N, heads, T, d]
            return x.reshape(n, t, self.heads, self.head_dim).transpose(1, 2)

        q = split(self.to_q(sequence)) * self.head_dim**-0.5
        k = split(self.to_k(sequence))
        v = split(self.to_v(sequence))
        q, k = apply_rotary(q, self.rotary_freqs), apply_rotary(k, self.rotary_freqs)
        scores = q @ k.transpose(-1, -2) + self.position_bias(t, sequence.device).to(q.dtype)
        attended = scores.softmax(dim=-1) @ v  # [N, heads, T, d]
        return self.to_out(attended.transpose(1, 2).reshape(n, t, c))
