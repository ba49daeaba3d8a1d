"""The `vsr fit` progress bar: Lightning's rich bar, told that runs are measured in steps.

`vsr fit` trains for ``max_steps`` with ``max_epochs = -1`` (an epoch of a clip dataset is an
arbitrary unit). Lightning's bar would then read ``Epoch 2/-2``; this one reads ``Epoch 2`` and
shows ``step 20/400`` beside the loss, refreshed every batch. Lightning's ``v_num`` (the run's
version number, shown as ``v_num: 0.000``) is left out: the run folder is printed when fit starts.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar

__all__ = ["StepProgressBar"]


class StepProgressBar(RichProgressBar):
    """``RichProgressBar`` that shows the global step against ``max_steps`` for step-based runs."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        if trainer.max_steps and trainer.max_steps > 0:
            metrics = {"step": f"{trainer.global_step}/{trainer.max_steps}", **metrics}
        return metrics

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        # Padded like Lightning's, so the bar does not jump when validation starts.
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"
