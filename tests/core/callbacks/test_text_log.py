"""TextLog: train.log in the run folder, one line per logged step and validation, appended on resume."""

from __future__ import annotations

import re

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from test_video_samples import Clips, Upsampler, collate
from torch.utils.data import DataLoader

from vsr_core.callbacks import TextLog
from vsr_core.callbacks.text_log import format_metrics

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$")


class Logged(Upsampler):
    """Loss (gain - 2)^2 with SGD lr 0.25: gain 1 -> 1.5 -> 1.75 -> ..., so loss_k = 0.25^(k)."""

    def training_step(self, batch, batch_idx):
        loss = (self.gain - 2) ** 2
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val/psnr", torch.tensor(20.0 + self.global_step), batch_size=2)
        return out

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.25)


def fit(tmp_path, max_steps: int, ckpt_path=None):
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    loader = DataLoader(Clips(), batch_size=2, collate_fn=collate)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=[TextLog(summary=False)],
        max_steps=max_steps,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Logged(), loader, loader, ckpt_path=ckpt_path)
    return logger


def messages(path) -> list[str]:
    lines = path.read_text().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    return [LINE.match(line).group(1) for line in lines]


def test_one_line_per_step_and_validation_with_the_logged_values(tmp_path, monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)  # seeded by an earlier test of this process
    logger = fit(tmp_path, 4)
    got = messages(tmp_path / "run" / "version_0" / "train.log")
    assert got[0] == f"fit Logged in {logger.log_dir}: cpu, 32-true, 4 steps"
    # the loss logged at step k is the one computed before the k-th update: 0.25^(k-1)
    steps = [m for m in got if m.startswith("step ") and "validation" not in m]
    assert steps == [f"step {k}/4 epoch {(k - 1) // 2} train/loss={0.25 ** (k - 1):.4g}" for k in range(1, 5)]
    assert [m for m in got if "validation" in m] == ["step 2 validation val/psnr=22", "step 4 validation val/psnr=24"]
    assert got[-2:] == ["`Trainer.fit` stopped: `max_steps=4` reached.", "training ended at step 4"]


def test_a_resumed_run_appends_to_the_same_log(tmp_path):
    fit(tmp_path, 2)
    last = next((tmp_path / "run" / "version_0" / "checkpoints").glob("*.ckpt"))
    fit(tmp_path, 4, ckpt_path=str(last))
    got = messages(tmp_path / "run" / "version_0" / "train.log")
    headers = [m for m in got if m.startswith("fit Logged")]
    assert len(headers) == 2 and headers[1].endswith(f"(resumed at step 2 from {last})")
    assert [m.split()[1] for m in got if m.startswith("step ") and "validation" not in m] == [
        "1/2",
        "2/2",
        "3/4",
        "4/4",
    ]


def test_format_metrics_keeps_scalars_of_the_given_prefixes_sorted():
    metrics = {
        "val/psnr": torch.tensor(25.123456),
        "train/loss": 0.5,
        "perf/x": torch.ones(2),
        "lr-AdamW": 1e-4,
        "other": 3,
    }
    assert format_metrics(metrics, ("train/", "lr", "perf/")) == "lr-AdamW=0.0001 train/loss=0.5"
