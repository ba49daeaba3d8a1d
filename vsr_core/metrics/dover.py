"""DOVER: no-reference video quality (technical + aesthetic), scoring a whole clip, offline.

Wu et al., ICCV 2023, "Exploring Video Quality Assessment on User Generated Contents from Aesthetic
and Technical Perspectives" (github.com/VQAssessment/DOVER). Our own implementation of the released
inference path (``evaluate_one_video.py`` with ``dover.yml``), loading their ``DOVER.pth`` strictly:

* technical view: 3 clips x 32 frames (frame interval 2, one clip per third of the video) of
  "fragments": a 7x7 grid of 32x32 patches, one random patch per grid cell and per clip, spliced
  into 224x224 (frames whose short side is under 224 px are first upscaled bilinearly, with the
  grid still laid out on the original size, as the released code does);
* aesthetic view: 32 frames spread over the whole video, resized (aspect not kept) to 224x224;
* each view: ``(x - mean) / std`` with the ImageNet constants in 0-255 levels, its backbone
  (:mod:`vsr_core.metrics.dover_backbones`) and an MLP head giving a score map ``[N,1,16,7,7]``
  whose mean is the branch score;
* overall = ``sigmoid(0.6104 * (t - 0.1107) / 0.07355 + 0.3896 * (a + 0.08285) / 0.03774)``
  (their ``fuse_results``: each branch standardised by its mean/std on their training data, then
  weighted) -- a number in (0, 1), higher is better.

Deviations from the released script, each for determinism or faithfulness to training:
the random frame offsets and patch positions come from a ``torch.Generator`` seeded per clip
(the script draws from the unseeded global RNGs, so it gives a slightly different score per run);
the aesthetic resize does not antialias, as torchvision < 0.17 (their ``torch~=1.13``) did for tensors;
input frames are quantised to 8-bit levels first, as decoded video is in the original.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import PretrainedError
from vsr_core.metrics.dover_backbones import AestheticConvNeXt3D, TechnicalSwin3D
from vsr_core.metrics.iqa import MissingWeights, default_weights_dir

__all__ = [
    "aesthetic_view",
    "create_dover_metric",
    "DoverHead",
    "DoverMetric",
    "DoverModel",
    "fragment_origins",
    "fuse_scores",
    "FUSION",
    "load_dover_state",
    "MEAN",
    "normalise",
    "sample_views",
    "segment_frame_indices",
    "STD",
    "technical_view",
    "ViewConfig",
    "WEIGHTS_FILE",
]

WEIGHTS_FILE = "DOVER.pth"
# ImageNet mean/std in 0-255 levels (evaluate_one_video.py).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
# fuse_results: per-branch (offset, scale, weight): overall = sigmoid(sum(w * (s - offset) / scale)).
FUSION = {"technical": (0.1107, 0.07355, 0.6104), "aesthetic": (-0.08285, 0.03774, 0.3896)}


@dataclass(frozen=True)
class ViewConfig:
    """Sampling of the two views; the defaults are ``dover.yml`` (the only setting the weights were trained for).

    Attributes:
        grid: fragments per side (7). patch: fragment side in px (32); the fragment view is grid*patch px.
        clip_len: frames per clip (32). interval: frame step inside a technical clip (2).
        num_clips: technical clips (3), one per equal part of the video.
        size: aesthetic view side in px (224).
    """

    grid: int = 7
    patch: int = 32
    clip_len: int = 32
    interval: int = 2
    num_clips: int = 3
    size: int = 224


class DoverHead(nn.Module):
    """Point-wise MLP ``[N,768,D,H,W]`` -> score map ``[N,1,D,H,W]`` (1x1x1 convs 768 -> 64 -> GELU -> 1)."""

    def __init__(self, in_channels: int = 768, hidden: int = 64) -> None:
        super().__init__()
        self.fc_hid = nn.Conv3d(in_channels, hidden, 1)
        self.fc_last = nn.Conv3d(hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_last(F.gelu(self.fc_hid(x)))


class DoverModel(nn.Module):
    """Both branches; attribute names are the top-level keys of ``DOVER.pth``."""

    def __init__(self) -> None:
        super().__init__()
        self.technical_backbone = TechnicalSwin3D()
        self.aesthetic_backbone = AestheticConvNeXt3D()
        self.technical_head = DoverHead()
        self.aesthetic_head = DoverHead()

    def forward(self, technical: torch.Tensor, aesthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised views ``[Nt,3,T,H,W]``, ``[Na,3,T,H,W]`` -> score maps ``[Nt,1,T/2,H/32,W/32]``, ``[Na,1,...]``."""
        return (
            self.technical_head(self.technical_backbone(technical)),
            self.aesthetic_head(self.aesthetic_backbone(aesthetic)),
        )


