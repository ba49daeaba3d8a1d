"""Degradation pipeline that makes low-quality training clips from high-quality ones on the device.

``build_degradation(preset, scale, **overrides) -> VideoDegradation``; see docs/degradations.md.
"""

from __future__ import annotations

from vsr_core.data.degradations.params import (
    BlurParams,
    CodecParams,
    DegradationParams,
    DriftParams,
    FinalParams,
    JPEGParams,
    NoiseParams,
    OrderParams,
    ResizeParams,
)
from vsr_core.data.degradations.pipeline import VideoDegradation
from vsr_core.data.degradations.presets import (
    PRESETS,
    apply_overrides,
    available_presets,
    build_degradation,
    preset_params,
)

__all__ = [
    "PRESETS",
    "BlurParams",
    "CodecParams",
    "DegradationParams",
    "DriftParams",
    "FinalParams",
    "JPEGParams",
    "NoiseParams",
    "OrderParams",
    "ResizeParams",
    "VideoDegradation",
    "apply_overrides",
    "available_presets",
    "build_degradation",
    "preset_params",
]
