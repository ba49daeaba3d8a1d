"""The latent discriminator D of PS-SR Eq. 9: VGG-16 on latent frames, its first convolution reading ``c`` channels.

The release (``Wan_SR/models/discriminator_wan.py``) takes torchvision's VGG-16, replaces the first
convolution by one reading the 16 Wan latent channels, and scores each latent frame with
``avgpool(7x7) -> flatten -> Linear(25088, 1024) -> ReLU -> Linear(1024, 1)``. Here the same
feature extractor (VGG-16 configuration ``D``: 13 3x3 convolutions with ReLU, max-pooling after
each of the 5 stages; stage widths and depths configurable for tiny presets) feeds the core's
:class:`~vsr_core.losses.LatentDiscriminator`: the pooled, flattened map of every frame is one
"position" of the feature map ``[B, C*P*P, t]`` and the core's :class:`~vsr_core.losses.PatchHead`
(``C*P*P -> hidden -> 1``, LeakyReLU 0.2) scores it, giving one logit per latent frame ``[B, 1, t]``.
The release averages frame scores before its hinge loss; here the hinge is averaged over frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.losses import LatentDiscriminator

__all__ = ["VGG16_CHANNELS", "VGG16_CONVS", "LatentVGGDiscriminator"]

#: VGG-16 (Simonyan & Zisserman, configuration D): stage widths and 3x3 convolutions per stage.
VGG16_CHANNELS = (64, 128, 256, 512, 512)
VGG16_CONVS = (2, 2, 3, 3, 3)


class LatentVGGDiscriminator(LatentDiscriminator):
    """``latents [B, c, t, h, w]`` -> per-frame logits ``[[B, 1, t]]`` (a list with one map, the core's convention).

    Args:
        in_channels: latent channels ``c`` (16 for the Wan VAE).
        channels, convs: width and number of 3x3 convolutions of each stage (VGG-16 by default);
            every stage ends with 2x2 max-pooling (rounding up, so small tiny-preset latents survive).
        pooled_size: side of the adaptive average pool before the head (7 as VGG / the release).
        hidden_channels: hidden width of the head (1024 as the release's classifier).
    """

    def __init__(
        self,
        in_channels: int = 16,
        channels: Sequence[int] = VGG16_CHANNELS,
        convs: Sequence[int] = VGG16_CONVS,
        pooled_size: int = 7,
        hidden_channels: int = 1024,
    ) -> None:
        if len(channels) != len(convs) or not channels or min(convs) < 1 or min(channels) < 1:
            raise ConfigError(
                f"discriminator stages need matching positive channels and convs, got {channels}, {convs}"
            )
        super().__init__([channels[-1] * pooled_size**2], hidden_channels=hidden_channels)
        layers: list[nn.Module] = []
        width = in_channels
        for out, count in zip(channels, convs, strict=True):
            for _ in range(count):
                layers += [nn.Conv2d(width, out, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                width = out
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        self.in_channels = in_channels
        self.pooled_size = pooled_size
        self.feature_extractor = nn.Sequential(*layers)

    def features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """``[B, c, t, h, w]`` -> one map ``[B, C * P * P, t]``: each latent frame's pooled VGG features."""
        if latents.ndim != 5 or latents.shape[1] != self.in_channels:
            raise ValueError(f"expected latents [B, {self.in_channels}, t, h, w], got shape {list(latents.shape)}")
        b, c, t, h, w = latents.shape
        frames = latents.transpose(1, 2).reshape(b * t, c, h, w)
        pooled = F.adaptive_avg_pool2d(self.feature_extractor(frames), self.pooled_size)
        return [pooled.flatten(1).reshape(b, t, -1).transpose(1, 2)]
