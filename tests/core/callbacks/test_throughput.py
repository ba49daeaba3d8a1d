"""ThroughputMonitor: clips/s, frames/s and step time are measured, positive and consistent."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from vsr_core.callbacks import ThroughputMonitor
from vsr_core.errors import ConfigError

B, T, STEP_SECONDS = 2, 5, 0.02


class Slow(L.LightningModule):
    """Every training step takes at least STEP_SECONDS."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        time.sleep(STEP_SECONDS)
        return self.layer(batch["hq"].mean(dim=(1, 3)).flatten(1)[:, :4]).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def clips() -> DataLoader:
    data = [{"hq": torch.rand(3, T, 2, 4)} for _ in range(8)]
    return DataLoader(data, batch_size=B)


def test_logs_clips_frames_and_step_time(tmp_path):
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=6,
        callbacks=[ThroughputMonitor(window=3)],
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Slow(), clips())

    import csv

    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("perf/clips_per_s")]
    assert len(rows) == 6  # every batch; the first of an epoch is timed from the epoch start
    for row in rows:
        clips_per_s, frames_per_s = float(row["perf/clips_per_s"]), float(row["perf/frames_per_s"])
        step_time = float(row["perf/step_time_s"])
        assert step_time >= STEP_SECONDS
        assert 0 < clips_per_s <= B / STEP_SECONDS
        assert frames_per_s == pytest.approx(clips_per_s * T)
        # a single process: clips per second is the batch over the (window-averaged) step time
        assert clips_per_s == pytest.approx(B / step_time)


def test_window_must_be_positive():
    with pytest.raises(ConfigError, match="window must be at least 1"):
        ThroughputMonitor(window=0)