def fuse_scores(technical: float, aesthetic: float) -> float:
    """DOVER's overall score in (0, 1) from the raw branch scores (``fuse_results`` in their script)."""
    x = sum(w * (s - off) / scale for s, (off, scale, w) in zip((technical, aesthetic), FUSION.values()))
    return float(torch.sigmoid(torch.tensor(x, dtype=torch.float64)))


def segment_frame_indices(
    num_frames: int, segments: int, length: int, interval: int, generator: torch.Generator
) -> torch.Tensor:
    """``[segments*length]`` frame indices: per equal segment, ``length`` frames ``interval`` apart from a random start.

    Segment ``i`` starts at ``num_frames // segments * i``; when the segment is longer than
    ``length * interval`` the start moves by a uniform offset in ``[0, seg - length*interval)``.
    Indices past the end wrap around (modulo ``num_frames``), so short clips repeat frames.
    (DOVER's ``UnifiedFrameSampler``.)
    """
    if num_frames < 1:
        raise ValueError("DOVER needs at least one frame")
    seg = num_frames // segments
    starts = torch.arange(segments) * seg
    if seg > length * interval:
        starts = starts + torch.randint(0, seg - length * interval, (segments,), generator=generator)
    idx = starts[:, None] + torch.arange(length)[None] * interval
    return idx.flatten() % num_frames


