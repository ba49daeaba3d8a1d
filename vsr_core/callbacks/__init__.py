"""Training callbacks: EMA of the trainable weights (FSDP-safe), sample videos, bicubic baseline, throughput,
progress, the plain-text run log."""

from vsr_core.callbacks.baseline import BicubicBaseline
from vsr_core.callbacks.ema import EMA, EMA_CHECKPOINT_KEY
from vsr_core.callbacks.progress import StepProgressBar
from vsr_core.callbacks.text_log import TextLog
from vsr_core.callbacks.throughput import ThroughputMonitor
from vsr_core.callbacks.video_samples import VideoSampleLogger

__all__ = [
    "BicubicBaseline",
    "EMA",
    "EMA_CHECKPOINT_KEY",
    "StepProgressBar",
    "TextLog",
    "ThroughputMonitor",
    "VideoSampleLogger",
]
