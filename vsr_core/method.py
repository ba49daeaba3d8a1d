"""`VSRMethod`: the contract between the core and a method plugin.

A plugin subclasses :class:`VSRMethod` and writes two things: ``training_step`` (how the method
learns) and ``restore`` (how it turns one low-quality temporal window into a restored one).
Everything else a Lightning user expects — validation and test metrics, sample videos,
prediction, optimizers built from the config, parameter reporting, FSDP2 sharding and activation
checkpointing — comes from here, so every method gets it the same way.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from vsr_core.errors import CheckpointError, ConfigError, NonFiniteLossError
from vsr_core.metrics import validation_scores
from vsr_core.optimization import GroupSchedule, GroupStepper
from vsr_core.options import plain_hyperparameters

__all__ = ["STANDARD_SAMPLING_ARGUMENTS", "ParamGroup", "VSRMethod"]

ParamGroup = Iterable[nn.Parameter] | list[dict[str, Any]]

#: Keyword arguments every ``restore`` takes (diffusers' names); anything else is method-specific.
STANDARD_SAMPLING_ARGUMENTS = ("num_inference_steps", "guidance_scale", "generator")


class VSRMethod(LightningModule, ABC):
    """Abstract base of every video super-resolution / restoration method.

    Tensors: videos are ``[B, 3, T, H, W]`` RGB floats in ``[-1, 1]``. The batch a method receives
    holds ``hq`` ``[B,3,T,H,W]``, ``lq`` ``[B,3,T,H/s,W/s]`` (``s = scale``), ``prompt`` (list of
    ``B`` strings, ``""`` when a clip has no caption) and ``key`` (list of ``B`` clip ids).

    Subclasses implement:

    * ``training_step(batch, batch_idx)``: automatic optimization (return the loss) or manual
      (set ``self.automatic_optimization = False`` and step ``self.optimizers()``). Report losses
      through :meth:`log_losses`, which also stops training on NaN/inf.
    * :meth:`restore`: ``lq [B,3,T,h,w] -> [B,3,T,h*s,w*s]`` for one temporal window, with the
      sampling vocabulary every method shares: ``num_inference_steps``, ``guidance_scale``,
      ``generator`` (diffusers' names), plus method-specific keyword options.

    A plugin's ``__init__`` takes its own arguments and passes the core's through
    ``**kwargs`` (jsonargparse resolves them to the arguments below, so ``--model.help`` and
    ``--print_config`` still list them)::

        def __init__(self, scale: int = 4, width: int = 16, **kwargs: Any) -> None:
            super().__init__(scale=scale, **kwargs)

    Attributes read by the core (class attributes; a method may also define them as properties):

    * ``fsdp_block_classes``: the transformer/UNet block classes that FSDP2 shards one by one and
      that activation checkpointing wraps.
    * ``temporal_window``: default number of frames per window for long-video inference;
      ``temporal_overlap``: frames consecutive windows share (default a quarter of the window).
    * ``native_tile`` / ``native_tile_overlap``: the LQ tile side (pixels) the method is built for
      and the overlap of neighbouring tiles; ``vsr restore`` tiles larger frames automatically
      (default ``None``: the method needs no tiling).
    * ``frames_rule``: ``(multiple, remainder)``; a window must have ``multiple * k + remainder``
      frames (``(4, 1)`` for causal 3D VAEs, ``(1, 0)`` for any count). Default: the rule of the
      method's ``codec`` (a :class:`~vsr_core.latent.LatentCodec` attribute), else ``(1, 0)``.
    * ``spatial_multiple`` / ``min_size``: LQ frame sizes the long-video engine pads to (a multiple
      of ``spatial_multiple``, at least ``min_size``) and crops back afterwards. Default
      ``spatial_multiple``: the codec's ``spatial_factor`` divided by ``scale`` (rounded up), else 1.
    * ``tiny_init_args``: the init arguments of the method's smallest configuration (CPU, seconds);
      the test suite's every-method smoke test and ``vsr bench --dry-run`` build it.
    * ``paper_benchmarks``: :class:`vsr_core.benchmark.PaperBenchmark` settings (the paper's speed
      table) that ``benchmarks/gpu_suite.py`` measures on a GPU against the paper's time.
    * ``generator_groups``: the :meth:`parameter_groups` that form the generator — what EMA averages,
      ``vsr export`` writes and ``restore`` runs (default ``("model",)``, the single default group).
    * ``training_only_modules``: names of top-level submodules that exist only to train the
      generator (discriminators, fake/real scores, teachers, perceptual networks). They are built by
      :meth:`build_training_modules` before fit, never when a method is loaded to restore, never
      exported; their trained state is in checkpoints (exact resume) and skipped on inference loads.

    Several networks (GAN / VSD / distillation methods): set ``self.automatic_optimization = False``,
    return one group per network from :meth:`parameter_groups` and step each with
    :meth:`optimize` inside ``training_step``; clipping, accumulation, LR schedulers and the global
    step then behave as in Lightning's automatic path (:mod:`vsr_core.optimization`).

    Frozen weights read from files named by init arguments (a pretrained base, VAE, text encoder or
    teacher) are registered with :meth:`mark_rebuildable` and are not written into checkpoints.
    * optional ``make_window_fusion()`` (own long-video scheme, see docs/inference.md) and
      ``export_pretrained(directory)`` (own export layout for ``vsr export``).
    * optional **latent window protocol** ``prepare_window`` / ``denoise_step`` / ``finish_window``
      (the engine fuses overlapping windows and tiles in latent space at every solver step, see
      docs/inference.md), with ``latent_layout`` (default: from the ``codec``) mapping pixel windows
      and tiles to latent ones, and an optional ``make_latent_fusion()``.

    Args:
        scale: spatial upscaling factor ``s`` (1 for pure restoration).
        optimizer: optimizer factory, e.g. ``--model.optimizer torch.optim.AdamW
            --model.optimizer.lr 1e-4``; ``None`` uses AdamW with ``learning_rate``.
        learning_rate: learning rate of the default AdamW (ignored when ``optimizer`` is given).
        lr_scheduler: optional scheduler factory applied to every optimizer, stepped per step.
        optimizer_overrides: per parameter group options, e.g. ``{"discriminator": {"lr": 1e-5}}``
            for methods with several optimizers (see :meth:`parameter_groups`).
        gradient_checkpointing: recompute the activations of ``fsdp_block_classes`` in backward.
        val_sampling: keyword arguments passed to :meth:`restore` in validation and test
            (e.g. ``{"num_inference_steps": 1}``).
        group_schedules: per parameter group update schedule, e.g.
            ``{"discriminator": {"every": 2, "start": 1000}}`` (see :class:`GroupSchedule`).
        init_from: a checkpoint or ``vsr export`` folder of this method class whose weights start
            the run (stage sequences); unlike ``--ckpt_path`` it restores no optimizer, step or loop
            state, and it is not applied when a run resumes or a checkpoint is loaded.
        init_from_include, init_from_exclude: ``fnmatch`` patterns over state-dict keys that select
            what ``init_from`` loads (default: everything).
        init_from_strict: every selected key must exist in both, with the same shape.
        compile: ``torch.compile`` every ``fsdp_block_classes`` module (in place: state-dict names do
            not change) when the model is configured for fit; ``vsr restore --compile`` does the same
            for inference. The first steps pay the compilation.
    """

    fsdp_block_classes: ClassVar[tuple[type[nn.Module], ...]] = ()
    temporal_window: ClassVar[int] = 16
    min_size: ClassVar[int] = 1
    #: LQ tile side the method is built for; the long-video engine tiles larger frames. None: no tiling needed.
    native_tile: ClassVar[int | None] = None
    #: LQ pixels shared by neighbouring native tiles.
    native_tile_overlap: ClassVar[int] = 0
    tiny_init_args: ClassVar[dict[str, Any]] = {}
    generator_groups: ClassVar[tuple[str, ...]] = ("model",)
    training_only_modules: ClassVar[tuple[str, ...]] = ()
    #: The settings the method's paper reports speeds for (``benchmarks/gpu_suite.py`` measures them).
    paper_benchmarks: ClassVar[tuple[Any, ...]] = ()
    #: The init argument that reads a ``vsr export`` folder of this class (e.g. ``"pretrained"``);
    #: ``load_method(folder)`` passes the folder there. ``None``: the core loads the components.
    export_init_arg: ClassVar[str | None] = None

    def __init__(
        self,
        scale: int = 4,
        optimizer: OptimizerCallable | None = None,
        learning_rate: float = 1e-4,
        lr_scheduler: LRSchedulerCallable | None = None,
        optimizer_overrides: dict[str, dict[str, Any]] | None = None,
        gradient_checkpointing: bool = False,
        val_sampling: dict[str, Any] | None = None,
        group_schedules: dict[str, GroupSchedule] | None = None,
        init_from: str | None = None,
        init_from_include: tuple[str, ...] = ("*",),
        init_from_exclude: tuple[str, ...] = (),
        init_from_strict: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if scale < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale}")
        self.scale = scale
        self.optimizer_factory = optimizer
        self.learning_rate = learning_rate
        self.lr_scheduler_factory = lr_scheduler
        self.optimizer_overrides = dict(optimizer_overrides or {})
        self.gradient_checkpointing = gradient_checkpointing
        self.val_sampling = dict(val_sampling or {})
        schedules = {name: GroupSchedule.coerce(value) for name, value in (group_schedules or {}).items()}
        self._stepper = GroupStepper(self, schedules)
        self.init_from = init_from
        self.init_from_include = tuple(init_from_include)
        self.init_from_exclude = tuple(init_from_exclude)
        self.init_from_strict = init_from_strict
        self.compile_blocks_enabled = compile
        self._init_from_done = False
        self._rebuildable_ids: set[int] = set()
        self._training_modules_built = False
        self._step_at_batch_start = 0
        self._model_configured = False
        # Called here so every method records its full init arguments (Lightning collects the
        # arguments of each __init__ up the super() chain) for checkpoints and exports; option
        # groups are stored as plain dicts so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters()
        plain = plain_hyperparameters(dict(self.hparams))
        self.hparams.update(plain)

    # ------------------------------------------------------------------ size rules

    @property
    def frames_rule(self) -> tuple[int, int]:
        """Frame counts a window may have (see the class docstring); the codec's rule by default."""
        codec = self._codec()
        return tuple(codec.frames_rule) if codec is not None else (1, 0)

    @property
    def spatial_multiple(self) -> int:
        """LQ sizes are padded to a multiple of this; by default what the codec's downsampling needs."""
        codec = self._codec()
        if codec is None:
            return 1
        return max(1, -(-int(codec.spatial_factor) // self.scale))

    @property
    def temporal_overlap(self) -> int:
        """Frames consecutive temporal windows share by default: a quarter of ``temporal_window``.

        A method sets its own with a class attribute (``temporal_overlap = 4``) or in ``__init__``.
        """
        return self.__dict__.get("_temporal_overlap", int(self.temporal_window) // 4)

    @temporal_overlap.setter
    def temporal_overlap(self, value: int) -> None:
        self.__dict__["_temporal_overlap"] = int(value)

    @property
    def latent_layout(self) -> Any:
        """The :class:`~vsr_core.inference.LatentLayout` of the latent window protocol; ``None`` without a codec.

        Default: the ``codec``'s temporal/spatial factors, channels and causality (output pixels per
        latent pixel = ``codec.spatial_factor``). Override to add e.g. a transformer's patch size as
        ``latent_multiple``.
        """
        codec = self._codec()
        if codec is None:
            return None
        from vsr_core.inference.latent import LatentLayout

        return LatentLayout.from_codec(codec)

    def _codec(self) -> Any:
        from vsr_core.latent import LatentCodec

        codec = self._modules.get("codec")
        return codec if isinstance(codec, LatentCodec) else None

    # ------------------------------------------------------------------ what a method implements

    @abstractmethod
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Restore one temporal window: ``[B,3,T,h,w]`` in [-1,1] -> ``[B,3,T,h*scale,w*scale]``.

        Args:
            lq: the low-quality window.
            prompt: ``B`` captions (``None`` or ``""``: no caption).
            num_inference_steps: denoiser evaluations; ``None`` takes the method's default.
            guidance_scale: classifier-free guidance; ``None`` takes the method's default.
            generator: source of the sampling noise (reproducible restores).

        A method adds its own keyword-only options after these (listed by
        :meth:`sampling_arguments`, set with ``vsr restore --sample KEY=VALUE``).
        """

    @classmethod
    def init_argument_names(cls) -> list[str]:
        """Every init argument the class accepts, following ``**kwargs`` up to the base classes."""
        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            names += [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            if klass is VSRMethod or not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return list(dict.fromkeys(names))

    @classmethod
    def sampling_arguments(cls) -> dict[str, inspect.Parameter]:
        """The keyword arguments ``restore`` takes besides ``lq`` and ``prompt``, by name."""
        params = inspect.signature(cls.restore).parameters
        return {
            name: p
            for name, p in params.items()
            if name not in ("self", "lq", "prompt") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    def parameter_groups(self) -> dict[str, ParamGroup]:
        """The parameters each optimizer trains, by name; one optimizer per entry, in order.

        The default is a single group ``"model"`` of every parameter with ``requires_grad``
        outside the training-only modules. Methods with several optimizers (GAN or VSD training)
        return e.g. ``{"generator": ..., "discriminator": ...}`` (a list of parameters, or a list of
        torch param-group dicts, per entry), name the generator's entries in ``generator_groups``
        and step each entry with :meth:`optimize`.
        """
        return {
            "model": [
                p
                for name, p in self.named_parameters()
                if p.requires_grad and name.split(".")[0] not in self.training_only_modules
            ]
        }

    # ------------------------------------------------------------------ roles of networks

    def build_training_modules(self) -> None:
        """Build the ``training_only_modules`` (discriminators, scores, teachers, perceptual nets).

        Called once by the core before fit (and by :meth:`ensure_training_modules`); never when a
        method is loaded to restore. Frozen ones read from files should be :meth:`mark_rebuildable`.
        """

    def ensure_training_modules(self) -> None:
        """Build the training-only modules if they are not built yet (idempotent)."""
        if not self._training_modules_built:
            self._training_modules_built = True
            self.build_training_modules()

    def mark_rebuildable(self, *modules: nn.Module) -> None:
        """Declare that the frozen weights of ``modules`` are rebuilt from init arguments (files).

        Their frozen parameters and buffers are left out of checkpoints (a 5B base is already on
        disk) and may be missing when a checkpoint is loaded; trainable parts and LoRA adapters
        (also frozen ones, e.g. a base adapter in a later training stage) stay.
        """
        self._rebuildable_ids.update(id(m) for m in modules)

    def rebuildable_state_keys(self) -> set[str]:
        """State-dict keys of frozen weights in modules passed to :meth:`mark_rebuildable`.

        LoRA adapter weights (peft layers) inside such a module are never among them, frozen or
        not: an adapter trained in one stage and frozen in the next (a stage sequence) is trained
        state that no init argument rebuilds.
        """
        keys: set[str] = set()
        if not self._rebuildable_ids:
            return keys
        adapters = _adapter_tensor_ids(self)
        for prefix, module in self.named_modules():
            if id(module) not in self._rebuildable_ids:
                continue
            for key, value in module.state_dict(prefix=f"{prefix}." if prefix else "", keep_vars=True).items():
                if id(value) in adapters:
                    continue
                if not (isinstance(value, nn.Parameter) and value.requires_grad):
                    keys.add(key)
        return keys

    def generator_parameter_names(self) -> list[str]:
        """Names of the trainable parameters of the ``generator_groups`` (what EMA averages)."""
        groups = self.parameter_groups()
        missing = [name for name in self.generator_groups if name not in groups]
        if missing:
            raise ConfigError(
                f"{type(self).__name__}.generator_groups names {missing}, but its parameter groups are {list(groups)}"
            )
        ids = {id(p) for name in self.generator_groups for p in _group_parameters(groups[name])}
        return [name for name, p in self.named_parameters() if id(p) in ids]

    def _is_absent_training_key(self, key: str) -> bool:
        top = key.split(".")[0]
        return top in self.training_only_modules and self._modules.get(top) is None

    # ------------------------------------------------------------------ several optimizers

    def optimize(self, group: str, loss: torch.Tensor | Callable[[], torch.Tensor]) -> torch.Tensor | None:
        """One update of parameter group ``group`` with ``loss`` (manual optimization).

        Backward into the group's parameters only; at the end of an accumulation cycle gradients
        are averaged over ranks, clipped (``--trainer.gradient_clip_val``), the optimizer and the
        group's LR scheduler step and the gradients are zeroed. ``loss`` may be a callable, which
        is not evaluated when the group is not due (:meth:`is_due`). Returns the detached loss,
        or ``None`` when the group is not due.
        """
        if self.automatic_optimization:
            raise ConfigError(f"{type(self).__name__}.optimize needs self.automatic_optimization = False")
        names = list(self.parameter_groups())
        if group not in names:
            raise ConfigError(f"{type(self).__name__} has no parameter group '{group}'; its groups are {names}")
        if not self.is_due(group):
            return None
        index = names.index(group)
        optimizers = self.optimizers()
        optimizer = optimizers[index] if isinstance(optimizers, list) else optimizers
        schedulers = self.lr_schedulers()
        scheduler = None
        if schedulers is not None:
            scheduler = schedulers[index] if isinstance(schedulers, list) else schedulers
        params = [p for param_group in optimizer.param_groups for p in param_group["params"]]
        return self._stepper.step(group, optimizer, scheduler, params, loss)

    def is_due(self, group: str) -> bool:
        """Whether ``group`` updates in this training step (its ``group_schedules`` entry)."""
        return self._stepper.is_due(group, self._step_at_batch_start)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # Under manual optimization Lightning clips nothing; here is after AMP unscaling, before the step.
        if not self.automatic_optimization:
            self._stepper.clip(optimizer)

    @property
    def trainer(self) -> Any:  # type: ignore[override]
        return LightningModule.trainer.fget(self)

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        LightningModule.trainer.fset(self, trainer)
        stepper = self.__dict__.get("_stepper")
        if trainer is not None and stepper is not None and not self.automatic_optimization:
            # Lightning refuses clipping/accumulation with manual optimization before any hook
            # runs; optimize() does both, so the settings move there until setup() puts them back.
            stepper.take_over(trainer)

    def setup(self, stage: str) -> None:
        """Core set-up before fit (call ``super().setup(stage)`` when overriding)."""
        if not self.automatic_optimization:
            self._stepper.give_back(self.trainer)
            self._stepper.used = False
        if stage == "fit":
            self.ensure_training_modules()
            self._stepper.check_groups(self.parameter_groups())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("training_step")
        if step is None or getattr(step, "_vsr_counts_steps", False):
            return

        @functools.wraps(step)
        def training_step(self: VSRMethod, *args: Any, **kw: Any) -> Any:
            self._step_at_batch_start = self.global_step
            out = step(self, *args, **kw)
            if not self.automatic_optimization and self._trainer is not None:
                self._stepper.end_of_training_step()
            return out

        training_step._vsr_counts_steps = True  # type: ignore[attr-defined]
        cls.training_step = training_step  # type: ignore[method-assign]

    # ------------------------------------------------------------------ losses

    def log_losses(self, losses: dict[str, torch.Tensor], total: torch.Tensor | None = None) -> None:
        """Log ``train/<name>`` for each loss (and ``train/loss`` for ``total``); stop on NaN/inf.

        Raises:
            NonFiniteLossError: naming the global step and the first non-finite loss.
        """
        named = dict(losses)
        if total is not None:
            named["loss"] = total
        batch_size = getattr(self, "_current_batch_size", None)
        for name, value in named.items():
            value = value.detach()
            if not torch.isfinite(value).all():
                raise NonFiniteLossError(
                    f"training stopped at step {self.global_step}: loss '{name}' is {value.float().mean().item()} "
                    "(lower the learning rate, check the data, or train in fp32)"
                )
            self.log(f"train/{name}", value.float().mean(), prog_bar=name == "loss", batch_size=batch_size)

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._current_batch_size = batch["hq"].shape[0]
        self._step_at_batch_start = self.global_step

    # ------------------------------------------------------------------ randomness

    def step_generator(self, stream: int = 0, device: torch.device | None = None) -> torch.Generator:
        """A generator seeded from (run seed, global step, rank, stream).

        Methods draw training noise and timesteps from it, so a run resumed from a checkpoint
        draws exactly what the uninterrupted run would have drawn (no RNG state to save).
        """
        device = device or self.device
        rank = self.global_rank if self._trainer is not None else 0
        # The step at the start of the batch: optimizer steps inside a training step do not move it.
        step = self._step_at_batch_start if self._trainer is not None and self.trainer.training else self.global_step
        key = f"{torch.initial_seed()}:{step}:{rank}:{stream}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & ((1 << 63) - 1)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        return generator

    # ------------------------------------------------------------------ evaluation steps

    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        lq, hq = batch["lq"], batch["hq"]
        restored = self.restore(lq, prompt=batch.get("prompt"), **self.val_sampling)
        if restored.shape != hq.shape:
            raise RuntimeError(
                f"{type(self).__name__}.restore returned {tuple(restored.shape)} for an input of "
                f"{tuple(lq.shape)}; expected {tuple(hq.shape)} (scale {self.scale})"
            )
        restored = restored.clamp(-1, 1)
        batch_size = hq.shape[0]
        scores = validation_scores(restored, hq)  # psnr, ssim, warp_error, flicker; each [B]
        for name, value in scores.items():
            self.log(f"{stage}/{name}", value.mean(), batch_size=batch_size, sync_dist=True, prog_bar=name == "psnr")
        return {"lq": lq, "restored": restored, "hq": hq}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        if "path" in batch and "lq" not in batch:
            # Whole video files (vsr predict): RestorePredictionWriter streams them through the
            # long-video engine, which calls `restore` window by window.
            return batch
        restored = self.restore(batch["lq"], prompt=batch.get("prompt"), **self.val_sampling).clamp(-1, 1)
        return {"restored": restored, "key": batch.get("key")}

    # ------------------------------------------------------------------ optimizers

    def configure_optimizers(self) -> Any:
        groups = self.parameter_groups()
        if len(groups) > 1 and self.automatic_optimization:
            raise ConfigError(
                f"{type(self).__name__} has {len(groups)} parameter groups {list(groups)}: set "
                "self.automatic_optimization = False and step each with self.optimize(name, loss)"
            )
        unknown = set(self.optimizer_overrides) - set(groups)
        if unknown:
            raise ConfigError(
                f"optimizer_overrides names {sorted(unknown)}, but {type(self).__name__} has parameter groups {list(groups)}"
            )
        configs = []
        for name, params in groups.items():
            params = list(params)
            if not params:
                raise ConfigError(f"parameter group '{name}' of {type(self).__name__} has no trainable parameters")
            if not isinstance(params[0], dict):
                params = [{"params": params}]
            params = [{**group, **self.optimizer_overrides.get(name, {})} for group in params]
            if self.optimizer_factory is None:
                optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=0.0)
            else:
                optimizer = self.optimizer_factory(params)
            config: dict[str, Any] = {"optimizer": optimizer}
            if self.lr_scheduler_factory is not None:
                config["lr_scheduler"] = {
                    "scheduler": self.lr_scheduler_factory(optimizer),
                    "interval": "step",
                    "name": f"lr/{name}",
                }
            configs.append(config)
        return configs[0] if len(configs) == 1 else configs

    # ------------------------------------------------------------------ parameters

    def parameter_report(self) -> dict[str, tuple[int, int]]:
        """``{child module name: (parameters, trainable parameters)}`` for the top-level children."""
        report = {}
        for name, child in self.named_children():
            total = sum(p.numel() for p in child.parameters())
            trainable = sum(p.numel() for p in child.parameters() if p.requires_grad)
            report[name] = (total, trainable)
        return report

    def on_fit_start(self) -> None:
        # Here, not in setup: only now does the trainer know whether this fit resumes (--ckpt_path).
        if self.init_from and not self._init_from_done and self.trainer.ckpt_path is None:
            from vsr_core.init_from import load_init_weights

            load_init_weights(
                self, self.init_from, self.init_from_include, self.init_from_exclude, self.init_from_strict
            )
            self._init_from_done = True
        report = self.parameter_report()
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        lines = [f"{type(self).__name__}: {total / 1e6:.3f}M parameters, {trainable / 1e6:.3f}M trainable"]
        for name, (n, t) in report.items():
            state = "trainable" if t == n and n else ("frozen" if t == 0 else f"{t / 1e6:.3f}M trainable")
            lines.append(f"  {name:<24} {n / 1e6:10.3f}M  {state}")
        rank_zero_info("\n".join(lines))

    # ------------------------------------------------------------------ scale-out

    def configure_model(self) -> None:
        """Shard ``fsdp_block_classes`` with FSDP2 under ``ModelParallelStrategy``; else checkpoint them."""
        if self._model_configured:
            return
        self._model_configured = True
        mesh = self.device_mesh
        if mesh is not None:
            from vsr_core.distributed import shard_method

            precision = str(self.trainer.precision)
            shard_method(
                self,
                mesh,
                self.fsdp_block_classes,
                # shard_method applies bf16 only on CUDA meshes; the module is not on its device yet here.
                mixed_precision=precision.startswith("bf16"),
                activation_checkpointing=self.gradient_checkpointing,
            )
        elif self.gradient_checkpointing:
            self.enable_activation_checkpointing()
        if self.compile_blocks_enabled:
            self.compile_blocks()

    def compile_blocks(self, **options: Any) -> int:
        """``torch.compile`` each ``fsdp_block_classes`` module in place; returns how many were compiled.

        ``options`` go to ``nn.Module.compile`` (``mode``, ``backend``, ``dynamic``, ...). Blocks, not the
        whole method, are compiled: each is compiled once and reused by every repeat of its class.
        """
        count = 0
        for module in self.modules():
            if (
                isinstance(module, tuple(self.fsdp_block_classes))
                and getattr(module, "_compiled_call_impl", None) is None
            ):
                module.compile(**options)
                count += 1
        return count

    def enable_activation_checkpointing(self) -> None:
        """Recompute block activations in backward; override to use a backbone's own switch."""
        from vsr_core.distributed import apply_activation_checkpointing

        apply_activation_checkpointing(self, self.fsdp_block_classes)

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets `vsr_core.checkpoint.load_method` find the class (and name the plugin if it is missing)
        # for checkpoints written outside the CLI too.
        from vsr_core.plugins import class_path  # plugins imports this module

        checkpoint["vsr_method"] = {"class_path": class_path(type(self)), "scale": self.scale}
        # Frozen weights that init arguments rebuild (a pretrained base, VAE, teacher) stay on disk where they are.
        for key in self.rebuildable_state_keys():
            checkpoint["state_dict"].pop(key, None)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load weights, allowing what the method rebuilds and what only training needs.

        Missing keys of :meth:`mark_rebuildable` modules are fine (they came from their files);
        keys of ``training_only_modules`` that were not built (a method loaded to restore) are
        skipped. Anything else that does not fit raises one-line :class:`CheckpointError` when
        ``strict``.
        """
        state_dict = {k: v for k, v in state_dict.items() if not self._is_absent_training_key(k)}
        own = self.state_dict()
        for key, value in state_dict.items():
            if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape):
                raise CheckpointError(
                    f"the weights do not fit {type(self).__name__}: {key} has shape {tuple(value.shape)} in them, "
                    f"{tuple(own[key].shape)} in the method (were they written with other size arguments?)"
                )
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            allowed = self.rebuildable_state_keys()
            missing = [k for k in result.missing_keys if k not in allowed]
            if missing or result.unexpected_keys:
                raise CheckpointError(
                    f"the weights do not fit {type(self).__name__}: {len(missing)} missing (e.g. {missing[:3]}), "
                    f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]}); "
                    "were they written with other init arguments?"
                )
        return result


def _group_parameters(group: ParamGroup) -> list[nn.Parameter]:
    """The parameters of one :meth:`VSRMethod.parameter_groups` entry (a list, or torch group dicts)."""
    items = list(group)
    if items and isinstance(items[0], dict):
        return [p for entry in items for p in entry["params"]]
    return items


def _adapter_tensor_ids(module: nn.Module) -> set[int]:
    """``id`` of every tensor held by a peft adapter (LoRA A/B, embeddings, magnitudes) inside ``module``."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # peft is a dependency; without it no module can hold adapters
        return set()
    ids: set[int] = set()
    for layer in module.modules():
        if not isinstance(layer, BaseTunerLayer):
            continue
        for name in (*layer.adapter_layer_names, *layer.other_param_names):
            held = getattr(layer, name, None)
            if isinstance(held, nn.Module):
                ids.update(id(t) for t in (*held.parameters(), *held.buffers()))
    return ids
