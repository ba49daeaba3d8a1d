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
  leaves no folder behind;
* runs go under ``--trainer.default_root_dir`` (default ``runs``): the logger's ``save_dir``
  follows it unless set to something else;
* ``vsr fit --ckpt_path`` resumes *in the run it came from* (same ``version_N`` folder, same
  TensorBoard run, ``train.log`` appended) when the checkpoint is that run's newest, and says which
  checkpoint it took; ``last`` is the newest ``last.ckpt`` under ``<default_root_dir>/<name>`` (or
  of the run named with ``--trainer.logger.init_args.version N``), with a warning when that run
  trained on other data;
* a progress bar in ``--trainer.callbacks`` (e.g. ``TQDMProgressBar`` for log files) replaces vsr's,
  a logger whose package is missing (``WandbLogger`` without wandb) is one line naming what to install.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import lazy_instance
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from vsr_core.callbacks import BicubicBaseline, StepProgressBar, TextLog, ThroughputMonitor, VideoSampleLogger
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
    "LOGGER_PACKAGES",
    "run_folder_of",
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
    ".*Checkpoint directory .* exists and is not empty.*",  # resuming writes into the run's own folder
)

# Loggers whose package is optional: (module to import, what to pip install).
LOGGER_PACKAGES = {
    "WandbLogger": ("wandb", "'vsr[wandb]'"),
    "MLFlowLogger": ("mlflow", "mlflow"),
    "CometLogger": ("comet_ml", "comet-ml"),
    "NeptuneLogger": ("neptune", "neptune"),
}

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
        "default_root_dir": DEFAULT_RUN_DIR,
        # vsr prints its own parameter summary (VSRMethod.on_fit_start); Lightning's repeats it with "FLOPs: 0".
        "enable_model_summary": False,
        "logger": lazy_instance(
            TensorBoardLogger, save_dir=DEFAULT_RUN_DIR, name=DEFAULT_LOGGER_NAME, default_hp_metric=False
        ),
        # Always added; `checkpoint` and `samples` are configurable instead (--checkpoint.*, --samples.*).
        "callbacks": [
            StepProgressBar(),
            LearningRateMonitor(logging_interval="step"),
            ThroughputMonitor(),
            BicubicBaseline(),
            TextLog(),
        ],
    }


