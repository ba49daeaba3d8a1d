"""Several optimizers that step like Lightning's automatic path (GAN, VSD and distillation methods).

Lightning trains several optimizers only under manual optimization, where it clips no gradients,
refuses ``accumulate_grad_batches``, steps no LR scheduler and counts every optimizer step as a
global step. :class:`GroupStepper` gives a :class:`~vsr_core.method.VSRMethod` with manual
optimization what the automatic path does, through ``method.optimize(name, loss)``:

* backward into the group's parameters only (``inputs=``; under FSDP2 a full backward that leaves the
  other groups' gradients as they were), scaled by ``1 / accumulate_grad_batches``;
* at the end of an accumulation cycle: gradients averaged over data-parallel ranks (DDP's own
  reduction is switched off, because a method runs several backward passes per batch), clipped as
  ``--trainer.gradient_clip_val`` / ``--trainer.gradient_clip_algorithm`` say, optimizer step,
  that group's LR scheduler step, gradients zeroed;
* one global step per update cycle (a batch, or ``accumulate_grad_batches`` batches), whatever the
  number of optimizers, so ``max_steps``, validation intervals, logs and checkpoint names mean the
  same as for a one-optimizer method;
* per-group update schedules (``GroupSchedule``: every ``k`` steps, from step ``N``).

The trainer's clipping and accumulation settings are taken over when the trainer attaches (so
Lightning's check for manual optimization passes) and put back during ``setup``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.options import OptionGroup

__all__ = ["GroupSchedule", "GroupStepper"]


@dataclass(frozen=True)
class GroupSchedule(OptionGroup):
    """When a parameter group updates: at global steps ``start, start + every, start + 2·every, ...``.

    Args:
        every: update every ``every``-th global step (e.g. a discriminator at half the rate: 2).
        start: first global step that updates (e.g. a discriminator joining after a warm-up).
    """

    every: int = 1
    start: int = 0

    def check(self) -> None:
        if self.every < 1 or self.start < 0:
            raise ConfigError(
                f"a group schedule needs every >= 1 and start >= 0, got every={self.every}, start={self.start}"
            )

    def is_due(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.every == 0


def _is_ddp(model: Any) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


class GroupStepper:
    """The per-fit state behind ``VSRMethod.optimize``; one per method.

    Args:
        method: the :class:`~vsr_core.method.VSRMethod` (manual optimization).
        schedules: ``{group name: GroupSchedule}`` for groups that do not update every step.
    """

    def __init__(self, method: Any, schedules: dict[str, GroupSchedule]) -> None:
        self.method = method
        self.schedules = schedules
        self.clip_val: float | None = None
        self.clip_algorithm: str | None = None
        self.accumulate = 1
        self.taken_over = False
        self.used = False  # optimize() was called in this fit: the method's steps are counted here
        self.counted_batch = -1

    # ------------------------------------------------------------------ trainer settings

    def take_over(self, trainer: Any) -> None:
        """Move the trainer's clipping/accumulation settings here, so Lightning accepts manual optimization."""
        if self.taken_over:
            return
        self.clip_val = trainer.gradient_clip_val
        self.clip_algorithm = trainer.gradient_clip_algorithm
        self.accumulate = int(trainer.accumulate_grad_batches)
        trainer.gradient_clip_val = None
        trainer.accumulate_grad_batches = 1
        self.taken_over = True

    def give_back(self, trainer: Any) -> None:
        """Put the settings back after Lightning's check (its loops count accumulation batches from them)."""
        if not self.taken_over:
            return
        trainer.gradient_clip_val = self.clip_val
        trainer.accumulate_grad_batches = self.accumulate
        self.taken_over = False

    # ------------------------------------------------------------------ one group

    def check_groups(self, names: Iterable[str]) -> None:
        unknown = sorted(set(self.schedules) - set(names))
        if unknown:
            raise ConfigError(
                f"group_schedules names {unknown}, but {type(self.method).__name__} has parameter groups {list(names)}"
            )

    def is_due(self, name: str, step: int) -> bool:
        schedule = self.schedules.get(name)
        return schedule is None or schedule.is_due(step)

    def _accumulating(self) -> bool:
        """Whether this batch only accumulates (no optimizer step at its end), as Lightning decides it."""
        if self.accumulate == 1:
            return False
        return self.method.trainer.fit_loop.epoch_loop._should_accumulate()

    def step(
        self,
        name: str,
        optimizer: Any,
        scheduler: Any,
        params: list[nn.Parameter],
        loss: torch.Tensor | Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """Backward ``loss`` into ``params``; at a cycle's end reduce, clip, step, schedule, zero."""
        method = self.method
        self.used = True
        if callable(loss):
            loss = loss()
        trainer = method.trainer
        strategy = trainer.strategy
        accumulating = self._accumulating()
        scaled = loss / self.accumulate if self.accumulate > 1 else loss
        inputs = [p for p in params if p.requires_grad]
        # DDP reduces once per backward of the whole model; with several backward passes per batch
        # its reducer cannot work, so it is switched off and the group's gradients are averaged below.
        sync_off = strategy.block_backward_sync() if _is_ddp(strategy.model) else contextlib.nullcontext()
        with sync_off:
            if _is_sharded(inputs):
                # FSDP2's autograd graph holds the unsharded parameters, so `inputs=` cannot name them:
                # run a full backward and keep the other groups' gradients as they were.
                own = {id(p) for p in inputs}
                others = [p for p in method.parameters() if p.requires_grad and id(p) not in own]
                kept = [p.grad for p in others]
                for p in others:
                    p.grad = None
                method.manual_backward(scaled)
                for p, grad in zip(others, kept):
                    p.grad = grad
            else:
                method.manual_backward(scaled, inputs=inputs)
        if accumulating:
            return loss.detach()
        if _is_ddp(strategy.model):
            _average_over_ranks(inputs)
        # Lightning's precision plugin calls on_before_optimizer_step (VSRMethod clips there, after
        # AMP unscaling) inside optimizer.step(); its own step counting is replaced by one per cycle.
        self._current_group = name
        before, after = optimizer._on_before_step, optimizer._on_after_step
        optimizer._on_before_step = optimizer._on_after_step = _no_op
        try:
            optimizer.step()
        finally:
            optimizer._on_before_step, optimizer._on_after_step = before, after
            self._current_group = None
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        return loss.detach()

    def clip(self, optimizer: Any) -> None:
        """Clip the gradients of ``optimizer`` as the trainer's settings say (called before its step)."""
        if self.clip_val is None or self.clip_val <= 0:
            return
        self.method.clip_gradients(
            optimizer, gradient_clip_val=self.clip_val, gradient_clip_algorithm=self.clip_algorithm or "norm"
        )

    # ------------------------------------------------------------------ the global step

    def end_of_training_step(self) -> None:
        """Advance the global step once if this batch ends an update cycle (called after ``training_step``)."""
        loop = self.method.trainer.fit_loop.epoch_loop
        batch = loop.batch_progress.total.ready  # counts every batch of the fit, across epochs
        if not self.used or self.counted_batch == batch or self._accumulating():
            return
        self.counted_batch = batch
        progress = loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()


def _is_sharded(params: list[nn.Parameter]) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in params)


def _no_op() -> None:
    return None


def _average_over_ranks(params: list[nn.Parameter]) -> None:
    """Average the gradients of ``params`` over the default process group (one flat all-reduce)."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        if p.grad is None:  # every rank must contribute the same tensors to the collective
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    world = dist.get_world_size()
    for same in by_dtype.values():
        flat = _flatten_dense_tensors(same)
        dist.all_reduce(flat)
        flat.div_(world)
        for grad, reduced in zip(same, _unflatten_dense_tensors(flat, same)):
            grad.copy_(reduced)
