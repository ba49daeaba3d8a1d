"""Two-process CPU (gloo) DDP run of VideoDataModule for tests/core/data/test_datamodule.py.

Lightning starts rank 1 by running this script again, so the test runs it as
``python ddp_data_worker.py <clip_dir> <out_dir>`` in a subprocess. Each rank trains a few steps
and writes ``<out_dir>/rank<r>.pt``: the sample positions, keys and LQ sums it saw per step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from video_factory import AvgPoolNoise

from vsr_core.data import datamodule as dm_module
from vsr_core.data.datamodule import VideoDataModule
from vsr_core.data.sources import VideoFolder


class Recorder(L.LightningModule):
    """Logs every training batch; the positions come from a hook that runs before the data module's."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.positions: list[list[int]] = []
        self.seen: list[tuple] = []

    def on_before_batch_transfer(self, batch, dataloader_idx):
        self.positions.append(batch["index"].tolist())
        return batch

    def training_step(self, batch, batch_idx):
        self.seen.append((list(batch["key"]), float(batch["lq"].sum())))
        return (self.w - batch["lq"].mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_end(self) -> None:
        torch.save({"positions": self.positions, "seen": self.seen}, self.out_dir / f"rank{self.global_rank}.pt")


def main(clip_dir: str, out_dir: str) -> None:
    dm_module._build_degradation = lambda preset, scale, options=None: AvgPoolNoise(scale)
    data = VideoDataModule(
        train=VideoFolder(clip_dir), validate=False, clip_frames=2, crop_size=16, batch_size=2, num_workers=0
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Recorder(Path(out_dir)), data)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
