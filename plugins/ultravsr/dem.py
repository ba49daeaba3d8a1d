"""The degradation estimation module (DEM) of Eq. 2: ``d = DEM(V_LR)`` in ``(0, 1)`` per video.

The paper and release use CLIP-IQA (pyiqa, CLIP RN50): the release scores up to 5 frames of the
bicubic-upsampled input in ``[0, 1]``, taken with ``linspace(0, T - 1, T // 10)``, and averages them. Here
``max(1, T // 10)`` frames are taken, so clips shorter than 10 frames (where the release averages nothing
and gets NaN) are scored on their first frame. Two stand-ins run without weights: ``constant`` and
``tiny`` (a seeded, frozen few-parameter CNN whose output depends on the content).

A :class:`DegradationEstimator` is a helper of training and inference, never a module of the method:
its network is held in a tuple (outside ``state_dict``, ``parameters()`` and ``.to()``), built on first
use, and moves to the video's device itself, so no DEM weight lands in a checkpoint or export.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ultravsr.options import DEMOptions
from ultravsr.presets import CLIP_RN50
from vsr_core.errors import PretrainedError
from vsr_core.metrics import MissingWeights, create_iqa_metric

__all__ = ["DegradationEstimator", "TinyQualityNet", "scored_frames"]

_TINY_SEED = 20250101


def scored_frames(num_frames: int, frame_step: int = 10, max_frames: int = 5) -> torch.Tensor:
    """Indices of the frames the DEM scores: ``linspace(0, T - 1, max(1, T // frame_step)).long()[:max_frames]``."""
    steps = max(1, num_frames // frame_step)
    return torch.linspace(0, num_frames - 1, steps=steps).long()[:max_frames]


class TinyQualityNet(nn.Module):
    """A frozen stand-in for CLIP-IQA: frames ``[N, 3, H, W]`` in ``[0, 1]`` -> scores ``[N]`` in ``(0, 1)``.

    ``sigmoid(w . mean_hw silu(conv(x)) + b)`` with seeded random weights: deterministic for a given input,
    different for different content (so per-video ``d`` and ``t_rec`` paths are exercised), about 0.5.
    """

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_TINY_SEED)
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.head = nn.Linear(4, 1)
        self.requires_grad_(False).eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        features = torch.nn.functional.silu(self.conv(frames)).mean(dim=(2, 3))
        return torch.sigmoid(self.head(features)).squeeze(1)


class DegradationEstimator:
    """``d = DEM(V_LR)`` (Eq. 2) for videos ``[B, 3, T, H, W]`` in ``[-1, 1]`` -> ``[B]`` float32.

    ``kind`` and the frame sampling come from :class:`~ultravsr.options.DEMOptions`. For ``clipiqa`` a missing
    weights file raises one :class:`PretrainedError` line naming it and the ``dem=constant`` fallback.
    """

    def __init__(self, options: DEMOptions) -> None:
        self.options = options
        self._network: tuple[Any, ...] = ()  # built on first use, outside the module tree

    @property
    def kind(self) -> str:
        return self.options.kind

    def check_available(self) -> None:
        """Build the network now (fit calls this so a missing CLIP-IQA file fails before training starts)."""
        self._get(torch.device("cpu"))

    def _get(self, device: torch.device) -> Any:
        if not self._network:
            self._network = (self._build(device),)
        network = self._network[0]
        if isinstance(network, nn.Module):
            network.to(device)
        elif hasattr(network, "to"):
            network.to(device)
        return network

    def _build(self, device: torch.device) -> Any:
        if self.kind == "tiny":
            return TinyQualityNet()
        try:
            metric = create_iqa_metric("clipiqa", device=device)
        except MissingWeights as missing:
            raise PretrainedError(
                f"the DEM (CLIP-IQA) needs its weights file {missing.path}; put the file there "
                "(see docs/metrics.md) or use the constant DEM: --sample dem=constant (restore) or "
                "--model.init_args.dem.kind constant (fit)"
            ) from None
        metric.eval()
        for parameter in metric.parameters():
            parameter.requires_grad_(False)
        return metric

    @torch.no_grad()
    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t = video.shape[:3]
        if self.kind == "constant":
            return torch.full((b,), float(self.options.constant), device=video.device)
        index = scored_frames(t, self.options.frame_step, self.options.max_frames).to(video.device)
        frames = video.index_select(2, index).transpose(1, 2).reshape(-1, *video.shape[1:2], *video.shape[3:])
        frames = ((frames.float() + 1) / 2).clamp(0, 1)  # the release scores [0, 1] pixels
        scores = self._get(video.device)(frames).reshape(b, index.numel()).float()
        return scores.mean(dim=1)

    def parameter_count(self) -> int:
        """Parameters of the DEM network (CLIP RN50 for ``clipiqa``, counted on the meta device; 0 if constant)."""
        if self.kind == "constant":
            return 0
        if self.kind == "tiny":
            return sum(p.numel() for p in TinyQualityNet().parameters())
        from clip.model import CLIP

        with torch.device("meta"):
            return sum(p.numel() for p in CLIP(**CLIP_RN50).parameters())
