"""Temporal self-attention against a by-hand attention over the frames of each pixel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vsr_core.nn.position import sinusoidal_frame_encoding
from vsr_core.nn.temporal_attention import TemporalSelfAttention

B, C, T, H, W = 2, 8, 5, 3, 2


def _video(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(seed))


def _trained(heads: int = 2, **kwargs) -> TemporalSelfAttention:
    torch.manual_seed(1)
    block = TemporalSelfAttention(C, num_heads=heads, zero_init=False, **kwargs)
    with torch.no_grad():  # non-trivial norm affine and output bias, so skipping either would show
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
        block.to_out.bias.uniform_(-0.5, 0.5)
    return block


def _reference(block: TemporalSelfAttention, video: torch.Tensor, heads: int, position: bool) -> torch.Tensor:
    """Loop over pixels; per pixel x [T, C]: x + W_o softmax(q k^T / sqrt(d)) v per head, q = W_q (LN(x) + pe)."""
    out = torch.empty_like(video)
    d = C // heads
    pe = sinusoidal_frame_encoding(T, C)
    for b in range(B):
        for h in range(H):
            for w in range(W):
                x = video[b, :, :, h, w].T  # [T, C]
                z = F.layer_norm(x, (C,), block.norm.weight, block.norm.bias, block.norm.eps)
                if position:
                    z = z + pe
                q, k, v = (z @ lin.weight.T + lin.bias for lin in (block.to_q, block.to_k, block.to_v))
                attended = torch.empty(T, C)
                for head in range(heads):
                    s = slice(head * d, (head + 1) * d)
                    weights = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), dim=-1)
                    attended[:, s] = weights @ v[:, s]
                out[b, :, :, h, w] = (x + attended @ block.to_out.weight.T + block.to_out.bias).T
    return out


@pytest.mark.parametrize("position", [True, False])
def test_matches_hand_attention(position: bool) -> None:
    block = _trained(position_encoding="sinusoidal" if position else None)
    video = _video()
    with torch.no_grad():
        assert torch.allclose(block(video), _reference(block, video, 2, position), atol=1e-5)


def test_zero_init_is_exact_identity() -> None:
    video = _video()
    block = TemporalSelfAttention(C, num_heads=4)
    assert torch.equal(block(video), video)


def test_mixes_frames_of_one_pixel_only() -> None:
    block = _trained()
    video = _video()
    poked = video.clone()
    poked[0, :, 0, 1, 1] += 3.0  # frame 0 of pixel (1, 1) of clip 0
    with torch.no_grad():
        changed = (block(poked) - block(video)).abs().amax(dim=1) > 0  # [B, T, H, W]
    expected = torch.zeros(B, T, H, W, dtype=torch.bool)
    expected[0, :, 1, 1] = True  # every frame of that pixel, nothing else
    assert torch.equal(changed, expected)


def test_learned_positions_break_frame_permutation_symmetry() -> None:
    block = _trained(position_encoding="learned", max_frames=8)
    video = _video()
    flipped = video.flip(2)
    with torch.no_grad():
        # Zero table: attention is permutation-equivariant over frames.
        assert torch.allclose(block(flipped), block(video).flip(2), atol=1e-5)
        block.position.table.normal_()
        assert not torch.allclose(block(flipped), block(video).flip(2), atol=1e-3)


def test_heads_must_divide_channels() -> None:
    with pytest.raises(ValueError, match="num_heads=3 does not divide channels=8"):
        TemporalSelfAttention(8, num_heads=3)
