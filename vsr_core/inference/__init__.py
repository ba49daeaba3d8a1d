"""Long-video inference: window planning, tiling, fusion, colour correction and the engine."""

from vsr_core.inference.color import adain_color_fix, wavelet_color_fix
from vsr_core.inference.engine import EngineOptions, RestoreEngine
from vsr_core.inference.files import collect_inputs, frames_to_restore, restore_file
from vsr_core.inference.fusion import LinearCrossfade, WindowFusion, window_fusion_for
from vsr_core.inference.prediction_writer import (
    RestorePredictionWriter,
    VideoFilesDataModule,
)
from vsr_core.inference.tiles import gaussian_weight, tile_starts
from vsr_core.inference.windows import Window, WindowPlan, plan_windows

__all__ = [
    "EngineOptions",
    "LinearCrossfade",
    "RestoreEngine",
    "RestorePredictionWriter",
    "VideoFilesDataModule",
    "Window",
    "WindowFusion",
    "WindowPlan",
    "adain_color_fix",
    "collect_inputs",
    "frames_to_restore",
    "gaussian_weight",
    "plan_windows",
    "restore_file",
    "tile_starts",
    "wavelet_color_fix",
    "window_fusion_for",
]
