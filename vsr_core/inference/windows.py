"""Temporal window planning for long videos.

A video of ``N`` frames is cut into windows of one length ``L`` that obeys the method's
``frames_rule = (multiple, remainder)`` (``L = multiple * k + remainder``, e.g. ``4k+1`` for causal
3D VAEs). Consecutive windows overlap by at least ``overlap`` frames; the last window ends at the
end of the video, so no window runs past it, and it is only as long as it must be to cover the
remaining frames plus the overlap (a valid length, at most ``L``): restoring 32 frames in 17-frame
windows with overlap 4 costs 17 + 17 + 6 frames, not 3 x 17. A video shorter than one valid window
is padded at its end (by repeating its last frame) up to the smallest valid length.
"""

from __future__ import annotations

from dataclasses import dataclass

from vsr_core.errors import ConfigError
from vsr_core.frames import frames_at_least, frames_at_most

__all__ = ["plan_windows", "Window", "WindowPlan"]


@dataclass(frozen=True)
class Window:
    """One temporal window: frames ``start .. start + length - 1`` of the padded timeline (lengths may differ: the last is shorter).

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


def plan_windows(num_frames: int, window: int, overlap: int, frames_rule: tuple[int, int] = (1, 0)) -> WindowPlan:
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
    spans = [(start, length) for start in range(0, num_frames - length + 1, step)]
    last_end = spans[-1][0] + length
    if last_end < num_frames:
        # The last window covers what is left plus the overlap, in the shortest valid length.
        tail = min(length, frames_at_least(num_frames - (last_end - overlap), frames_rule))
        spans.append((num_frames - tail, tail))
    windows = []
    for i, (start, size) in enumerate(spans):
        before = (spans[i - 1][0] + spans[i - 1][1] - start) if i > 0 else 0
        after = (start + size - spans[i + 1][0]) if i + 1 < len(spans) else 0
        windows.append(Window(i, start, size, before, after))
    return WindowPlan(num_frames, num_frames, tuple(windows))
