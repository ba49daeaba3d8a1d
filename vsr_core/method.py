"""`VSRMethod`: the contract between the core and a method plugin.

A plugin subclasses :class:`VSRMethod` and writes two things: ``training_step`` (how the method
learns) and ``restore`` (how it turns one low-quality temporal window into a restored one).
Everything else a Lightning user expects — validation and test metrics, sample videos,
prediction, optimizers built from the config, parameter reporting, FSDP2 sharding and activation
checkpointing — comes from here, so every method gets it the same way.
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from vsr_core.errors import ConfigError, NonFiniteLossError
from vsr_core.metrics import validation_scores
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
    * ``temporal_window``: default number of frames per window for long-video inference.
    * ``frames_rule``: ``(multiple, remainder)``; a window must have ``multiple * k + remainder``
      frames (``(4, 1)`` for causal 3D VAEs, ``(1, 0)`` for any count). Default: the rule of the
      method's ``codec`` (a :class:`~vsr_core.latent.LatentCodec` attribute), else ``(1, 0)``.
    * ``spatial_multiple`` / ``min_size``: LQ frame sizes the long-video engine pads to (a multiple
      of ``spatial_multiple``, at least ``min_size``) and crops back afterwards. Default
      ``spatial_multiple``: the codec's ``spatial_factor`` divided by ``scale`` (rounded up), else 1.
    * ``tiny_init_args``: the init arguments of the method's smallest configuration (CPU, seconds);
      the test suite's every-method smoke test and ``vsr bench --dry-run`` build it.
    * optional ``make_window_fusion()`` (own long-video scheme, see docs/inference.md) and
      ``export_pretrained(directory)`` (own export layout for ``vsr export``).

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
    """

    fsdp_block_classes: ClassVar[tuple[type[nn.Module], ...]] = ()
    temporal_window: ClassVar[int] = 16
    min_size: ClassVar[int] = 1
    tiny_init_args: ClassVar[dict[str, Any]] = {}
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

        The default is a single group of every parameter with ``requires_grad``. Methods with
        several optimizers (GAN or VSD training) return e.g.
        ``{"generator": ..., "discriminator": ...}`` and use manual optimization.
        """
        return {"model": [p for p in self.parameters() if p.requires_grad]}

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

    # ------------------------------------------------------------------ randomness

    def step_generator(self, stream: int = 0, device: torch.device | None = None) -> torch.Generator:
        """A generator seeded from (run seed, global step, rank, stream).

        Methods draw training noise and timesteps from it, so a run resumed from a checkpoint
        draws exactly what the uninterrupted run would have drawn (no RNG state to save).
        """
        device = device or self.device
        rank = self.global_rank if self._trainer is not None else 0
        key = f"{torch.initial_seed()}:{self.global_step}:{rank}:{stream}".encode()
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
