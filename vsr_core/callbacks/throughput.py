"""Training throughput in video units: clips and frames per second, seconds per batch.

Not Lightning's ``ThroughputMonitor`` (same name, different class): that one reports
``train|samples_per_sec``/``items_per_sec``, warns on every run without a FLOPs count and
synchronizes CUDA after every batch; this one logs the names a video run is read by
(``perf/...``) and needs no synchronization.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from vsr_core.errors import ConfigError

__all__ = ["ThroughputMonitor"]


def _data_parallel_size(trainer: Trainer) -> int:
    # The number of ranks that each take a different batch (tensor-parallel ranks share one).
    kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None) or {}
    return int(kwargs.get("num_replicas", 1))


class ThroughputMonitor(Callback):
    """Log ``perf/clips_per_s``, ``perf/frames_per_s`` and ``perf/step_time_s`` while training.

    A clip is one sample of ``batch["hq"]`` (``[B,3,T,H,W]``), its frames are ``T``, and rates
    count every data-parallel rank (``B x ranks`` clips per batch). The time of a batch is the
    wall-clock time between the ends of consecutive training batches, so it includes data loading
    and the optimizer step, but not validation. Values are averaged over the last ``window``
    batches; over a window, time measured on the host matches the device's time without any
    CUDA synchronization (``cuda_sync`` forces one per batch for exact per-batch numbers).

    Args:
        window: number of recent batches averaged.
        cuda_sync: synchronize CUDA before reading the clock at each batch end.
    """

    def __init__(self, window: int = 20, cuda_sync: bool = False) -> None:
        super().__init__()
        if window < 1:
            raise ConfigError(f"ThroughputMonitor window must be at least 1, got {window}")
        self.window = window
        self.cuda_sync = cuda_sync
        self._intervals: deque[tuple[float, int, int]] = deque(maxlen=window)
        self._last: float | None = None

    def _restart_clock(self) -> None:
        self._last = time.perf_counter()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restart_clock()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The next training batch is timed from here: validation is not training time.
        self._restart_clock()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.cuda_sync and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        if self._last is None:
            self._last = now
            return
        elapsed, self._last = now - self._last, now
        hq = batch["hq"]
        clips = hq.shape[0] * _data_parallel_size(trainer)
        self._intervals.append((elapsed, clips, clips * hq.shape[2]))
        seconds = sum(i[0] for i in self._intervals)
        if seconds <= 0:
            return
        metrics = {
            "perf/clips_per_s": sum(i[1] for i in self._intervals) / seconds,
            "perf/frames_per_s": sum(i[2] for i in self._intervals) / seconds,
            "perf/step_time_s": seconds / len(self._intervals),
        }
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=hq.shape[0])
