"""Output frames from restored windows: the temporal cross-fade, band by band, into finished frames.

Each window arrives as bands of full-width output rows (:func:`~vsr_core.inference.tiles.blend_rows`)
with one blend weight per frame. A frame that a later window also covers is kept as a float
weighted sum; a frame this window finishes is normalised by the weights of every window that
covered it and written straight into its final form (``uint8 [H, W, 3]`` rounded as
:func:`~vsr_core.data.video_io.tensor_to_frames` does, or ``float [3, H, W]``), so no window is ever
held whole in float unless the frame is a single tile.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["FrameAssembler"]


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``float [3, r, W]`` in [-1, 1] -> ``uint8 [r, W, 3]`` (the rounding of ``tensor_to_frames``)."""
    return (x.float().clamp(-1.0, 1.0) + 1.0).mul(127.5).round().to(torch.uint8).permute(1, 2, 0)


class FrameAssembler:
    """Cross-fade overlapping windows of a ``num_frames``-frame video of output size ``height x width``.

    ``add_window(start, weights, next_start, bands)`` returns the frames that became final, in order
    (``uint8 [H, W, 3]`` on the CPU, or ``float [3, H, W]`` in [-1, 1] with ``as_uint8=False``).
    ``bands`` yields ``(y0, rows [3, L, r, W'])`` (rows beyond ``height`` and columns beyond
    ``width`` are padding and dropped); frames at or past ``next_start`` wait for the next window.
    """

    def __init__(self, num_frames: int, height: int, width: int, as_uint8: bool = True) -> None:
        self.num_frames = num_frames
        self.height = height
        self.width = width
        self.as_uint8 = as_uint8
        self._sums: dict[int, torch.Tensor] = {}  # float [3, H, W] of frames a later window covers too
        self._weights: dict[int, float] = {}  # blend weight already in _sums
        self._done: dict[int, torch.Tensor] = {}
        self.next_frame = 0

    def add_window(
        self,
        start: int,
        weights: torch.Tensor,
        next_start: int | None,
        bands: Iterable[tuple[int, torch.Tensor]],
    ) -> list[torch.Tensor]:
        weights = weights.float().cpu()
        length = weights.shape[0]
        later = next_start if next_start is not None else start + length
        frames = [start + k for k in range(length) if start + k < self.num_frames]
        for f in frames:
            if f >= later:
                self._sums.setdefault(f, torch.zeros(3, self.height, self.width))
            elif f not in self._done:
                self._done[f] = (
                    torch.empty(self.height, self.width, 3, dtype=torch.uint8)
                    if self.as_uint8
                    else torch.empty(3, self.height, self.width)
                )
        for y0, rows in bands:
            if y0 >= self.height:
                continue
            rows = rows[:, :, : self.height - y0, : self.width].float().cpu()
            y1 = y0 + rows.shape[2]
            for f in frames:
                k = f - start
                part = rows[:, k] * weights[k]
                if f >= later:
                    self._sums[f][:, y0:y1] += part
                    continue
                if f in self._sums:
                    part = part + self._sums[f][:, y0:y1]
                value = part / (self._weights.get(f, 0.0) + float(weights[k]))
                if self.as_uint8:
                    self._done[f][y0:y1] = _to_uint8(value)
                else:
                    self._done[f][:, y0:y1] = value.clamp(-1.0, 1.0)
        for f in frames:
            if f >= later:
                self._weights[f] = self._weights.get(f, 0.0) + float(weights[f - start])
            else:
                self._sums.pop(f, None)
                self._weights.pop(f, None)
        finished = []
        while self.next_frame in self._done:
            finished.append(self._done.pop(self.next_frame))
            self.next_frame += 1
        return finished
