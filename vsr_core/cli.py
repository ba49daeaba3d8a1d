"""The ``vsr`` command.

``vsr fit|validate|test|predict`` are LightningCLI subcommands with subclass mode for the model
(any installed :class:`~vsr_core.method.VSRMethod`) and the data (default
:class:`~vsr_core.data.VideoDataModule` on the built-in sample clips). Plugins are loaded from
entry points before parsing, so ``--model satb.SATBVR`` and ``--model SATBVR`` both work. Other
commands (``vsr plugins``, ...) live in :mod:`vsr_core.commands`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdverts())

# Messages that are expected for every vsr run and only hide the ones that matter.
QUIET_WARNINGS = (
    ".*LightningCLI's args parameter is intended.*",  # we pass argv explicitly after resolving method names
    ".*module\\(s\\) in eval mode at the start of training.*",  # frozen VAEs/codecs stay in eval on purpose
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*is smaller than the logging interval.*",
)

import torch
from jsonargparse import lazy_instance
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from vsr_core.callbacks import StepProgressBar, ThroughputMonitor, VideoSampleLogger
from vsr_core.commands import EXTRA_COMMANDS
from vsr_core.data import VideoDataModule
from vsr_core.errors import CheckpointError, VSRError
from vsr_core.method import VSRMethod
from vsr_core.plugins import load_plugins, resolve_method

DEFAULT_RUN_DIR = "runs"
DEFAULT_LOGGER_NAME = "auto"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

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


class VSRCLI(LightningCLI):
    """LightningCLI for vsr: methods and data modules in subclass mode, vsr's trainer defaults."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        super().__init__(
            VSRMethod,
            VideoDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"data": {"class_path": f"{VideoDataModule.__module__}.{VideoDataModule.__name__}"}})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.filename": "step{step:06d}", "checkpoint.auto_insert_metric_name": False}
        )
        parser.add_lightning_class_args(VideoSampleLogger, "samples")
        # The method owns the scale; the data module produces LQ clips for it.
        parser.link_arguments("model.init_args.scale", "data.init_args.scale", apply_on="parse")

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
            print(f"resuming from {config.ckpt_path}", file=sys.stderr)


def _looks_like_config(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) or os.path.exists(value) or value.startswith(("{", "class_path"))


def resolve_model_args(argv: list[str]) -> list[str]:
    """Rewrite short method names (``--model SATBVR``) to class paths; unknown names raise PluginError."""
    out = list(argv)
    for i, arg in enumerate(out):
        for flag in ("--model", "--model.class_path", "--model.help"):
            if arg == flag and i + 1 < len(out) and not out[i + 1].startswith("-"):
                if not _looks_like_config(out[i + 1]):
                    out[i + 1] = resolve_method(out[i + 1])
            elif arg.startswith(flag + "="):
                value = arg[len(flag) + 1 :]
                if not _looks_like_config(value):
                    out[i] = f"{flag}={resolve_method(value)}"
    return out


_NOISE = ("Does not validate", "Subtypes:", "Errors:", "- Expected a <class 'NoneType'>", "Given value", "- Problem with")


def _option_suggestion(class_path: str | None, option: str) -> str:
    if not class_path:
        return ""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        return ""
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    guess = difflib.get_close_matches(option, params, n=1)
    return f" Did you mean '{guess[0]}'?" if guess else ""


def one_line_parse_error(message: str, subcommand: str) -> str:
    """Condense jsonargparse's multi-line parse error into one actionable line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    class_path = re.search(r"class_path '([^']+)'", message)
    details = [line for line in lines[1:] if not line.startswith(_NOISE)]
    if key is None:
        return f"{lines[0] if lines else message} (see `vsr {subcommand} --help`)"
    where = key.group(1) + (f" ({class_path.group(1)})" if class_path else "")
    detail = "; ".join(d.rstrip(":") for d in details) or lines[0]
    hint = ""
    unknown = re.search(r"Option '([^']+)' is not accepted", message)
    if unknown:
        hint = _option_suggestion(class_path.group(1) if class_path else None, unknown.group(1))
    help_flag = f"--{key.group(1)}.help {class_path.group(1)}" if class_path else "--help"
    return f"invalid {where}: {detail}.{hint} (see `vsr {subcommand} {help_flag}`)"


def _run_extra_command(name: str, argv: list[str]) -> int:
    module_name, _, function = EXTRA_COMMANDS[name][0].partition(":")
    return int(getattr(importlib.import_module(module_name), function)(argv) or 0)


def _print_overview() -> None:
    print("usage: vsr {fit,validate,test,predict," + ",".join(EXTRA_COMMANDS) + "} [options]\n")
    print("Train and run latent-diffusion video super-resolution methods.\n")
    for name in LIGHTNING_COMMANDS:
        print(f"  {name:<10} Lightning {name} (see `vsr {name} --help`)")
    for name, (_, help_text) in EXTRA_COMMANDS.items():
        print(f"  {name:<10} {help_text}")
    print("\nExample: vsr fit --model reference.ReferenceVSR")


def vsr_error_cause(err: BaseException) -> VSRError | None:
    """The first :class:`VSRError` in ``err``'s chain of causes and contexts, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, VSRError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vsr`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help"):
            _print_overview()
            return 0
        if argv[0] in EXTRA_COMMANDS:
            return _run_extra_command(argv[0], argv[1:])
        if argv[0] in LIGHTNING_COMMANDS:
            load_plugins()
            argv = resolve_model_args(argv)
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            VSRCLI(args=argv, parser_kwargs={"exit_on_error": False})
        return 0
    except argparse.ArgumentError as err:
        print(f"error: {one_line_parse_error(str(err), argv[0])}", file=sys.stderr)
        return 2
    except VSRError as err:
        message = str(err)
        if "Original Traceback" in message:
            # Raised in a DataLoader worker: torch wraps the message with the worker's traceback.
            last = [line for line in message.splitlines() if line.strip()][-1]
            message = last.split(": ", 1)[1] if last.startswith(type(err).__module__) else last
        print(f"error: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as err:
        # jsonargparse wraps an error raised while instantiating the model (a bad pretrained=
        # folder, ...) into a ValueError listing the Union subtypes; show the VSRError inside.
        cause = vsr_error_cause(err)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return cause.exit_code


if __name__ == "__main__":
    sys.exit(main())
