"""StepProgressBar: step-based runs read 'Epoch N' and 'step k/max_steps', not 'Epoch N/-2'."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from vsr_core.callbacks import StepProgressBar


class Recording(StepProgressBar):
    """Keeps every description and step shown, to compare with what the trainer did."""

    def __init__(self) -> None:
        super().__init__()
        self.descriptions: list[str] = []
        self.steps: list[str] = []

    def _get_train_description(self, current_epoch: int) -> str:
        description = super()._get_train_description(current_epoch)
        self.descriptions.append(description.strip())
        return description

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        if "step" in metrics:
            self.steps.append(metrics["step"])
        return metrics


def fit(tmp_path, **trainer_args) -> Recording:
    bar = Recording()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        limit_train_batches=4,
        limit_val_batches=0,
        accelerator="cpu",
        **trainer_args,
    )
    torch.manual_seed(0)
    trainer.fit(BoringModel())
    return bar


def test_step_based_run_shows_steps_and_no_negative_epoch_total(tmp_path):
    bar = fit(tmp_path, max_steps=10)  # Lightning sets max_epochs = -1
    assert bar.descriptions and all(d.startswith("Epoch ") and "/" not in d for d in bar.descriptions)
    assert bar.descriptions[-1] == "Epoch 2"  # steps 8..9 are the third epoch of 4 batches
    assert bar.steps[-1] == "10/10" and "1/10" in bar.steps


def test_epoch_based_run_keeps_lightnings_description(tmp_path):
    bar = fit(tmp_path, max_epochs=2)
    assert bar.descriptions[-1] == "Epoch 1/1" and bar.steps == []
