"""Training callbacks: EMA of the trainable weights (FSDP-safe), sample videos, throughput, progress."""

from vsr_core.callbacks.ema import EMA, EMA_CHECKPOINT_KEY
from vsr_core.callbacks.progress import StepProgressBar
from vsr_core.callbacks.throughput import ThroughputMonitor
from vsr_core.callbacks.video_samples import VideoSampleLogger

__all__ = ["EMA", "EMA_CHECKPOINT_KEY", "StepProgressBar", "ThroughputMonitor", "VideoSampleLogger"]
