"""The ``vsr`` command.

``vsr fit|validate|test|predict`` are LightningCLI subcommands (:class:`~vsr_core.lightning_cli.VSRCLI`)
with subclass mode for the model (any installed :class:`~vsr_core.method.VSRMethod`) and the data
(default :class:`~vsr_core.data.VideoDataModule` on the built-in sample clips). Plugins are loaded from
entry points before parsing, so ``--model satb.SATBVR`` and ``--model SATBVR`` both work. Other
commands (``vsr plugins``, ...) live in :mod:`vsr_core.commands`.

This module imports nothing heavy at load time: :func:`main` starts with its error guard, so Ctrl-C
(or SIGTERM) while torch and Lightning are still being imported ends in one line as well.
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
from typing import Any

from vsr_core import interrupts
from vsr_core.commands import EXTRA_COMMANDS
from vsr_core.errors import VSRError

__all__ = [
    "LIGHTNING_COMMANDS",
    "main",
    "one_line_parse_error",
    "overlay_base",
    "resolve_model_args",
    "version_line",
    "vsr_error_cause",
]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

# Names that moved to vsr_core.lightning_cli (importing them from here keeps working, lazily).
_MOVED = {
    "VSRCLI",
    "DEFAULT_RUN_DIR",
    "DEFAULT_LOGGER_NAME",
    "QUIET_WARNINGS",
    "trainer_defaults",
    "latest_checkpoint",
    "default_precision",
    "allocate_version",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module("vsr_core.lightning_cli"), name)
    raise AttributeError(f"module 'vsr_core.cli' has no attribute {name!r}")


# Lightning's start-up lines that vsr's one-line run summary replaces (device, precision, seed), and its adverts.
_DROPPED_PREFIXES = (
    "GPU available",
    "TPU available",
    "HPU available",
    "IPU available",
    "Seed set to",
    "LOCAL_RANK:",
    "Restoring states from the checkpoint path",  # vsr says which checkpoint it resumes from, and where
    "Restored all states from the checkpoint",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "litlogger" not in message.lower() and not message.startswith(_DROPPED_PREFIXES)


for _name in (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
    "lightning.fabric.utilities.rank_zero",
):
    logging.getLogger(_name).addFilter(_DropNoise())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """vsr's own warnings (DataWarning, PromptWarning, ...) as one ``warning:`` line, without a source line."""
    if category.__module__.split(".")[0] == "vsr_core":
        print(f"warning: {message}", file=file or sys.stderr)
        return
    _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def _looks_like_config(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) or os.path.exists(value) or value.startswith(("{", "class_path"))


def resolve_model_args(argv: list[str]) -> list[str]:
    """Rewrite short method names (``--model SATBVR``) to class paths; unknown names raise PluginError."""
    from vsr_core.plugins import resolve_method

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


_NOISE = (
    "Does not validate",
    "Subtypes:",
    "Errors:",
    "- Expected a <class 'NoneType'>",
    "Given value",
    "- Problem with",
)


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


def _config_files(argv: list[str]) -> list[str]:
    files = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def yaml_syntax_error(argv: list[str]) -> str | None:
    """``FILE: YAML syntax error at line L, column C: problem`` for the first ``-c`` file that does not parse."""
    import yaml

    for name in _config_files(argv):
        try:
            with open(name, encoding="utf-8") as handle:
                yaml.safe_load(handle)
        except (OSError, UnicodeDecodeError):
            continue  # jsonargparse reports unreadable files itself
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            context = getattr(err, "context", None)
            started = getattr(err, "context_mark", None)
            extra = (
                f" ({context} from line {started.line + 1})"
                if context and started is not None and started is not mark
                else ""
            )
            return f"{name}: YAML syntax error{where}: {problem}{extra}"
    return None


