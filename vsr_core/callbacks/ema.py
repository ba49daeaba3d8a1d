"""Exponential moving average (EMA) of a method's trainable parameters, safe under DDP and FSDP2.

Only the generator's trainable parameters at fit start are averaged (a
:class:`~vsr_core.method.VSRMethod`'s ``generator_parameter_names()``; for any other module every
parameter that requires gradients): for a LoRA run that is the adapters, not the frozen
multi-billion-parameter base; for a GAN, not the discriminator. Shadows are fp32 copies on the
parameters' device with the parameters' layout: full tensors under DDP or a single device, and
DTensors with the same sharding under FSDP2, so each rank averages only its own shard and every
update is a local ``torch._foreach_lerp_`` without communication.

Checkpoints: ``checkpoint["ema_state_dict"]`` maps parameter names, exactly as they appear in
``checkpoint["state_dict"]``, to full fp32 CPU tensors (gathered from the shards under FSDP2).
An exporter gets the EMA model with ``state = checkpoint["state_dict"]; state.update(
checkpoint["ema_state_dict"])``. The callback's own entry in ``checkpoint["callbacks"]`` keeps
only the update counters.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from vsr_core.distributed import full_tensor as _full
from vsr_core.distributed import local_part_of as _local_part_of
from vsr_core.distributed import local_tensor as _local
from vsr_core.errors import CheckpointError, ConfigError

__all__ = ["EMA", "EMA_CHECKPOINT_KEY"]

EMA_CHECKPOINT_KEY = "ema_state_dict"


def _reshard(module: torch.nn.Module) -> None:
    """Make FSDP2 drop gathered weights, so its next forward gathers the values written now."""
    from torch.distributed.fsdp import FSDPModule

    for submodule in module.modules():
        if isinstance(submodule, FSDPModule):
            submodule.reshard()


class EMA(Callback):
    """Keep an exponential moving average of the trainable parameters; evaluate with it.

    After every optimizer step ``s`` (when ``s % update_every == 0``):
    ``ema = decay_t * ema + (1 - decay_t) * param``, with ``decay_t = decay`` or, with ``warmup``,
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates. Before ``start_step`` the average just
    follows the weights. Steps are ``trainer.global_step``: one per update cycle (a batch, or
    ``accumulate_grad_batches`` batches), also for methods with several optimizers.

    Validation and test run with the EMA weights swapped in (``use_ema_for_validation``) and the
    trained weights swapped back afterwards; training and the ``state_dict`` of checkpoints always
    see the trained weights. The EMA weights are saved under ``checkpoint["ema_state_dict"]``
    (see the module docstring) and restored exactly on resume.

    Args:
        decay: weight of the running average per update, in ``[0, 1)``.
        warmup: ramp the decay up from 0.1 (``(1 + n) / (10 + n)``), so early averages are not
            dominated by the random initial weights.
        update_every: update after every ``update_every``-th optimizer step; the decay applies
            per update.
        start_step: the optimizer step at which averaging starts.
        use_ema_for_validation: evaluate validation and test with the EMA weights.
    """

    def __init__(
        self,
        decay: float = 0.999,
        warmup: bool = False,
        update_every: int = 1,
        start_step: int = 0,
        use_ema_for_validation: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1), got {decay}")
        if update_every < 1:
            raise ConfigError(f"EMA update_every must be at least 1, got {update_every}")
        if start_step < 0:
            raise ConfigError(f"EMA start_step must be non-negative, got {start_step}")
        self.decay = decay
        self.warmup = warmup
        self.update_every = update_every
        self.start_step = start_step
        self.use_ema_for_validation = use_ema_for_validation
        self.num_updates = 0
        self.last_step = 0
        self._shadow: dict[str, Tensor] | None = None
        # Full tensors read from a checkpoint before the model was set up to receive them.
        self._pending: dict[str, Tensor] | None = None
        # The trained weights (local parts) while the EMA weights are swapped in.
        self._backup: dict[str, Tensor] | None = None

    # ------------------------------------------------------------------ the average

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if self.warmup:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @property
    def shadow(self) -> dict[str, Tensor]:
        """The EMA weights by parameter name (fp32; DTensor shards under FSDP2). Empty before fit."""
        return dict(self._shadow or {})

    def _trainable(self, pl_module: LightningModule) -> dict[str, Tensor]:
        # A VSRMethod names its generator: discriminators and fake scores are not averaged.
        names = getattr(pl_module, "generator_parameter_names", None)
        if callable(names):
            params = dict(pl_module.named_parameters())
            return {name: params[name] for name in names()}
        return {name: p for name, p in pl_module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def _build(self, pl_module: LightningModule) -> None:
        if self._shadow is None:
            self._shadow = {
                name: p.detach().to(torch.float32, copy=True) for name, p in self._trainable(pl_module).items()
            }
        if self._pending is not None:
            self._load_full(pl_module, self._pending)
            self._pending = None

    @torch.no_grad()
    def _load_full(self, pl_module: LightningModule, full: dict[str, Tensor]) -> None:
        assert self._shadow is not None
        missing = [name for name in self._shadow if name not in full]
        unused = [name for name in full if name not in self._shadow]
        if missing or unused:
            rank_zero_warn(
                f"EMA weights in the checkpoint do not match the trainable parameters: {len(missing)} missing "
                f"(started from the loaded weights, e.g. {missing[:3]}), {len(unused)} unused (e.g. {unused[:3]})"
            )
        params = dict(pl_module.named_parameters())
        for name, shadow in self._shadow.items():
            target = _local(shadow)
            source = _local_part_of(full[name], shadow) if name in full else _local(params[name])
            if source.shape != target.shape:
                raise CheckpointError(
                    f"EMA weight '{name}' in the checkpoint has shape {tuple(full[name].shape)}, "
                    f"the model's parameter has {tuple(shadow.shape)}"
                )
            target.copy_(source)

    @torch.no_grad()
    def _follow_weights(self, pl_module: LightningModule) -> None:
        assert self._shadow is not None
        params = dict(pl_module.named_parameters())
        for name, shadow in self._shadow.items():
            _local(shadow).copy_(_local(params[name]))

    @torch.no_grad()
    def _update(self, pl_module: LightningModule, decay: float) -> None:
        assert self._shadow is not None
        params = dict(pl_module.named_parameters())
        by_dtype: dict[torch.dtype, tuple[list[Tensor], list[Tensor]]] = {}
        for name, shadow in self._shadow.items():
            param = _local(params[name])
            shadows, values = by_dtype.setdefault(param.dtype, ([], []))
            shadows.append(_local(shadow))
            values.append(param)
        for dtype, (shadows, values) in by_dtype.items():
            if dtype != torch.float32:
                values = [v.float() for v in values]
            # lerp(ema, p, 1 - d) = d * ema + (1 - d) * p
            torch._foreach_lerp_(shadows, values, 1.0 - decay)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

        if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy)):
            # Their flat parameters are neither whole tensors nor DTensors with a known layout.
            raise ConfigError(
                f"the EMA callback supports DDP and FSDP2 (ModelParallelStrategy), not {type(trainer.strategy).__name__}; "
                "use --trainer.strategy ModelParallelStrategy for sharded training"
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After the method's on_fit_start, which may load --model.init_from weights.
        self._build(pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        # Several batches share one optimizer step under gradient accumulation: update once.
        if step <= self.last_step or self._shadow is None:
            return
        self.last_step = step
        if step < self.start_step:
            self._follow_weights(pl_module)
        elif step % self.update_every == 0:
            self._update(pl_module, decay=self.current_decay())
            self.num_updates += 1

    # ------------------------------------------------------------------ evaluation with EMA weights

    @torch.no_grad()
    def swap_in(self, pl_module: LightningModule) -> None:
        """Put the EMA weights into the model, keeping the trained ones aside (no-op if already in)."""
        if self._backup is not None or self._shadow is None:
            return
        _reshard(pl_module)
        params = dict(pl_module.named_parameters())
        self._backup = {}
        for name, shadow in self._shadow.items():
            param = _local(params[name])
            self._backup[name] = param.clone()
            param.copy_(_local(shadow))

    @torch.no_grad()
    def swap_out(self, pl_module: LightningModule) -> None:
        """Restore the trained weights after :meth:`swap_in` (no-op otherwise)."""
        if self._backup is None:
            return
        _reshard(pl_module)
        params = dict(pl_module.named_parameters())
        for name, value in self._backup.items():
            _local(params[name]).copy_(value)
        self._backup = None

    def _start_evaluation(self, pl_module: LightningModule) -> None:
        if not self.use_ema_for_validation or (self._shadow is None and self._pending is None):
            return
        self._build(pl_module)
        self.swap_in(pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_evaluation(pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Runs before ModelCheckpoint's on_validation_end (Lightning puts checkpoint callbacks
        # last), so checkpoints hold the trained weights.
        self.swap_out(pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_evaluation(pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.swap_out(pl_module)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.swap_out(pl_module)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_updates = int(state_dict["num_updates"])
        self.last_step = int(state_dict["last_step"])

    @torch.no_grad()
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._shadow is None:
            return
        full_weights = {}
        for name, shadow in self._shadow.items():
            full = _full(shadow)  # every rank takes part in the gather; only rank 0 writes the file
            if trainer.is_global_zero:
                full_weights[name] = full.detach().to("cpu", copy=True)
        checkpoint[EMA_CHECKPOINT_KEY] = full_weights

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        full = checkpoint.get(EMA_CHECKPOINT_KEY)
        if full is None:
            rank_zero_warn("the checkpoint holds no EMA weights; the EMA starts from the loaded weights")
            self._pending = None
            if self._shadow is not None:  # built before the weights were loaded (FSDP2 order)
                self._follow_weights(pl_module)
            return
        # Under DDP the checkpoint is read before the model reaches its device and before the
        # shadows exist (built at fit start); under FSDP2 after: load now if we can.
        self._pending = full
        if self._shadow is not None:
            self._build(pl_module)
