"""Long-video inference: window planning, tiling, fusion (pixel and latent), colour correction and the engine."""

from vsr_core.inference.assembly import FrameAssembler
from vsr_core.inference.color import COLOR_FIXES, adain_color_fix, wavelet_color_fix
from vsr_core.inference.engine import FUSION_MODES, EngineOptions, RestoreEngine
from vsr_core.inference.files import collect_inputs, frames_to_restore, restore_file
from vsr_core.inference.fusion import LinearCrossfade, WindowFusion, window_fusion_for
from vsr_core.inference.latent import (
    LatentFusion,
    LatentLayout,
    LatentState,
    LatentTile,
    LatentWindow,
    implements_latent_protocol,
    latent_fusion_for,
    sample_window,
)
from vsr_core.inference.latent_runner import LatentRunner
from vsr_core.inference.loading import load_for_inference
from vsr_core.inference.noise import TimelineNoise, make_generator
from vsr_core.inference.options import engine_options
from vsr_core.inference.prediction_writer import (
    RestorePredictionWriter,
    VideoFilesDataModule,
)
from vsr_core.inference.sampling import describe_sampling, parse_sample_options
from vsr_core.inference.tiles import Tile, TileGrid, blend_rows, gaussian_weight, plan_tiles, tile_starts
from vsr_core.inference.windows import Window, WindowPlan, plan_windows

__all__ = [
    "COLOR_FIXES",
    "FUSION_MODES",
    "EngineOptions",
    "FrameAssembler",
    "LatentFusion",
    "LatentLayout",
    "LatentRunner",
    "LatentState",
    "LatentTile",
    "LatentWindow",
    "LinearCrossfade",
    "RestoreEngine",
    "RestorePredictionWriter",
    "Tile",
    "TileGrid",
    "TimelineNoise",
    "VideoFilesDataModule",
    "Window",
    "WindowFusion",
    "WindowPlan",
    "adain_color_fix",
    "blend_rows",
    "collect_inputs",
    "describe_sampling",
    "engine_options",
    "frames_to_restore",
    "gaussian_weight",
    "implements_latent_protocol",
    "latent_fusion_for",
    "load_for_inference",
    "make_generator",
    "parse_sample_options",
    "plan_tiles",
    "plan_windows",
    "restore_file",
    "sample_window",
    "tile_starts",
    "wavelet_color_fix",
    "window_fusion_for",
]
