"""Temporal convolution block against a by-hand convolution over frames."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr_core.nn.temporal_conv import TemporalConvBlock

B, C, T, H, W = 2, 4, 6, 3, 3


def _video() -> torch.Tensor:
    return torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(0))


def _trained(**kwargs) -> TemporalConvBlock:
    torch.manual_seed(2)
    block = TemporalConvBlock(C, zero_init=False, norm_groups=2, **kwargs)
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return block


def _temporal_conv(x: torch.Tensor, conv: torch.nn.Conv3d) -> torch.Tensor:
    """out[:, :, t] = b + sum_k W[:, :, k] x[:, :, t + k - k//2] (1x1 spatially), zeros outside the clip."""
    k = conv.weight.shape[2]
    out = conv.bias.view(1, -1, 1, 1, 1).expand(B, C, T, H, W).clone()
    for t in range(T):
        for tap in range(k):
            source = t + tap - k // 2
            if 0 <= source < T:
                out[:, :, t] += torch.einsum("oi,bihw->bohw", conv.weight[:, :, tap, 0, 0], x[:, :, source])
    return out


def _norm_act(x: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    per_frame = [F.group_norm(x[:, :, t], norm.num_groups, norm.weight, norm.bias, norm.eps) for t in range(T)]
    return F.silu(torch.stack(per_frame, dim=2))


def test_matches_hand_convolution() -> None:
    block = _trained(kernel_size=3)
    video = _video()
    hidden = _temporal_conv(_norm_act(video, block.norm1), block.conv1)
    expected = video + _temporal_conv(_norm_act(hidden, block.norm2), block.conv2)
    with torch.no_grad():
        assert torch.allclose(block(video), expected, atol=1e-5)


def test_receptive_field_is_two_kernel_radii() -> None:
    block = _trained(kernel_size=3)
    video = _video()
    poked = video.clone()
    poked[:, :, 0] += 2.0
    with torch.no_grad():
        changed = (block(poked) - block(video)).abs().amax(dim=(0, 1, 3, 4)) > 0
    # Two radius-1 convolutions and per-frame norms: frame 0 reaches frames 0..2 and no further.
    assert changed.tolist() == [True, True, True, False, False, False]


def test_zero_init_identity_and_spatial_kernel() -> None:
    video = _video()
    assert torch.equal(TemporalConvBlock(C, kernel_size=5, spatial_kernel_size=3)(video), video)
    assert _trained(spatial_kernel_size=3)(video).shape == video.shape
    with pytest.raises(ValueError, match="odd"):
        TemporalConvBlock(C, kernel_size=2)
