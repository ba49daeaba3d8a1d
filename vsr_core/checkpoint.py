"""Load a trained method from a checkpoint outside the CLI.

Lightning refuses a checkpoint whose ``_class_path`` it cannot import, and a method class is only
importable once its plugin is loaded. :func:`load_method` loads the plugins first, finds the class
the checkpoint was written by, and names the missing plugin when it is not installed. It also
accepts a ``vsr export`` folder (a directory holding ``vsr_method.json``, see :mod:`vsr_core.export`).
"""

from __future__ import annotations

import contextvars
import importlib
from pathlib import Path
from typing import Any

import torch

from vsr_core.errors import CheckpointError
from vsr_core.method import VSRMethod
from vsr_core.plugins import load_plugins

__all__ = ["checkpoint_class_path", "import_method_class", "load_method", "loading_checkpoint", "read_checkpoint"]

_LOADING_CHECKPOINT = contextvars.ContextVar("vsr_loading_checkpoint", default=False)


def loading_checkpoint() -> bool:
    """True while :func:`load_method` constructs a method whose checkpoint state dict is loaded next.

    A method may skip reading ``pretrained=`` weights then: the checkpoint carries them (and the
    folder they came from may be gone). Weights a checkpoint does not hold must still be read.
    """
    return _LOADING_CHECKPOINT.get()


def checkpoint_class_path(checkpoint: dict[str, Any]) -> str | None:
    """The method class a checkpoint was written by (vsr's own record, else LightningCLI's)."""
    record = checkpoint.get("vsr_method") or {}
    if record.get("class_path"):
        return record["class_path"]
    hparams = checkpoint.get("hyper_parameters") or {}
    return hparams.get("_class_path")


def import_method_class(path: str, source: str = "the checkpoint") -> type[VSRMethod]:
    """The method class named ``path`` (``module.Class``); CheckpointError naming the plugin if absent.

    ``source`` says what named it, for the message (a checkpoint, an export folder).
    """
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        plugin = module_name.split(".")[0]
        raise CheckpointError(
            f"{source} was written by method '{path}' from plugin '{plugin}', which is not installed "
            f"or failed to import ({err}); install it (see `vsr plugins`)"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, VSRMethod)):
        raise CheckpointError(f"{source} names '{path}', which is not a VSRMethod")
    return cls


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """The contents of a Lightning checkpoint, read with ``weights_only=True`` (no code runs).

    Raises:
        CheckpointError: one line naming ``path`` when it is missing or is not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated, not a zip/pickle, or a pickle that names code: never run it
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{what} '{path}' is not a readable checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{what} '{path}' is not a vsr checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def load_method(path: str | Path, map_location: str | torch.device = "cpu", strict: bool = True) -> VSRMethod:
    """Rebuild the method stored in a Lightning checkpoint or a ``vsr export`` folder, in eval mode.

    Raises:
        CheckpointError: the file is missing or unreadable, a folder is not an export, or the
            method's plugin is not installed.
        PretrainedError: an export folder's weights are missing or do not fit the method.
    """
    path = Path(path)
    if path.is_dir():
        from vsr_core.export import load_exported, read_export_record

        read_export_record(path, error=CheckpointError)  # a folder without vsr_method.json: one line
        return load_exported(path, map_location=map_location)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    load_plugins(warn=False)
    try:
        # mmap: only the metadata is read here; the weights are read once, by load_from_checkpoint.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({type(err).__name__}: {err})") from None
    class_path = checkpoint_class_path(checkpoint)
    if class_path is None:
        raise CheckpointError(f"checkpoint '{path}' was not written by a vsr method (no method class recorded)")
    cls = import_method_class(class_path)
    token = _LOADING_CHECKPOINT.set(True)
    try:
        method = cls.load_from_checkpoint(path, map_location=map_location, strict=strict)
    finally:
        _LOADING_CHECKPOINT.reset(token)
    return method.eval()
