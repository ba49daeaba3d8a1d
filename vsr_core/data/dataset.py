"""ClipDataset: one short, cropped clip per sample from a :class:`VideoSource`.

A sample is ``{"hq": uint8 [3, T, H, W], "lq": uint8 [3, T, H/s, W/s] (paired sources only),
"prompt": str, "key": str, "index": int}``. Converting to float and degrading ``hq`` into ``lq``
happens later, on the training device (:class:`~vsr_core.data.datamodule.VideoDataModule`).

Training (``random=True``): the dataset index is a *sample position* in an endless stream, not a
clip number. Position ``p`` picks clip ``perm_e[p % n]`` with ``e = p // n`` (a fresh seeded
permutation per pass, so every clip appears once per pass) and draws its temporal start, temporal
stride and crop offset from a generator seeded by ``(seed, p)`` alone: a sample depends on
nothing but the seed and its position, which makes runs reproducible and resumable.

Evaluation (``random=False``): index ``i`` is clip ``i``: its first frames at the smallest
stride, centre crop (or the whole frame when ``crop_size`` is None).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from vsr_core.data.sources import DataWarning, VideoItem, VideoSource
from vsr_core.data.video_io import open_video
from vsr_core.errors import ConfigError, DataError, VideoError

__all__ = ["ClipDataset", "ClipPlan"]

# Salts keep the clip-order and per-sample generators independent of each other.
_ORDER_SALT = 0x0C11
_SAMPLE_SALT = 0x5A3E


@dataclass(frozen=True)
class ClipPlan:
    """Which frames and pixels one sample takes: HQ rows ``top:top+height``, columns
    ``left:left+width``, frames ``start, start+stride, ...`` (``frames`` of them). For paired items
    the LQ window is the same divided by the scale."""

    item: int
    start: int
    stride: int
    top: int
    left: int
    height: int
    width: int


class ClipDataset(Dataset):
    """Random (training) or deterministic (evaluation) clips of ``clip_frames`` frames.

    ``crop_size`` is the square HQ crop (a multiple of ``scale``); None takes whole frames (cut
    to a multiple of ``scale``; evaluation only, sizes then vary per clip). ``stride_range`` is
    the inclusive range of temporal strides drawn in training. Clips too short or too small are
    skipped, all of them reported in one :class:`DataWarning` (how many, which, why, and for
    evaluation clips smaller than the crop how to keep them); :class:`DataError` if none remain.
    ``decode_threads`` is FFmpeg's thread count per decoder (1 suits several loader workers).
    """

    def __init__(
        self,
        source: VideoSource | Sequence[VideoItem],
        clip_frames: int = 8,
        crop_size: int | None = 64,
        stride_range: tuple[int, int] = (1, 1),
        scale: int = 1,
        random: bool = True,
        seed: int = 0,
        decode_threads: int = 1,
    ) -> None:
        lo, hi = stride_range
        if clip_frames < 1:
            raise ConfigError(f"clip_frames must be >= 1 (got {clip_frames})")
        if lo < 1 or hi < lo:
            raise ConfigError(f"stride_range must be (lo, hi) with 1 <= lo <= hi (got {tuple(stride_range)})")
        if scale < 1:
            raise ConfigError(f"scale must be >= 1 (got {scale})")
        if crop_size is not None and (crop_size < scale or crop_size % scale):
            nearest = max(1, round(crop_size / scale)) * scale
            raise ConfigError(f"crop_size {crop_size} must be a positive multiple of scale {scale}; e.g. {nearest}")
        if crop_size is None and random:
            raise ConfigError("random training clips need a crop_size (batched clips must share one size)")
        self.clip_frames = clip_frames
        self.crop_size = crop_size
        self.stride_range = (int(lo), int(hi))
        self.scale = scale
        self.random = random
        self.seed = seed
        self.decode_threads = decode_threads
        items = list(source.items() if isinstance(source, VideoSource) else source)
        self.items = self._usable(items)
        self._perm_cache: tuple[int, np.ndarray] | None = None

    # -- filtering -----------------------------------------------------------------------------
    def _hq_extent(self, item: VideoItem) -> tuple[int, int]:
        """The HQ area samples can use: for pairs, the LQ size times the scale."""
        if item.lq_path is not None:
            return item.lq_height * self.scale, item.lq_width * self.scale
        return item.height, item.width

    def _problem(self, item: VideoItem) -> str:
        s = self.scale
        lq_h, lq_w = item.lq_height, item.lq_width
        # HQ may exceed LQ x scale by up to scale - 1 pixels (floor-divided LQ); it is cut to match.
        fits = item.lq_path is None or (
            lq_h * s <= item.height < (lq_h + 1) * s and lq_w * s <= item.width < (lq_w + 1) * s
        )
        if not fits:
            return f"HQ {item.width}x{item.height} is not {s}x its LQ {lq_w}x{lq_h}; set scale to the pair's factor"
        need = (self.clip_frames - 1) * self.stride_range[0] + 1
        if item.num_frames < need:
            return (
                f"has {item.num_frames} frames, fewer than the {need} a clip needs "
                f"(clip_frames={self.clip_frames}, stride {self.stride_range[0]})"
            )
        h, w = self._hq_extent(item)
        c = self.crop_size
        if c is not None and (h < c or w < c):
            return f"frames are {w}x{h}, smaller than crop_size={c}"
        if c is None and (h < s or w < s):
            return f"frames are {w}x{h}, smaller than the scale {s}"
        return ""

    def _usable(self, items: list[VideoItem]) -> list[VideoItem]:
        if not items:
            raise DataError("the data source lists no clips; point it at videos or frame folders")
        usable, reasons = [], []
        for item in items:
            problem = self._problem(item)
            if problem:
                reasons.append(f"{item.key} {problem}")
            else:
                usable.append(item)
        if not usable:
            raise DataError(
                f"none of the {len(items)} clips is usable ({reasons[0]}"
                + (f"; and {len(reasons) - 1} more" if len(reasons) > 1 else "")
                + "); lower clip_frames/crop_size/stride or use longer, larger videos"
            )
        if reasons:
            warnings.warn(self._skipped_message(reasons, len(items)), DataWarning, stacklevel=3)
        return usable

    def _skipped_message(self, reasons: list[str], total: int) -> str:
        """One line: ``evaluation data: skipping 2 of 6 clips: a ...; b ... (hint)``."""
        kind = "training" if self.random else "evaluation"
        shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
        hint = ""
        if any("smaller than crop_size" in r for r in reasons):
            hint = (
                " (set --data.val_crop_size 0 to evaluate whole frames, or a smaller one)"
                if not self.random
                else " (lower --data.crop_size to train on them)"
            )
        return f"{kind} data: skipping {len(reasons)} of {total} clips: {shown}{hint}"

    # -- planning ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            rng = np.random.default_rng([_ORDER_SALT, self.seed, epoch])
            self._perm_cache = (epoch, rng.permutation(len(self.items)))
        return self._perm_cache[1]

    def plan(self, index: int) -> ClipPlan:
        """Which clip, frames and crop sample ``index`` takes (a pure function of seed and index)."""
        if index < 0:
            raise IndexError(f"sample index must be >= 0 (got {index})")
        if not self.random:
            if index >= len(self.items):
                raise IndexError(f"clip index {index} out of range for {len(self.items)} clips")
            return self._centre_plan(index)
        n = len(self.items)
        item_idx = int(self._order(index // n)[index % n])
        return self._random_plan(item_idx, np.random.default_rng([_SAMPLE_SALT, self.seed, index]))

    def _random_plan(self, item_idx: int, rng: np.random.Generator) -> ClipPlan:
        item = self.items[item_idx]
        lo, hi = self.stride_range
        max_stride = max(lo, (item.num_frames - 1) // max(self.clip_frames - 1, 1))
        stride = int(rng.integers(lo, min(hi, max_stride) + 1))
        span = (self.clip_frames - 1) * stride + 1
        start = int(rng.integers(0, item.num_frames - span + 1))
        h, w = self._hq_extent(item)
        c, s = self.crop_size, self.scale
        # Offsets on the LQ grid (multiples of the scale in HQ) so paired crops align exactly.
        top = int(rng.integers(0, (h - c) // s + 1)) * s
        left = int(rng.integers(0, (w - c) // s + 1)) * s
        return ClipPlan(item_idx, start, stride, top, left, c, c)

    def _centre_plan(self, item_idx: int) -> ClipPlan:
        item = self.items[item_idx]
        h, w = self._hq_extent(item)
        s = self.scale
        ch, cw = (self.crop_size, self.crop_size) if self.crop_size is not None else (h // s * s, w // s * s)
        top = (h - ch) // (2 * s) * s
        left = (w - cw) // (2 * s) * s
        return ClipPlan(item_idx, 0, self.stride_range[0], top, left, ch, cw)

    # -- reading -------------------------------------------------------------------------------
    def _read(self, path: str, plan: ClipPlan, div: int) -> torch.Tensor:
        with open_video(path, threads=self.decode_threads) as reader:
            frames = reader.read_clip(plan.start, self.clip_frames, plan.stride)  # [T, H, W, 3]
        top, left = plan.top // div, plan.left // div
        crop = frames[:, top : top + plan.height // div, left : left + plan.width // div]
        return crop.permute(3, 0, 1, 2).contiguous()  # [3, T, h, w]

    def load(self, plan: ClipPlan) -> dict:
        item = self.items[plan.item]
        sample = {"hq": self._read(item.path, plan, 1), "prompt": item.caption, "key": item.key}
        if item.lq_path is not None:
            sample["lq"] = self._read(item.lq_path, plan, self.scale)
        return sample

    def __getitem__(self, index: int) -> dict:
        plan = self.plan(int(index))
        try:
            sample = self.load(plan)
        except VideoError as err:
            if not self.random or len(self.items) == 1:
                raise
            # A file that probed fine but fails mid-way (truncated/corrupt): warn and take the next
            # clip with this sample's generator, so the result stays a function of (seed, index).
            warnings.warn(f"{err}; using another clip for this sample", DataWarning, stacklevel=2)
            sample = self._fallback(int(index), plan.item)
        sample["index"] = int(index)
        return sample

    def _fallback(self, index: int, bad: int) -> dict:
        n = len(self.items)
        last_err: VideoError | None = None
        for step in range(1, n):
            rng = np.random.default_rng([_SAMPLE_SALT, self.seed, index, step])
            try:
                return self.load(self._random_plan((bad + step) % n, rng))
            except VideoError as err:
                last_err = err
        raise DataError(f"no clip could be read for sample {index}; last error: {last_err}")
