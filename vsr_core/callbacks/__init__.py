"""Training callbacks: EMA of the trainable weights (FSDP-safe), sample videos, throughput."""

from vsr_core.callbacks.ema import EMA, EMA_CHECKPOINT_KEY

__all__ = ["EMA", "EMA_CHECKPOINT_KEY"]
