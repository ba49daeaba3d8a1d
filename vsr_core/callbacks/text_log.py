"""``train.log``: a plain-text log of a run, beside TensorBoard's events in the run folder.

One line per logged training step (``log_every_n_steps``), one per validation, a header when fit
starts (also printed once on the terminal: the run's one-line summary) and a line when it ends or
is interrupted. Lightning's own messages ("`Trainer.fit` stopped: `max_steps=400` reached.") are
copied in too. A resumed run appends to the same file, so the log reads as one run.

    2026-12-01 23:10:05 fit ReferenceVSR in runs/ReferenceVSR/version_0: cpu, 32-true, seed 0, 400 steps
    2026-12-01 23:10:09 step 10/400 epoch 0 train/loss=0.01234 lr/generator=0.0003 perf/frames_per_s=61.2
    2026-12-01 23:11:02 step 100 validation val/psnr=25.67 val/psnr_bicubic=24.81 val/ssim=0.7012 ...
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

__all__ = ["TextLog", "format_metrics", "run_folder"]

_TRAIN_PREFIXES = ("train/", "lr", "perf/")
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


def format_metrics(metrics: dict[str, Any], prefixes: tuple[str, ...]) -> str:
    """``"a=1.234 b=0.5"`` for the scalar metrics whose names start with one of ``prefixes``, sorted by name."""
    parts = []
    for name in sorted(metrics):
        if not name.startswith(prefixes):
            continue
        value = metrics[name]
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            parts.append(f"{name}={value:.4g}")
    return " ".join(parts)


def run_folder(trainer: Trainer) -> Path | None:
    """The run's folder: the TensorBoard/CSV logger's ``log_dir``, else the checkpoints' parent folder."""
    for logger in trainer.loggers:
        if isinstance(logger, (TensorBoardLogger, CSVLogger)):
            return Path(logger.log_dir)
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return Path(dirpath).parent if dirpath else None


class _Lines(logging.Handler):
    """Copies Lightning's log records into the text log."""

    def __init__(self, write) -> None:
        super().__init__(logging.INFO)
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        self._write(record.getMessage().replace("\n", " | "))


class TextLog(Callback):
    """Append a plain-text log of the run to ``<run folder>/<filename>`` (global rank 0 only).

    Args:
        filename: the log file's name in the run folder.
        every_n_steps: a training line every this many optimizer steps (None: the trainer's ``log_every_n_steps``).
        summary: also print the header line (the run's one-line summary) on stderr.
    """

    def __init__(self, filename: str = "train.log", every_n_steps: int | None = None, summary: bool = True) -> None:
        super().__init__()
        self.filename = filename
        self.every_n_steps = every_n_steps
        self.summary = summary
        self._file: TextIO | None = None
        self._handler: _Lines | None = None
        self._last_step = -1
        self.path: Path | None = None

    # -- writing -------------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        if self._file is not None:
            self._file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self._file.flush()

    def _open(self, trainer: Trainer) -> None:
        folder = run_folder(trainer)
        if folder is None or self._file is not None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.filename
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in teardown
        self._handler = _Lines(self._write)
        for name in _LIGHTNING_LOGGERS:
            logging.getLogger(name).addHandler(self._handler)

    def _close(self) -> None:
        if self._handler is not None:
            for name in _LIGHTNING_LOGGERS:
                logging.getLogger(name).removeHandler(self._handler)
            self._handler = None
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- the run -------------------------------------------------------------------------------
    def header(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> str:
        """``fit ReferenceVSR in runs/ReferenceVSR/version_0: cpu, 32-true, seed 0, 400 steps (resumed at step 3 ...)``."""
        folder = run_folder(trainer)
        where = f" in {folder}" if folder is not None else ""
        device = str(trainer.strategy.root_device)
        if trainer.world_size > 1:
            device = f"{trainer.world_size} x {trainer.strategy.root_device.type}"
        parts = [device, str(trainer.precision)]
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            parts.append(f"seed {seed}")
        if stage == "fit" and trainer.max_steps and trainer.max_steps > 0:
            validation = trainer.val_check_interval
            every = f", validation every {validation} steps" if isinstance(validation, int) else ""
            parts.append(f"{trainer.max_steps} steps{every}")
        line = f"{stage} {type(pl_module).__name__}{where}: {', '.join(parts)}"
        if stage == "fit" and trainer.ckpt_path:
            line += f" (resumed at step {trainer.global_step} from {trainer.ckpt_path})"
        return line

    def _start(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        self._open(trainer)
        line = self.header(trainer, pl_module, stage)
        self._write(line)
        if self.summary:
            print(f"vsr {line}", file=sys.stderr)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module, "fit")
        self._last_step = trainer.global_step

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._start(trainer, pl_module, "validate")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module, "test")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        every = self.every_n_steps or trainer.log_every_n_steps or 1
        if self._file is None or step == self._last_step or step % every:
            return
        self._last_step = step
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        self._write(
            f"step {step}{total} epoch {trainer.current_epoch} {format_metrics(trainer.callback_metrics, _TRAIN_PREFIXES)}"
        )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(f"step {trainer.global_step} validation {format_metrics(trainer.callback_metrics, ('val/',))}")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(f"test {format_metrics(trainer.callback_metrics, ('test/',))}")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(f"training ended at step {trainer.global_step}")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        reason = (
            "interrupted"
            if isinstance(exception, KeyboardInterrupt)
            else f"failed: {type(exception).__name__}: {exception}"
        )
        self._write(f"{reason} at step {trainer.global_step}".replace("\n", " | "))
        self._close()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._close()
