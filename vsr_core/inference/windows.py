"""Temporal window planning for long videos.

A video of ``N`` frames is cut into windows of one length ``L`` that obeys the method's
``frames_rule = (multiple, remainder)`` (``L = multiple * k + remainder``, e.g. ``4k+1`` for causal
3D VAEs). Consecutive windows overlap by at least ``overlap`` frames; the last window is aligned
to the end of the video so no window runs past it. A video shorter than one valid window is padded
at its end (by repeating its last frame) up to the smallest valid length.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsr_core.errors import ConfigError
from vsr_core.frames import frames_at_least, frames_at_most

__all__ = ["plan_windows", "Window", "WindowPlan"]


@dataclass(frozen=True)
class Window:
    """One temporal window: frames ``start .. start + length - 1`` of the padded timeline.

    ``overlap_before`` / ``overlap_after``: frames shared with the previous / next window.
    """

    index: int
    start: int
    length: int
    overlap_before: int
    overlap_after: int

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass(frozen=True)
class WindowPlan:
    """The windows covering a video of ``num_frames`` frames (padded to ``padded_frames``)."""

    num_frames: int
    padded_frames: int
    windows: tuple[Window, ...]


def plan_windows(
    num_frames: int, window: int, overlap: int, frames_rule: tuple[int, int] = (1, 0)
) -> WindowPlan:
    """Cut ``num_frames`` frames into overlapping windows whose length obeys ``frames_rule``.

    ``window`` is rounded down to a valid length (never below the smallest one); ``overlap``
    must be smaller than the window. Raises :class:`ConfigError` for impossible settings.
    """
    if num_frames < 1:
        raise ConfigError(f"a video needs at least one frame, got {num_frames}")
    if window < 1:
        raise ConfigError(f"--window must be >= 1, got {window}")
    if overlap < 0:
        raise ConfigError(f"--overlap must be >= 0, got {overlap}")
    length = frames_at_most(window, frames_rule)
    if num_frames <= length:
        # One window: shrink it to the shortest valid length that holds the whole video.
        length = frames_at_least(num_frames, frames_rule)
        return WindowPlan(num_frames, length, (Window(0, 0, length, 0, 0),))
    if overlap >= length:
        raise ConfigError(
            f"--overlap {overlap} must be smaller than the window ({length} frames after the method's "
            f"frame rule {frames_rule[0]}k+{frames_rule[1]})"
        )
    step = length - overlap
    starts = list(range(0, num_frames - length, step)) + [num_frames - length]
    starts = sorted(set(starts))
    windows = []
    for i, start in enumerate(starts):
        before = (starts[i - 1] + length - start) if i > 0 else 0
        after = (start + length - starts[i + 1]) if i + 1 < len(starts) else 0
        windows.append(Window(i, start, length, before, after))
    return WindowPlan(num_frames, num_frames, tuple(windows))
