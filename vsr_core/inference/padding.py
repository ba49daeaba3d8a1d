"""The size rules a method declares for the long-video engine.

Methods may declare ``min_size`` (smallest LQ height/width) and ``spatial_multiple`` (LQ sizes
must be multiples of it, e.g. 8 for a VAE with 8x downsampling); both default to 1. The padding
itself is :func:`vsr_core.video_ops.pad_spatial`.
"""

from __future__ import annotations

__all__ = ["method_size_rules"]


def method_size_rules(method: object) -> tuple[int, int]:
    """``(spatial_multiple, min_size)`` declared by a method (defaults ``(1, 1)``)."""
    return int(getattr(method, "spatial_multiple", 1) or 1), int(getattr(method, "min_size", 1) or 1)
