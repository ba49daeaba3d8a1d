"""What the learning checks (``benchmarks/*_learning_check.py``) share.

* :func:`sample_clips_data`: the built-in sample clips as a data module (training clips to train on, the held-out
  validation clips to evaluate on), CPU-friendly loader settings;
* :func:`wall_time_trainer`: a bare CPU ``Trainer`` stopped by a wall-time budget (no logger, checkpoints,
  progress bar or validation loop: each check evaluates by itself);
* :func:`cosine_over_seconds`: a learning-rate factory annealed over that wall-time budget rather than a step count;
* :func:`temporal_flicker`: the full-reference temporal metric the check tables print.

The scripts are run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer

from vsr_core.data import SampleClips, VideoDataModule

__all__ = ["cosine_over_seconds", "sample_clips_data", "temporal_flicker", "wall_time_trainer"]


def temporal_flicker(video: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-clip ``mean |Δ_t video − Δ_t reference|`` in 8-bit levels, ``[B]``; inputs ``[B,3,T,H,W]`` in ``[-1, 1]``.

    0 means the output changes from frame to frame exactly as the ground truth does; lower is better.
    """
    change = video.diff(dim=2) - reference.diff(dim=2)
    return change.abs().mean(dim=(1, 2, 3, 4)) * 127.5


def sample_clips_data(
    *,
    clip_frames: int,
    crop_size: int,
    seed: int,
    batch_size: int = 1,
    degradation: str = "simple",
    validate: bool = True,
    val_crop_size: int | None = None,
    val_clips: int | None = None,
    **options: Any,
) -> VideoDataModule:
    """The built-in sample clips, x4, in the loading process: the training clips and the held-out validation clips.

    ``val_crop_size`` None evaluates at ``crop_size``; ``validate=False`` turns validation off; ``options`` go to
    :class:`~vsr_core.data.VideoDataModule` as they are (``stride_range``, ...).
    """
    return VideoDataModule(
        train=SampleClips("train"),
        val=SampleClips("val"),
        validate=validate,
        clip_frames=clip_frames,
        crop_size=crop_size,
        val_crop_size=val_crop_size,
        scale=4,
        degradation=degradation,
        batch_size=batch_size,
        val_batch_size=1,
        num_workers=0,
        persistent_workers=False,
        pin_memory=False,
        seed=seed,
        val_clips=val_clips,
        **options,
    )


def wall_time_trainer(seconds: float, max_steps: int = 1_000_000, callbacks: Sequence[Callback] = ()) -> Trainer:
    """A CPU ``Trainer`` that stops after ``seconds`` of wall time (or ``max_steps``), with nothing else attached."""
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        max_time={"seconds": max(1, int(seconds))},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )


def cosine_over_seconds(
    seconds: float, clock: Callable[[], float] = time.time
) -> Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]:
    """A method's ``lr_scheduler`` factory: cosine from the base rate to 0 over ``seconds`` from now.

    The factor is ``(1 + cos(π · min(1, elapsed / seconds))) / 2``, evaluated at every scheduler step, so a run cut
    by a wall-time budget still anneals to the end whatever its step rate.
    """
    start = clock()

    def factory(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda _: 0.5 * (1.0 + math.cos(math.pi * min(1.0, (clock() - start) / seconds)))
        )

    return factory
