"""Discriminators: a temporal PatchGAN for pixel videos and a base class for latent discriminators.

:class:`TemporalPatchDiscriminator` is pix2pix's N-layer PatchGAN (Isola et al. 2017; the "temporal
PatchGAN" DiffVSR trains its TE-3DVAE decoder against) with 3D convolutions: it scores every
space-time patch of a video ``[B, 3, T, H, W]`` with one logit, ``[B, 1, t, h, w]``. With the defaults
(3 layers, kernels ``(3, 4, 4)``) a logit sees 11 frames x 70 x 70 pixels, pix2pix's 70 x 70 patches.

:class:`LatentDiscriminator` is the shape of PS-SR's latent discriminator (Eq. 9): a backbone yields
feature maps of a latent (e.g. intermediate DiT blocks), and one small trainable head per map turns
every position into a logit. Subclasses implement :meth:`LatentDiscriminator.features`.

Spectral normalisation (Miyato et al. 2018) uses ``torch.nn.utils.parametrizations.spectral_norm``:
the weights are then stored as ``<layer>.parametrizations.weight.original`` (+ the power-iteration
vectors ``_u`` / ``_v``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from vsr_core.errors import ConfigError

__all__ = ["NORMS", "LatentDiscriminator", "PatchHead", "TemporalPatchDiscriminator"]

NORMS = ("group", "batch", "none")


def _maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(layer) if enabled else layer


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    return nn.Identity()


class TemporalPatchDiscriminator(nn.Module):
    """3D PatchGAN: ``[B, in_channels, T, H, W]`` -> patch logits ``[B, 1, t, h, w]``.

    Layers (pix2pix ``NLayerDiscriminator`` in 3D): a conv of stride ``(s_t, 2, 2)`` to
    ``base_channels`` and LeakyReLU(0.2); ``num_layers - 1`` more such convs doubling the width (up to
    ``max_channels``), each with ``norm``; one stride-1 conv with ``norm``; a stride-1 conv to one
    channel. Kernels are ``kernel_size`` ``(k_t, k, k)`` with padding ``(k_t // 2, (k - 1) // 2, ...)``;
    the first ``temporal_downsample`` convs also halve time (``s_t = 2``), the others keep it.
    With ``H = W = 64``, ``T = 8`` and the defaults the output is ``[B, 1, 8, 6, 6]``.

    Args:
        norm: ``"group"`` (GroupNorm, independent of the batch size: video batches are small),
            ``"batch"`` (pix2pix's BatchNorm) or ``"none"`` (usual with ``spectral_norm``).
        spectral_norm: spectral-normalise every convolution.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        max_channels: int = 512,
        kernel_size: tuple[int, int, int] = (3, 4, 4),
        temporal_downsample: int = 0,
        spectral_norm: bool = False,
        norm: str = "group",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"unknown discriminator norm {norm!r}; choose one of {', '.join(NORMS)}")
        if num_layers < 1 or base_channels < 1 or not 0 <= temporal_downsample <= num_layers:
            raise ConfigError(
                f"TemporalPatchDiscriminator needs num_layers >= 1, base_channels >= 1 and 0 <= temporal_downsample "
                f"<= num_layers; got {num_layers}, {base_channels}, {temporal_downsample}"
            )
        k_t, k_h, k_w = kernel_size
        padding = (k_t // 2, (k_h - 1) // 2, (k_w - 1) // 2)
        self.in_channels, self.spectral_norm, self.norm = in_channels, spectral_norm, norm

        def conv(c_in: int, c_out: int, stride: tuple[int, int, int], bias: bool) -> nn.Module:
            return _maybe_sn(nn.Conv3d(c_in, c_out, kernel_size, stride, padding, bias=bias), spectral_norm)

        widths = [min(base_channels * 2**i, max_channels) for i in range(num_layers + 1)]
        layers: list[nn.Module] = [conv(in_channels, widths[0], (2 if temporal_downsample > 0 else 1, 2, 2), True)]
        layers.append(nn.LeakyReLU(0.2))
        for i in range(1, num_layers + 1):
            stride = (2 if i < temporal_downsample else 1, 2, 2) if i < num_layers else (1, 1, 1)
            layers += [
                conv(widths[i - 1], widths[i], stride, norm == "none"),
                _norm(norm, widths[i]),
                nn.LeakyReLU(0.2),
            ]
        layers.append(conv(widths[-1], 1, (1, 1, 1), True))
        self.layers = nn.Sequential(*layers)

    @property
    def convolutions(self) -> list[nn.Conv3d]:
        """The convolutions in order (spectral-normalised ones included)."""
        return [m for m in self.layers if isinstance(m, nn.Conv3d)]

    @property
    def receptive_field(self) -> tuple[int, int, int]:
        """Frames, rows and columns of input one logit depends on (``r <- (r - 1) s + k`` from the last conv back)."""
        field = [1, 1, 1]
        for layer in reversed(self.convolutions):
            field = [(r - 1) * s + k for r, s, k in zip(field, layer.stride, layer.kernel_size, strict=True)]
        return field[0], field[1], field[2]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video`` ``[B, in_channels, T, H, W]`` (pixels in [-1, 1], or latents) -> logits ``[B, 1, t, h, w]``."""
        if video.ndim != 5 or video.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, T, H, W], got shape {list(video.shape)}")
        return self.layers(video)


class PatchHead(nn.Module):
    """A per-position MLP ``C -> hidden -> 1`` on channel-first features ``[B, C, *S]`` -> logits ``[B, 1, *S]``."""

    def __init__(self, channels: int, hidden_channels: int = 256, spectral_norm: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.fc1 = _maybe_sn(nn.Linear(channels, hidden_channels), spectral_norm)
        self.act = nn.LeakyReLU(0.2)
        self.fc2 = _maybe_sn(nn.Linear(hidden_channels, 1), spectral_norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim < 2 or features.shape[1] != self.channels:
            raise ValueError(
                f"expected channel-first features [B, {self.channels}, ...], got shape {list(features.shape)}"
            )
        return self.fc2(self.act(self.fc1(features.movedim(1, -1)))).movedim(-1, 1)


class LatentDiscriminator(nn.Module, abc.ABC):
    """Base of discriminators over a backbone's features: one :class:`PatchHead` per feature map.

    A subclass builds its backbone (frozen or trainable, its choice) and implements
    :meth:`features`, returning ``len(feature_channels)`` channel-first maps ``[B, C_i, ...]``
    (DiT tokens ``[B, N, C]`` are permuted to ``[B, C, N]``). ``forward`` returns the list of patch
    logits ``[B, 1, ...]``, one per map, which :func:`~vsr_core.losses.adversarial.d_loss` /
    :func:`~vsr_core.losses.adversarial.g_loss` accept as they are (mean over heads).
    """

    def __init__(
        self, feature_channels: Sequence[int], hidden_channels: int = 256, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        if not feature_channels:
            raise ConfigError("a LatentDiscriminator needs at least one feature map (feature_channels is empty)")
        self.feature_channels = list(feature_channels)
        self.heads = nn.ModuleList(PatchHead(c, hidden_channels, spectral_norm) for c in self.feature_channels)

    @abc.abstractmethod
    def features(self, latents: torch.Tensor, *args: Any, **kwargs: Any) -> Sequence[torch.Tensor]:
        """Feature maps ``[B, C_i, ...]`` of ``latents`` ``[B, c, t, h, w]`` (extra arguments: timestep, condition)."""

    def forward(self, latents: torch.Tensor, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        """Patch logits ``[B, 1, ...]`` per feature map."""
        maps = list(self.features(latents, *args, **kwargs))
        if len(maps) != len(self.heads):
            raise ValueError(f"{type(self).__name__}.features returned {len(maps)} maps for {len(self.heads)} heads")
        return [head(f) for head, f in zip(self.heads, maps, strict=True)]
