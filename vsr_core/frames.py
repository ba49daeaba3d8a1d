"""Frame-count rules: which clip lengths a codec, a method and the long-video engine accept.

A rule is ``(multiple, remainder)``: a clip may have ``multiple * k + remainder`` frames (``k >= 0``,
at least one frame). ``(4, 1)`` is the ``4k+1`` rule of causal 3D VAEs (CogVideoX, Wan), ``(1, 0)``
accepts any count, ``(2, 0)`` even counts. Every place that rounds a frame count uses these two
functions, so codecs, the engine, the conformance kit and plugins always agree.
"""

from __future__ import annotations

from vsr_core.errors import ConfigError

__all__ = ["FramesRule", "check_frames_rule", "frames_at_least", "frames_at_most"]

FramesRule = tuple[int, int]


def check_frames_rule(rule: FramesRule) -> FramesRule:
    """``rule`` as a tuple of ints after checking ``multiple >= 1`` and ``0 <= remainder``."""
    multiple, remainder = (int(v) for v in rule)
    if multiple < 1 or remainder < 0:
        raise ConfigError(f"a frames rule (multiple, remainder) needs multiple >= 1 and remainder >= 0, got {rule}")
    return multiple, remainder


def frames_at_least(n: int, rule: FramesRule) -> int:
    """The smallest valid frame count ``>= n`` (and ``>= 1``): how far a short clip is padded."""
    multiple, remainder = check_frames_rule(rule)
    n = max(int(n), 1, remainder)
    k = -(-(n - remainder) // multiple)
    return multiple * k + remainder


def frames_at_most(n: int, rule: FramesRule) -> int:
    """The largest valid frame count ``<= n``: how far a clip is cropped without inventing frames.

    When even the smallest valid count exceeds ``n``, that smallest count is returned (the caller
    pads, or refuses, as it must).
    """
    multiple, remainder = check_frames_rule(rule)
    smallest = frames_at_least(1, rule)
    if n < smallest:
        return smallest
    return multiple * ((int(n) - remainder) // multiple) + remainder
