"""Temporal convolution residual block: local mixing of neighbouring frames.

``out = x + Conv_o(SiLU(GN(Conv_t(SiLU(GN(x))))))`` with 3D convolutions of kernel ``(k_t, k_s, k_s)`` and zero
padding at the clip ends (DiffVSR's ``ResnetBlock3DCNN`` uses ``k_t = 5``, ``k_s = 1``). ``Conv_o`` starts at
zero, so the block starts as the identity. The group norms are per frame (computed in the frames layout), so a
frame's normalisation does not depend on how many frames the clip has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.nn.reshape import frames_to_video, video_to_frames
from vsr_core.nn.zero_init import zero_module

__all__ = ["TemporalConvBlock"]


def _groups(channels: int, wanted: int) -> int:
    """The largest group count ``<= wanted`` that divides ``channels``."""
    return next(g for g in range(min(wanted, channels), 0, -1) if channels % g == 0)


class TemporalConvBlock(nn.Module):
    """Residual 3D-convolution block over frames: video ``[B, C, T, H, W] -> [B, C, T, H, W]``.

    ``kernel_size`` is the temporal extent ``k_t`` (odd), ``spatial_kernel_size`` the spatial one (odd; 1 gives a
    pure 1D convolution over time at every pixel). ``norm_groups`` is an upper bound for the group norms.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 3,
        spatial_kernel_size: int = 1,
        norm_groups: int = 32,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or spatial_kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {kernel_size} and {spatial_kernel_size}")
        kernel = (kernel_size, spatial_kernel_size, spatial_kernel_size)
        padding = (kernel_size // 2, spatial_kernel_size // 2, spatial_kernel_size // 2)
        self.norm1 = nn.GroupNorm(_groups(channels, norm_groups), channels)
        self.conv1 = nn.Conv3d(channels, channels, kernel, padding=padding)
        self.norm2 = nn.GroupNorm(_groups(channels, norm_groups), channels)
        self.conv2 = nn.Conv3d(channels, channels, kernel, padding=padding)
        if zero_init:
            zero_module(self.conv2)

    def _norm_act(self, norm: nn.GroupNorm, video: torch.Tensor) -> torch.Tensor:
        return frames_to_video(F.silu(norm(video_to_frames(video))), video.shape[2])

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(self._norm_act(self.norm1, video))
        return video + self.conv2(self._norm_act(self.norm2, hidden))