def fragment_origins(
    size: int, grid: int, patch: int, chunks: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fragment starts along one axis of ``size`` px: cell bases ``[grid]`` and jitter ``[grid, grid, chunks]``.

    Cell ``i`` starts at ``min(size // grid * i, size - patch)``; when a cell is wider than the
    patch, each fragment (grid cell ``(i, j)``, clip chunk ``t``) adds its own uniform offset in
    ``[0, size // grid - patch)``. Call once for rows and once for columns (both jitters are
    indexed ``[i, j, t]``, as in DOVER's ``get_spatial_fragments``).
    """
    cell = size // grid
    base = torch.tensor([min(cell * i, size - patch) for i in range(grid)])
    if cell > patch:
        jitter = torch.randint(0, cell - patch, (grid, grid, chunks), generator=generator)
    else:
        jitter = torch.zeros(grid, grid, chunks, dtype=torch.long)
    return base, jitter


def technical_view(frames: torch.Tensor, cfg: ViewConfig, generator: torch.Generator) -> torch.Tensor:
    """Fragments ``[3,T,H,W]`` (0-255, already temporally sampled, T = num_clips*clip_len) -> ``[3,T,g*p,g*p]``.

    Each chunk of ``clip_len`` frames gets its own patch positions; patch ``(i, j)`` lands at
    ``(i*p, j*p)``. Frames smaller than the fragment view are first upscaled by the ratio that
    makes the shorter side fit (bilinear, truncated to 8-bit levels, as the released uint8 path).
    The grid and jitter range are then still those of the original size (the released code
    computes them before upscaling), so patches come from the top-left part of the upscaled frame.
    """
    side = cfg.grid * cfg.patch
    h, w = frames.shape[-2:]  # kept through the upscale on purpose: see the docstring
    ratio = min(h / side, w / side)
    if ratio < 1:
        frames = F.interpolate(frames / 255.0, scale_factor=1 / ratio, mode="bilinear")
        frames = (frames * 255.0).floor()  # their ``.type_as(uint8)`` truncates
    chunks = frames.shape[1] // cfg.clip_len
    # Draw order (rows, then columns) is part of the seeded result; keep it.
    hbase, hjit = fragment_origins(h, cfg.grid, cfg.patch, chunks, generator)
    wbase, wjit = fragment_origins(w, cfg.grid, cfg.patch, chunks, generator)
    out = frames.new_zeros(frames.shape[0], frames.shape[1], side, side)
    p = cfg.patch
    for t in range(chunks):
        ts = slice(t * cfg.clip_len, (t + 1) * cfg.clip_len)
        for i in range(cfg.grid):
            for j in range(cfg.grid):
                y0, x0 = int(hbase[i] + hjit[i, j, t]), int(wbase[j] + wjit[i, j, t])
                out[:, ts, i * p : (i + 1) * p, j * p : (j + 1) * p] = frames[:, ts, y0 : y0 + p, x0 : x0 + p]
    return out


def aesthetic_view(frames: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Resize ``[3,T,H,W]`` (0-255) to ``[3,T,size,size]``: bilinear, no antialias, rounded to 8-bit levels."""
    out = F.interpolate(
        frames.transpose(0, 1), size=(cfg.size, cfg.size), mode="bilinear", align_corners=False, antialias=False
    )
    return out.round().clamp(0, 255).transpose(0, 1)


def normalise(view: torch.Tensor, clips: int) -> torch.Tensor:
    """``[3,clips*L,H,W]`` in 0-255 -> ``[clips,3,L,H,W]`` standardised with the ImageNet mean/std."""
    mean = torch.tensor(MEAN, dtype=view.dtype, device=view.device).view(3, 1, 1, 1)
    std = torch.tensor(STD, dtype=view.dtype, device=view.device).view(3, 1, 1, 1)
    view = (view - mean) / std
    return view.reshape(3, clips, -1, *view.shape[-2:]).transpose(0, 1)


def sample_views(
    video: torch.Tensor, cfg: ViewConfig = ViewConfig(), seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip ``[3,T,H,W]`` in ``[-1,1]`` -> normalised views ``([num_clips,3,clip_len,S,S], [1,3,clip_len,s,s])``.

    ``S = grid*patch`` (224); ``s = size`` (224). Sampling is seeded: the same clip and seed give the same views.
    """
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"DOVER expects a clip [3,T,H,W], got {tuple(video.shape)}")
    g = torch.Generator().manual_seed(seed)
    n = video.shape[1]
    # 8-bit levels, as the decoded uint8 frames DOVER was trained on.
    levels = (video.detach().float().cpu().clamp(-1, 1) + 1).mul(127.5).round()
    tech_idx = segment_frame_indices(n, cfg.num_clips, cfg.clip_len, cfg.interval, g)
    # Aesthetic: clip_len segments of one frame each (their sampler with fsize_t=1, fragments_t=clip_len).
    aes_idx = segment_frame_indices(n, cfg.clip_len, 1, cfg.interval, g)
    technical = technical_view(levels[:, tech_idx], cfg, g)
    aesthetic = aesthetic_view(levels[:, aes_idx], cfg)
    return normalise(technical, cfg.num_clips), normalise(aesthetic, 1)


def load_dover_state(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` into ``model`` requiring exactly its keys and shapes.

    Raises:
        PretrainedError: one line naming the file and the first missing, unexpected or mis-shaped key.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or torch errors alike: say which file and why, in one line
        raise PretrainedError(
            f"{path}: cannot read DOVER weights ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    if not isinstance(state, dict):
        raise PretrainedError(f"{path}: expected a DOVER state dict, got {type(state).__name__}")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        first = f"missing key {missing[0]}" if missing else f"unexpected key {unexpected[0]}"
        raise PretrainedError(
            f"{path} is not DOVER.pth: {first} ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise PretrainedError(
                f"{path} is not DOVER.pth: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    model.load_state_dict(state, strict=True)


class DoverMetric:
    """DOVER on one clip: ``video [1,3,T,H,W]`` in ``[-1,1]`` -> ``{"dover", "dover_technical", "dover_aesthetic"}``.

    ``dover`` is the fused overall score in (0, 1); the branch scores are the raw head outputs
    (means of the score maps), comparable between clips but on no fixed scale. Higher is better.

    Args:
        weights: path of ``DOVER.pth``. device: where the model runs.
        views: sampling (defaults = the trained setting). seed: per-clip sampling seed.
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        device: str | torch.device = "cpu",
        views: ViewConfig = ViewConfig(),
        seed: int = 0,
    ) -> None:
        self.device, self.views, self.seed = torch.device(device), views, seed
        self.model = DoverModel()
        load_dover_state(self.model, weights)
        self.model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, video: torch.Tensor) -> dict[str, float]:
        if video.ndim != 5 or video.shape[0] != 1 or video.shape[1] != 3:
            raise ValueError(f"DOVER scores one clip [1,3,T,H,W], got {tuple(video.shape)}")
        technical, aesthetic = sample_views(video[0], self.views, self.seed)
        t_map, a_map = self.model(technical.to(self.device), aesthetic.to(self.device))
        t, a = t_map.mean().item(), a_map.mean().item()
        return {"dover": fuse_scores(t, a), "dover_technical": t, "dover_aesthetic": a}


def create_dover_metric(
    weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu", **kwargs
) -> DoverMetric:
    """:class:`DoverMetric` from ``<weights_dir>/DOVER.pth`` (default dir: :func:`~vsr_core.metrics.iqa.default_weights_dir`).

    Raises:
        MissingWeights: the file is not there (the suite then reports ``dover`` as skipped with this path).
        PretrainedError: the file is there but is not DOVER's state dict.
    """
    path = Path(weights_dir or default_weights_dir()) / WEIGHTS_FILE
    if not path.is_file():
        raise MissingWeights(str(path))
    return DoverMetric(path, device, **kwargs)