def latest_checkpoint(run_dir: Path, version: int | str | None = None) -> Path:
    """The newest ``last.ckpt`` of the runs under ``run_dir`` (or of ``version_<version>``), for ``--ckpt_path last``."""
    pattern = "version_*" if version is None else _version_folder(version)
    candidates = sorted(run_dir.glob(f"{pattern}/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        where = run_dir if version is None else run_dir / pattern
        raise CheckpointError(f"--ckpt_path last: no checkpoints/last.ckpt under '{where}'; pass --ckpt_path PATH")
    return candidates[-1]


def run_folder_of(checkpoint: str | os.PathLike) -> tuple[Path, str, int] | None:
    """``(save_dir, name, N)`` when ``checkpoint`` lies in ``<save_dir>/<name>/version_N/checkpoints/``, else None."""
    path = Path(checkpoint)
    if path.parent.name != "checkpoints" or len(path.parents) < 4:
        return None
    match = _VERSION.fullmatch(path.parents[1].name)
    if match is None:
        return None
    return path.parents[3], path.parents[2].name, int(match.group(1))


def _is_newest_checkpoint(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` is ``last.ckpt`` or the most recent ``*.ckpt`` of its folder (a resume, not a branch)."""
    if checkpoint.name == "last.ckpt":
        return True
    others = [p for p in checkpoint.parent.glob("*.ckpt") if p != checkpoint]
    mtime = checkpoint.stat().st_mtime
    return all(p.stat().st_mtime <= mtime for p in others)


# Set from the model when parsing (parser.link_arguments): not part of what the user chose for the data.
_LINKED = {"data.init_args.scale"}


def _data_differences(saved: dict, current: dict, prefix: str = "data") -> list[str]:
    """``["data.init_args.crop_size: 64 -> 96", ...]`` between two ``data`` config sections."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b, path = saved.get(key), current.get(key), f"{prefix}.{key}"
        if path in _LINKED:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _data_differences(a, b, path)
        elif a != b:
            out.append(f"{path}: {a} -> {b}")
    return out


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
        self._resume_step: int | None = None
        self._last_note = ""
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
            {
                "checkpoint.save_last": True,
                "checkpoint.filename": "step{step:06d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(VideoSampleLogger, "samples")
        # The method owns the scale; the data module produces LQ clips for it (when it takes one).
        parser.link_arguments("model.init_args.scale", "data.init_args.scale", apply_on="parse")

    # ------------------------------------------------------------------ checkpoints

    def _parse_ckpt_path(self) -> None:
        """Lightning's re-parse of a checkpoint's init arguments, after :func:`checked_checkpoint` (``last`` resolved first)."""
        if not self.config.get("subcommand"):
            return
        config = self.config[self.config.subcommand]
        if config.get("weights_only") is False:
            raise ConfigError(
                "--weights_only false is not supported: vsr loads checkpoints with weights_only=true only"
            )
        if config.get("ckpt_path") == "last":
            self._resolve_last(config)
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path == "last":  # no logger to say where runs are: Lightning's own `last`
            return
        checkpoint = checked_checkpoint(ckpt_path)
        self._resume_step = checkpoint.get("global_step")
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)  # never imported: vsr instantiates the class itself
        if not hparams:
            return
        # The class checked_checkpoint resolved among the installed plugins (also for checkpoints
        # written outside the CLI, whose hyper_parameters carry no _class_path).
        hparams.pop("_class_path", None)
        model = {"class_path": class_path(method_class_of(checkpoint, ckpt_path)), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({self.config.subcommand: {"model": model}}, self.config)

    def _resolve_last(self, config: Any) -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` under ``<save_dir>/<name>`` (or the named version)."""
        init_args = self._run_logger_args(config)
        if init_args is None:
            return
        root = Path(init_args.save_dir) / str(init_args.name or "")
        named = getattr(init_args, "version", None)
        found = latest_checkpoint(root, named)
        runs = len(list(root.glob("version_*/checkpoints/last.ckpt")))
        config.ckpt_path = str(found)
        if named is None and runs > 1:
            self._last_note = (
                f"; the newest of {runs} runs under {root} (another: --trainer.logger.init_args.version N)"
            )

    def _run_logger_args(self, config: Any) -> Any:
        """The init args of the run's TensorBoard/CSV logger with vsr's rules applied (root dir, ``auto`` name), or None."""
        logger = config.trainer.logger
        init_args = getattr(logger, "init_args", None)
        if init_args is None:
            return None
        # Any logger (TensorBoard, CSV, W&B, ...): `auto` names the run after the method; the runs go
        # under --trainer.default_root_dir unless save_dir says otherwise.
        if getattr(init_args, "name", None) == DEFAULT_LOGGER_NAME:
            init_args.name = str(config.model.class_path).rsplit(".", 1)[-1]
        root = config.trainer.get("default_root_dir")
        if root is not None and str(getattr(init_args, "save_dir", None)) in (DEFAULT_RUN_DIR, "."):
            init_args.save_dir = str(root)
        logger_class = _logger_class(logger)
        if logger_class is None or not issubclass(logger_class, (TensorBoardLogger, CSVLogger)):
            return None
        return init_args

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
        chosen = config.get("callbacks") or []
        chosen = chosen if isinstance(chosen, list) else [chosen]
        if config.get("enable_progress_bar") is False or any(isinstance(c, ProgressBar) for c in chosen):
            # e.g. --trainer.callbacks+=TQDMProgressBar for SLURM logs: it replaces vsr's rich bar
            defaults = [c for c in defaults if not isinstance(c, RichProgressBar)]
        if config.get("logger") is False:
            defaults = [c for c in defaults if not isinstance(c, (LearningRateMonitor, TextLog))]
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": defaults}
        return super()._instantiate_trainer(config, callbacks)

    def _check_logger_packages(self, logger: Any) -> None:
        """One line naming the package a chosen logger needs (instead of Lightning's 80-line traceback)."""
        for item in logger if isinstance(logger, list) else [logger]:
            path = getattr(item, "class_path", None) or (
                type(item).__name__ if item not in (None, True, False) else ""
            )
            name = str(path).rsplit(".", 1)[-1]
            if name in LOGGER_PACKAGES:
                module, install = LOGGER_PACKAGES[name]
                if importlib.util.find_spec(module) is None:
                    raise ConfigError(
                        f"--trainer.logger {name} needs the {module} package, which is not installed: pip install {install}"
                    )

    def _resume_in_its_run(self, config: Any, init_args: Any) -> None:
        """``vsr fit --ckpt_path`` of a run's newest checkpoint continues in that run's folder."""
        ckpt_path = config.get("ckpt_path")
        place = run_folder_of(ckpt_path) if ckpt_path and Path(ckpt_path).is_file() else None
        step = f" (step {self._resume_step})" if self._resume_step is not None else ""
        named = getattr(init_args, "version", None)
        if place is None or (named is not None and _version_folder(named) != f"version_{place[2]}"):
            _say(f"resuming from {ckpt_path}{step}{self._last_note}")  # the user chose the run folder
            return
        save_dir, name, version = place
        run_dir = save_dir / name / f"version_{version}"
        if not _is_newest_checkpoint(Path(ckpt_path)):
            _say(f"resuming from {ckpt_path}{step}, an earlier checkpoint of {run_dir}: continuing in a new run")
            return
        init_args.save_dir, init_args.name, init_args.version = str(save_dir), name, version
        self._pinned_logger_args = init_args  # the saved config.yaml must not pin the number either
        _say(f"resuming from {ckpt_path}{step} in {run_dir}{self._last_note}")
        saved = run_dir / "config.yaml"
        if saved.is_file():
            try:
                before = (yaml.safe_load(saved.read_text()) or {}).get("data") or {}
            except (OSError, yaml.YAMLError):
                return
            differences = _data_differences(_plain(before), _plain(config.data.as_dict()))
            if differences:
                more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
                _say(f"warning: that run trained on other data: {'; '.join(differences[:3])}{more}")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if trainer.precision is None:
            trainer.precision = default_precision(trainer.accelerator)
        self._check_logger_packages(trainer.logger)
        init_args = self._run_logger_args(config)
        if init_args is not None and self.subcommand == "fit" and config.get("ckpt_path"):
            self._resume_in_its_run(config, init_args)
        elif config.get("ckpt_path"):
            step = f" (step {self._resume_step})" if self._resume_step is not None else ""
            _say(
                f"{'resuming from' if self.subcommand == 'fit' else 'using'} {config.ckpt_path}{step}{self._last_note}"
            )
        if init_args is not None:
            self._pin_run_folder(init_args)


def _version_folder(version: int | str) -> str:
    """The folder TensorBoard/CSV loggers use for ``version``: ``version_3`` for 3, the string itself otherwise."""
    return f"version_{version}" if isinstance(version, int) or str(version).isdigit() else str(version)


def _say(message: str) -> None:
    """One line on stderr, from global rank 0 only (every rank of a DDP run parses the command)."""
    if rank_zero_only.rank == 0:
        print(message, file=sys.stderr)


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively (a saved YAML config and a live one compare equal)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