def overlay_base(path: str) -> str | None:
    """The base config (a sibling file) an overlay's header names: ``# Use after X.yaml`` or ``--config .../X.yaml``.

    An *overlay* is a config without ``model.class_path`` that only changes options of a base
    config given before it on the command line; shipped overlays say which base in their header.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return None
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    name = os.path.basename(path)
    for after, flag in re.findall(r"Use after (\S+\.yaml)|--config (\S+\.yaml)", header):
        base = os.path.basename(after or flag)
        if base != name:
            return os.path.join(os.path.dirname(path), base)  # a sibling file, wherever vsr runs from
    return None


def overlay_without_base(argv: list[str]) -> str | None:
    """One line when the model is unset because the only configs given are overlays (no ``model.class_path``)."""
    import yaml

    if any(arg == "--model" or arg.startswith("--model=") for arg in argv):
        return None
    overlays = []
    for name in _config_files(argv):
        try:
            with open(name, encoding="utf-8") as handle:
                model = (yaml.safe_load(handle) or {}).get("model")
        except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
            return None
        if isinstance(model, str) or (isinstance(model, dict) and "class_path" in model):
            return None  # some config names the model: the error is about something else
        overlays.append(name)
    if not overlays:
        return None
    base = overlay_base(overlays[0])
    start = f"{overlays[0]} sets no model.class_path: it is an overlay of another config"
    if base is None:
        return f"{start}; give that config (or --model NAME) before it"
    return f"{start}; give its base first: vsr {argv[0]} --config {base} --config {overlays[0]}"


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


def version_line() -> str:
    """``vsr X (torch A, lightning B, diffusers C; Python D)`` from installed metadata, importing none of them."""
    from importlib.metadata import PackageNotFoundError, version

    from vsr_core import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    libraries = ", ".join(f"{name} {installed(name)}" for name in ("torch", "lightning", "diffusers"))
    return f"vsr {__version__} ({libraries}; Python {sys.version.split()[0]})"


def _print_overview() -> None:
    print("usage: vsr [--version] {fit,validate,test,predict," + ",".join(EXTRA_COMMANDS) + "} [options]\n")
    print("Train and run latent-diffusion video super-resolution methods.\n")
    for name in LIGHTNING_COMMANDS:
        print(f"  {name:<10} Lightning {name} (see `vsr {name} --help`)")
    for name, (_, help_text) in EXTRA_COMMANDS.items():
        print(f"  {name:<10} {help_text}")
    print(f"  {'--version':<10} print the versions of vsr, torch, lightning and diffusers")
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
    """Entry point of the ``vsr`` console script; returns the exit code.

    Expected errors print one ``error:`` line; Ctrl-C prints ``interrupted`` (exit 130) and SIGTERM
    ``terminated`` (exit 143), at any point, imports included.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with interrupts.signals_as_interrupts():
            return _main(argv)
    except KeyboardInterrupt as err:
        print(interrupts.message(err), file=sys.stderr)
        return interrupts.exit_code(err)


def _main(argv: list[str]) -> int:
    try:
        if not argv or argv[0] in ("-h", "--help"):
            _print_overview()
            return 0
        if argv[0] in ("-V", "--version"):
            print(version_line())
            return 0
        if argv[0] in EXTRA_COMMANDS:
            return _run_extra_command(argv[0], argv[1:])
        from vsr_core.lightning_cli import QUIET_WARNINGS, VSRCLI
        from vsr_core.plugins import load_plugins

        if argv[0] in LIGHTNING_COMMANDS:
            load_plugins()
            argv = resolve_model_args(argv)
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            warnings.showwarning = _show_warning
            VSRCLI(args=argv, parser_kwargs={"exit_on_error": False})
        return 0
    except argparse.ArgumentError as err:
        yaml_error = yaml_syntax_error(argv) if "Problems parsing config" in str(err) else None
        if yaml_error is None and re.match(r'Parser key "model"', str(err)):
            yaml_error = overlay_without_base(argv)
        print(f"error: {yaml_error or one_line_parse_error(str(err), argv[0])}", file=sys.stderr)
        return 2
    except VSRError as err:
        message = str(err)
        if "Original Traceback" in message:
            # Raised in a DataLoader worker: torch wraps the message with the worker's traceback.
            last = [line for line in message.splitlines() if line.strip()][-1]
            message = last.split(": ", 1)[1] if last.startswith(type(err).__module__) else last
        print(f"error: {message}", file=sys.stderr)
        return err.exit_code
    except SystemExit:
        # Lightning turns Ctrl-C (and so SIGTERM) during fit into a graceful shutdown and sys.exit(1).
        if interrupts.last_signal() is not None:
            print(interrupts.message(), file=sys.stderr)
            return interrupts.exit_code()
        raise
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
