"""Exact temporal shifts: move channel groups of every frame to the neighbouring frame, zeros at the ends.

Two methods use it:

* **DiffVSR** (release config ``temporal_shift_fold_div: 2``, ``temporal_shift_direction: "right"``, applied to
  the keys and values of its shifted attention): frame ``t`` takes the first ``C // 2`` channels from frame
  ``t-1``; frame 0 gets zeros there; the other channels stay.
  ``temporal_shift(x, fold_div=2, direction="right")``.
* **UltraVSR** RTS module (paper eq. 5, ``F_i^Agg = Concat(F_{i-1}^{-1}, F_i^0, F_{i+1}^{1})``): the first third of
  the channels comes from frame ``t-1``, the last third from ``t+1``, the middle third stays; zero padding at
  the sequence boundaries. ``temporal_shift(x, fold_div=3, direction="both")``. The release
  (``RTSConvBlock.shift``) writes its result into ``zeros_like(x)`` and so zeroes the middle third instead:
  ``unshifted="zero"`` reproduces that.

The shift is pure data movement: no arithmetic, so it is exact in any dtype and differentiable.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vsr_core.nn.reshape import clip_count

__all__ = ["TemporalShift", "shift_frames", "temporal_shift"]

Direction = Literal["right", "left", "both"]
Unshifted = Literal["keep", "zero"]


def shift_frames(x: torch.Tensor, offset: int, *, time_dim: int) -> torch.Tensor:
    """Move whole frames along ``time_dim``: ``out[t] = x[t - offset]``, zeros where ``t - offset`` is outside.

    ``offset=+1``: frame ``t`` receives frame ``t-1`` (content moves forward in time, frame 0 becomes zeros);
    ``offset=-1``: frame ``t`` receives frame ``t+1`` (the last frame becomes zeros). Same shape as ``x``.
    """
    length = x.shape[time_dim]
    if offset == 0:
        return x
    if abs(offset) >= length:
        return torch.zeros_like(x)
    pad_shape = list(x.shape)
    pad_shape[time_dim] = abs(offset)
    pad = x.new_zeros(pad_shape)
    if offset > 0:
        return torch.cat([pad, x.narrow(time_dim, 0, length - offset)], dim=time_dim)
    return torch.cat([x.narrow(time_dim, -offset, length + offset), pad], dim=time_dim)


def temporal_shift(
    x: torch.Tensor,
    *,
    fold_div: int,
    direction: Direction,
    num_frames: int | None = None,
    channel_dim: int = 1,
    unshifted: Unshifted = "keep",
) -> torch.Tensor:
    """Shift channel groups by one frame; zeros enter at the sequence ends. Same shape as ``x``.

    Layouts: a video ``[B, C, T, H, W]`` (leave ``num_frames`` unset), or any frames-first tensor ``[B*T, ...]``
    with ``num_frames=T`` -- ``[B*T, C, H, W]`` (``channel_dim=1``) or token layouts such as ``[B*T, L, C]``
    (``channel_dim=-1``, as DiffVSR shifts its keys/values). With ``fold = C // fold_div``:

    * ``"right"``: channels ``[0, fold)`` of frame ``t`` come from frame ``t-1``;
    * ``"left"``:  channels ``[0, fold)`` of frame ``t`` come from frame ``t+1``;
    * ``"both"``:  channels ``[0, fold)`` from ``t-1`` and ``[C-fold, C)`` from ``t+1`` (needs ``fold_div >= 2``).

    The remaining channels are kept (``unshifted="keep"``) or zeroed (``"zero"``, UltraVSR's release).
    """
    if direction not in ("right", "left", "both"):
        raise ValueError(f"direction must be 'right', 'left' or 'both', got {direction!r}")
    if unshifted not in ("keep", "zero"):
        raise ValueError(f"unshifted must be 'keep' or 'zero', got {unshifted!r}")
    if num_frames is None:
        if x.dim() != 5:
            raise ValueError(f"a [B, C, T, H, W] video or num_frames is needed, got shape {tuple(x.shape)}")
        if channel_dim != 1:
            raise ValueError("channel_dim applies to frames-first layouts; a video has its channels at dim 1")
        clips, time_dim, c_dim = x, 2, 1
    else:
        # View [B*T, ...] as [B, T, ...]: the channel axis moves one place right (negative indices stay).
        b = clip_count(x, num_frames)
        clips = x.reshape(b, num_frames, *x.shape[1:])
        time_dim = 1
        c_dim = channel_dim + 1 if channel_dim >= 0 else channel_dim
    channels = clips.shape[c_dim]
    fold = channels // fold_div
    if fold < 1 or (direction == "both" and 2 * fold > channels):
        raise ValueError(f"fold_div={fold_div} with direction={direction!r} does not fit {channels} channels")

    if direction == "both":
        sizes, offsets = [fold, channels - 2 * fold, fold], [1, 0, -1]
    else:
        sizes, offsets = [fold, channels - fold], [1 if direction == "right" else -1, 0]
    parts = []
    for part, offset in zip(torch.split(clips, sizes, dim=c_dim), offsets):
        if offset == 0:
            parts.append(part if unshifted == "keep" else torch.zeros_like(part))
        else:
            parts.append(shift_frames(part, offset, time_dim=time_dim))
    out = torch.cat(parts, dim=c_dim)
    return out if num_frames is None else out.reshape(x.shape)


class TemporalShift(nn.Module):
    """Parameter-free module form of :func:`temporal_shift` on a video ``[B, C, T, H, W] -> [B, C, T, H, W]``."""

    def __init__(self, *, fold_div: int, direction: Direction, unshifted: Unshifted = "keep") -> None:
        super().__init__()
        self.fold_div, self.direction, self.unshifted = fold_div, direction, unshifted

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return temporal_shift(video, fold_div=self.fold_div, direction=self.direction, unshifted=self.unshifted)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}, direction={self.direction!r}, unshifted={self.unshifted!r}"
