"""Temporal consistency metrics: flow warping error (E*warp) and a global flicker score.

Videos are ``[B,3,T,H,W]`` in ``[-1,1]``; every metric returns ``[B]``. Optical flow comes from a
pluggable :class:`FlowEstimator`; :func:`default_flow_estimator` picks torchvision RAFT when its
weights file is already on disk (never downloads) and otherwise :class:`HornSchunckFlow`, a
weight-free classical estimator, run on frames of at most :data:`DEFAULT_FLOW_SIZE` px (larger
frames are averaged down by an integer factor, the flow scaled back up). The estimator's ``name``
is reported next to the score because E*warp values are only comparable for the same estimator.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_FLOW_SIZE",
    "default_flow_estimator",
    "flicker",
    "FlowEstimator",
    "HornSchunckFlow",
    "neighbour_average",
    "RAFT_WEIGHTS_FILE",
    "RaftFlow",
    "warp",
    "warping_error",
]


class FlowEstimator(Protocol):
    """Backward flow ``(frame_a [N,3,H,W], frame_b [N,3,H,W]) in [0,1] -> flow [N,2,H,W]`` in pixels.

    ``frame_b`` sampled at ``p + flow(p)`` gives ``frame_a`` at ``p``.
    """

    name: str

    def __call__(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor: ...


def warp(frames: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``frames [N,C,H,W]`` by ``flow [N,2,H,W]``; returns (warped, valid mask [N,1,H,W])."""
    _, _, h, w = frames.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=frames.device, dtype=frames.dtype),
        torch.arange(w, device=frames.device, dtype=frames.dtype),
        indexing="ij",
    )
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    grid = torch.stack((2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1), dim=-1)
    warped = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)
    valid = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).unsqueeze(1).to(frames.dtype)
    return warped, valid


def neighbour_average(flow: torch.Tensor) -> torch.Tensor:
    """Horn-Schunck's local flow average ``[N,2,H,W] -> [N,2,H,W]``: the 3x3 kernel ``[[1,2,1],[2,0,2],[1,2,1]] / 12``.

    Edges replicate the border. Computed as the separable ``[1,2,1]`` x ``[1,2,1]`` sum minus 4x the
    centre, with slices rather than ``conv2d``: a one-channel 3x3 convolution takes CPU convolution
    libraries seconds per call at 704x576, which made the 60 Jacobi iterations of a level take minutes.
    """
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    rows = padded[..., :-2, :] + 2 * padded[..., 1:-1, :] + padded[..., 2:, :]
    full = rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]
    return (full - 4 * flow) / 12.0


def _gray(frames: torch.Tensor) -> torch.Tensor:
    weights = frames.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (frames * weights).sum(1, keepdim=True)


