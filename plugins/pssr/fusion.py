"""Long videos (PS-SR Sec. 5): overlapping windows merged by temporal position-aware averaging.

The release (``inference_step_1.py`` / ``inference_step_2.py``, ``linear_blend_overlap``) restores
33-frame windows independently and blends each overlap of ``o`` frames linearly by position:
frame ``k = 0 .. o-1`` of the overlap is ``(1 - k/(o-1)) * previous + k/(o-1) * next``. Through the
core engine's :meth:`~vsr_core.inference.WindowFusion.weights` hook that is a weight ramp
``k/(o-1)`` over a window's leading overlap and ``1 - k/(o-1)`` over its trailing one (the engine
normalises the weights of the windows covering a frame, which sum to 1 here anyway).
"""

from __future__ import annotations

import torch

from vsr_core.inference import WindowFusion

__all__ = ["TemporalPositionAveraging", "position_ramp"]


def position_ramp(overlap: int) -> torch.Tensor:
    """``[overlap]`` weights of the *next* window over an overlap: ``linspace(0, 1, overlap)`` (the release's alpha)."""
    return torch.linspace(0.0, 1.0, overlap) if overlap > 1 else torch.zeros(overlap)


class TemporalPositionAveraging(WindowFusion):
    """Window weights ``[L]``: 1 inside, rising ``k/(o-1)`` over the leading and falling over the trailing overlap."""

    def weights(self, window, plan) -> torch.Tensor:
        w = torch.ones(window.length)
        if window.overlap_before:
            w[: window.overlap_before] = position_ramp(window.overlap_before)
        if window.overlap_after:
            tail = 1.0 - position_ramp(window.overlap_after)
            w[window.length - window.overlap_after :] = torch.minimum(w[window.length - window.overlap_after :], tail)
        return w
