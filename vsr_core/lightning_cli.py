"""``vsr fit|validate|test|predict``: vsr's LightningCLI (subclass mode, trainer defaults, safe resume).

Beyond LightningCLI:

* methods are any installed :class:`~vsr_core.method.VSRMethod`; data modules any
  ``LightningDataModule`` (default :class:`~vsr_core.data.VideoDataModule` on the sample clips;
  ``vsr predict --data vsr_core.inference.VideoFilesDataModule`` for whole videos);
* ``--ckpt_path FILE`` is checked before Lightning touches it: read once with
  ``weights_only=True``, its method class must be an installed plugin's and its recorded init
  arguments may name only classes :mod:`vsr_core.init_args` builds; Lightning then loads it with
  ``weights_only=True`` too (``--weights_only false`` is refused);
* every run gets its own ``version_N`` folder, created atomically (:func:`allocate_version`), so two
  runs started at the same moment never share one; a run that fails before writing a checkpoint
  leaves no folder behind.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import lazy_instance
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from vsr_core.callbacks import StepProgressBar, ThroughputMonitor, VideoSampleLogger
from vsr_core.checkpoint import method_class_of, read_checkpoint
from vsr_core.data import VideoDataModule
from vsr_core.errors import CheckpointError, ConfigError
from vsr_core.init_args import check_init_args
from vsr_core.method import VSRMethod
from vsr_core.plugins import class_path

__all__ = [
    "DEFAULT_LOGGER_NAME",
    "DEFAULT_RUN_DIR",
    "QUIET_WARNINGS",
    "VSRCLI",
    "allocate_version",
    "checked_checkpoint",
    "default_precision",
    "latest_checkpoint",
    "trainer_defaults",
]

DEFAULT_RUN_DIR = "runs"
DEFAULT_LOGGER_NAME = "auto"

# Messages that are expected for every vsr run and only hide the ones that matter.
QUIET_WARNINGS = (
    ".*LightningCLI's args parameter is intended.*",  # we pass argv explicitly after resolving method names
    ".*module\\(s\\) in eval mode at the start of training.*",  # frozen VAEs/codecs stay in eval on purpose
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*is smaller than the logging interval.*",
)

_VERSION = re.compile(r"version_(\d+)")


# What `vsr fit --model X` does with no other argument: a short run that stops by itself, checkpoints,
# validates on held-out clips and logs to TensorBoard. Real configs override all of it.
def trainer_defaults() -> dict[str, Any]:
    """Fresh trainer defaults per CLI instance (callback objects must not be shared between runs)."""
    return {
        "max_steps": 400,
        "val_check_interval": 100,
        "check_val_every_n_epoch": None,
        "limit_val_batches": 4,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 10,
        "logger": lazy_instance(TensorBoardLogger, save_dir=DEFAULT_RUN_DIR, name=DEFAULT_LOGGER_NAME),
        # Always added; `checkpoint` and `samples` are configurable instead (--checkpoint.*, --samples.*).
        "callbacks": [StepProgressBar(), LearningRateMonitor(logging_interval="step"), ThroughputMonitor()],
    }


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest ``last.ckpt`` of any version under a run directory (for ``--ckpt_path last``)."""
    candidates = sorted(run_dir.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise CheckpointError(f"--ckpt_path last: no checkpoints/last.ckpt under '{run_dir}'; pass --ckpt_path PATH")
    return candidates[-1]


def default_precision(accelerator: Any) -> str:
    """bf16-mixed when training will run on a CUDA GPU, full fp32 otherwise (CPU has no fast bf16)."""
    name = str(getattr(accelerator, "class_path", accelerator) or "auto").lower()
    on_gpu = torch.cuda.is_available() and ("auto" in name or "gpu" in name or "cuda" in name)
    return "bf16-mixed" if on_gpu else "32-true"


def _taken_versions(root: Path) -> list[int]:
    """The ``N`` of every ``version_N`` under ``root`` (a snapshot: others may create more meanwhile)."""
    return [int(m.group(1)) for name in os.listdir(root) if (m := _VERSION.fullmatch(name))]


def allocate_version(root: str | os.PathLike) -> int:
    """Create ``root/version_N`` for the next free ``N`` and return ``N``; safe against concurrent runs.

    ``os.mkdir`` either creates the folder or fails because it exists, atomically, so two processes
    (or threads) calling this at the same moment get different folders: the loser of a race moves
    on to the next number.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = max(_taken_versions(root), default=-1) + 1
    while True:
        try:
            os.mkdir(root / f"version_{n}")
            return n
        except FileExistsError:
            n += 1


def checked_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``path`` read with ``weights_only=True`` after checking that nothing in it would run code.

    Its method class must be an installed plugin's, and its recorded init arguments may only name
    classes vsr builds (:mod:`vsr_core.init_args`): LightningCLI would otherwise import (and
    jsonargparse instantiate) whatever the file names when it re-parses them into the config.

    Raises:
        CheckpointError: missing, unreadable or refused file (one line).
    """
    checkpoint = read_checkpoint(path)
    cls = method_class_of(checkpoint, path)
    check_init_args(cls, checkpoint.get("hyper_parameters") or {}, f"checkpoint '{path}'", CheckpointError)
    return checkpoint


def _logger_class(logger: Any) -> type | None:
    path = getattr(logger, "class_path", None)
    if not isinstance(path, str):
        return None
    module_name, _, name = path.rpartition(".")
    module = sys.modules.get(module_name)  # jsonargparse imported it while parsing the user's config
    return getattr(module, name, None) if module is not None else None


class VSRCLI(LightningCLI):
    """LightningCLI for vsr: methods and data modules in subclass mode, vsr's trainer defaults (see the module doc)."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        self._created_folders: list[Path] = []  # run folders this process created, deepest first
        self._pinned_logger_args: Any = None
        try:
            super().__init__(
                VSRMethod,
                LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                auto_configure_optimizers=False,
                args=args,
                run=run,
                **kwargs,
            )
        except BaseException:
            self._discard_run_folder()
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"data": {"class_path": f"{VideoDataModule.__module__}.{VideoDataModule.__name__}"}})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.filename": "step{step:06d}", "checkpoint.auto_insert_metric_name": False}
        )
        parser.add_lightning_class_args(VideoSampleLogger, "samples")
        # The method owns the scale; the data module produces LQ clips for it (when it takes one).
        parser.link_arguments("model.init_args.scale", "data.init_args.scale", apply_on="parse")

    # ------------------------------------------------------------------ checkpoints

    def _parse_ckpt_path(self) -> None:
        """Lightning's re-parse of a checkpoint's init arguments, after :func:`checked_checkpoint`."""
        if not self.config.get("subcommand"):
            return
        config = self.config[self.config.subcommand]
        if config.get("weights_only") is False:
            raise ConfigError("--weights_only false is not supported: vsr loads checkpoints with weights_only=true only")
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path == "last":  # `last` is resolved (and checked) before instantiation
            return
        checkpoint = checked_checkpoint(ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)  # never imported: vsr instantiates the class itself
        if not hparams:
            return
        # The class checked_checkpoint resolved among the installed plugins (also for checkpoints
        # written outside the CLI, whose hyper_parameters carry no _class_path).
        hparams.pop("_class_path", None)
        model = {"class_path": class_path(method_class_of(checkpoint, ckpt_path)), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({self.config.subcommand: {"model": model}}, self.config)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()):
            kwargs["weights_only"] = True  # Lightning's own torch.load of --ckpt_path
        return kwargs

    # ------------------------------------------------------------------ run folders

    def _pin_run_folder(self, init_args: Any) -> None:
        """Create this run's ``version_N`` atomically and pin the logger to it (rank 0 of a run only)."""
        if self.subcommand is None or rank_zero_only.rank != 0:
            return
        if getattr(init_args, "version", None) is not None or not getattr(init_args, "save_dir", None):
            return
        root = Path(init_args.save_dir) / str(init_args.name or "")
        missing = [folder for folder in [root, *root.parents] if not folder.exists()]
        version = allocate_version(root)
        init_args.version = version
        self._created_folders = [root / f"version_{version}", *missing]
        self._pinned_logger_args = init_args

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # The logger is built with the folder it got; the saved config.yaml must not pin that
        # number, or re-running it (`vsr fit -c config.yaml`) would write into the same folder.
        pinned, self._pinned_logger_args = self._pinned_logger_args, None
        if pinned is not None:
            pinned.version = None

    def _discard_run_folder(self) -> None:
        """After a failure: remove this run's folder unless it holds a checkpoint (then it is worth keeping)."""
        folders, self._created_folders = self._created_folders, []
        if not folders or any(folders[0].rglob("*.ckpt")):
            return
        shutil.rmtree(folders[0], ignore_errors=True)
        for folder in folders[1:]:  # parents this run created, if nothing else went there
            try:
                folder.rmdir()
            except OSError:
                break

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        # The default callbacks must yield to the user's switches instead of contradicting them.
        defaults = list(self.trainer_defaults.get("callbacks", []))
        if config.get("enable_progress_bar") is False:
            defaults = [c for c in defaults if not isinstance(c, RichProgressBar)]
        if config.get("logger") is False:
            defaults = [c for c in defaults if not isinstance(c, LearningRateMonitor)]
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": defaults}
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if trainer.precision is None:
            trainer.precision = default_precision(trainer.accelerator)
        logger = trainer.logger
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and getattr(init_args, "name", None) == DEFAULT_LOGGER_NAME:
            init_args.name = str(config.model.class_path).rsplit(".", 1)[-1]
        if config.get("ckpt_path") == "last" and init_args is not None:
            config.ckpt_path = str(latest_checkpoint(Path(init_args.save_dir) / str(init_args.name)))
            checked_checkpoint(config.ckpt_path)
            print(f"resuming from {config.ckpt_path}", file=sys.stderr)
        logger_class = _logger_class(logger)
        if init_args is not None and logger_class is not None and issubclass(logger_class, (TensorBoardLogger, CSVLogger)):
            self._pin_run_folder(init_args)