class HornSchunckFlow:
    """Weight-free coarse-to-fine Horn-Schunck optical flow (pure torch, runs anywhere).

    Args:
        levels: pyramid levels (each halves the size; stops at 16 px).
        iterations: Jacobi iterations per level.
        alpha: smoothness weight (on intensities in [0, 1]).
        max_size: estimate on frames whose longer side is at most this many px: larger frames are
            area-averaged by the smallest integer factor ``k`` that fits, and the flow is upsampled
            back (bilinear, displacements x ``k``). None = always at full size.
    """

    def __init__(
        self, levels: int = 4, iterations: int = 60, alpha: float = 0.05, max_size: int | None = None
    ) -> None:
        if max_size is not None and max_size < 16:
            raise ValueError(f"max_size must be at least 16 px, got {max_size}")
        self.levels, self.iterations, self.alpha, self.max_size = levels, iterations, alpha, max_size

    @property
    def name(self) -> str:
        """``horn-schunck``, with the working size when it is bounded (scores differ between settings)."""
        return (
            "horn-schunck"
            if self.max_size is None
            else f"horn-schunck (estimated on frames of at most {self.max_size} px)"
        )

    def _refine(self, a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        warped, _ = warp(b, flow)
        gy, gx = torch.gradient(warped, dim=(2, 3))
        it = warped - a
        du = torch.zeros_like(flow)
        denom = self.alpha**2 + gx**2 + gy**2
        for _ in range(self.iterations):
            mean = neighbour_average(du)
            common = (gx * mean[:, :1] + gy * mean[:, 1:] + it) / denom
            du = torch.cat((mean[:, :1] - gx * common, mean[:, 1:] - gy * common), dim=1)
        return flow + du

    @torch.no_grad()
    def __call__(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        a, b = _gray(frame_a.float()), _gray(frame_b.float())
        h, w = a.shape[-2:]
        factor = 1 if self.max_size is None else -(-max(h, w) // self.max_size)
        if factor > 1:
            # Average whole k x k blocks (replicate-padded up to a multiple of k), estimate, scale back.
            pad = (0, (-w) % factor, 0, (-h) % factor)
            small = [F.avg_pool2d(F.pad(x, pad, mode="replicate"), factor) for x in (a, b)]
            flow = self._estimate(*small)
            flow = F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False) * factor
            return flow[..., :h, :w]
        return self._estimate(a, b)

    def _estimate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pyramid = [(a, b)]
        while len(pyramid) < self.levels and min(pyramid[-1][0].shape[-2:]) >= 32:
            pa, pb = pyramid[-1]
            pyramid.append((F.avg_pool2d(pa, 2), F.avg_pool2d(pb, 2)))
        flow = torch.zeros(a.shape[0], 2, *pyramid[-1][0].shape[-2:], device=a.device)
        for level, (pa, pb) in enumerate(reversed(pyramid)):
            if level > 0:  # upsample the coarser estimate; displacements double with the size
                scale = pa.shape[-1] / flow.shape[-1]
                flow = F.interpolate(flow, size=pa.shape[-2:], mode="bilinear", align_corners=False) * scale
            flow = self._refine(pa, pb, flow)
        return flow


RAFT_WEIGHTS_FILE = "raft_small_C_T_V2-01064c6d.pth"


class RaftFlow:
    """torchvision RAFT-small loaded from a local weights file (no download)."""

    name = "raft-small"

    def __init__(self, weights_path: str | os.PathLike) -> None:
        from torchvision.models.optical_flow import raft_small

        self.model = raft_small(weights=None)
        self.model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.model.eval()

    @torch.no_grad()
    def __call__(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        self.model.to(frame_a.device)
        h, w = frame_a.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8  # RAFT needs sizes divisible by 8
        a = F.pad(frame_a.float() * 2 - 1, (0, pw, 0, ph), mode="replicate")
        b = F.pad(frame_b.float() * 2 - 1, (0, pw, 0, ph), mode="replicate")
        return self.model(a, b)[-1][..., :h, :w]


# The working size of the default Horn-Schunck flow: 704x576 runs at 352x288, 1080p at 384x216.
DEFAULT_FLOW_SIZE = 384


def default_flow_estimator(weights_dir: str | os.PathLike | None = None) -> FlowEstimator:
    """RAFT-small when ``raft_small_C_T_V2-01064c6d.pth`` is in ``weights_dir`` or ``<torch hub>/checkpoints``,
    else Horn-Schunck on frames of at most :data:`DEFAULT_FLOW_SIZE` px."""
    hub = Path(torch.hub.get_dir())
    roots = ([Path(weights_dir)] if weights_dir else []) + [hub, hub / "checkpoints"]
    for candidate in (root / RAFT_WEIGHTS_FILE for root in roots):
        if candidate.is_file():
            return RaftFlow(candidate)
    return HornSchunckFlow(max_size=DEFAULT_FLOW_SIZE)


def _unit_frames(video: torch.Tensor) -> torch.Tensor:
    return video.float().clamp(-1, 1).add(1).div(2).permute(0, 2, 1, 3, 4)  # [B,T,3,H,W]


def warping_error(
    video: torch.Tensor,
    flow: FlowEstimator | None = None,
    flow_video: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """E*warp per clip, ``[B]``, in units of 1e-3 (as papers print it).

    Mean over consecutive pairs of the masked MSE (on [0, 1]) between frame ``t`` and frame ``t+1``
    warped back with the flow ``t -> t+1``. The flow is estimated on ``flow_video`` (e.g. the ground
    truth, so a wrong restoration cannot make its own flow) or on ``video`` itself. A 1-frame clip
    scores 0. ``progress(pairs_done)`` is called after each chunk of flow pairs.
    """
    flow = flow or HornSchunckFlow()
    frames = _unit_frames(video)
    source = frames if flow_video is None else _unit_frames(flow_video)
    b, t = frames.shape[:2]
    if t < 2:
        return torch.zeros(b)
    a, nxt = frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1)
    fa, fb = source[:, :-1].flatten(0, 1), source[:, 1:].flatten(0, 1)
    chunks = []
    for i in range(0, fa.shape[0], 8):
        chunks.append(flow(fa[i : i + 8], fb[i : i + 8]))
        if progress is not None:
            progress(min(i + 8, fa.shape[0]))
    flows = torch.cat(chunks)
    warped, valid = warp(nxt, flows.to(nxt))
    err = ((warped - a) ** 2 * valid).flatten(1).sum(1) / (valid.flatten(1).sum(1) * 3).clamp_min(1)
    return (err.view(b, t - 1).mean(1) * 1e3).cpu()


def flicker(video: torch.Tensor) -> torch.Tensor:
    """Global flicker per clip, ``[B]``: mean |change of mean frame brightness| between consecutive frames, in 0-255 levels."""
    means = _unit_frames(video).mean(dim=(2, 3, 4))  # [B,T]
    if means.shape[1] < 2:
        return torch.zeros(means.shape[0])
    return ((means[:, 1:] - means[:, :-1]).abs().mean(1) * 255).cpu()
