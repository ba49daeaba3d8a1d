"""Load a trained method from a checkpoint (or a ``vsr export`` folder) without running code from it.

:func:`load_method` reads the file once with ``torch.load(..., weights_only=True)``
(:func:`read_checkpoint`), finds the method class among the installed ``vsr.plugins`` entry points
(never by importing a name the file gives), builds it from the recorded init arguments under the
rule of :mod:`vsr_core.init_args`, runs its ``on_load_checkpoint`` and loads the state dict. It does
not use Lightning's ``load_from_checkpoint``, which would read the file again and import and call
the ``_instantiator`` that the file's ``hyper_parameters`` name.
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

import torch

from vsr_core.errors import CheckpointError, VSRError
from vsr_core.export import load_exported, read_export_record
from vsr_core.init_args import build_init_args
from vsr_core.method import VSRMethod
from vsr_core.plugins import installed_method
from vsr_core.torch_files import read_torch_file

__all__ = [
    "checkpoint_class_path",
    "load_method",
    "loading_checkpoint",
    "method_class_of",
    "method_from_checkpoint",
    "read_checkpoint",
]

_LOADING_CHECKPOINT = contextvars.ContextVar("vsr_loading_checkpoint", default=False)


def loading_checkpoint() -> bool:
    """True while :func:`load_method` constructs a method whose checkpoint state dict is loaded next.

    A method may skip reading ``pretrained=`` weights then: the checkpoint carries them (and the
    folder they came from may be gone). Weights a checkpoint does not hold must still be read.
    """
    return _LOADING_CHECKPOINT.get()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict stored in ``path`` (memory-mapped; tensors and plain values only).

    Raises:
        CheckpointError: missing, empty, truncated, not a ``torch.save`` file, not a dict, or holding
            anything but tensors and plain values (refused before anything in it runs).
    """
    checkpoint = read_torch_file(path, what="checkpoint", error=CheckpointError)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"'{path}' holds a {type(checkpoint).__name__}, not a checkpoint; pass a .ckpt written by `vsr fit`"
        )
    return checkpoint


def checkpoint_class_path(checkpoint: dict[str, Any]) -> str | None:
    """The method class a checkpoint was written by (vsr's own record, else LightningCLI's)."""
    record = checkpoint.get("vsr_method")
    if isinstance(record, dict) and isinstance(record.get("class_path"), str):
        return record["class_path"]
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict) and isinstance(hparams.get("_class_path"), str):
        return hparams["_class_path"]
    return None


def method_class_of(checkpoint: dict[str, Any], path: str | Path) -> type[VSRMethod]:
    """The installed method class that wrote ``checkpoint`` (CheckpointError naming the plugin if absent)."""
    class_path = checkpoint_class_path(checkpoint)
    if class_path is None:
        raise CheckpointError(f"checkpoint '{path}' was not written by a vsr method (no method class recorded)")
    return installed_method(class_path, source=f"checkpoint '{path}'")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def method_from_checkpoint(
    checkpoint: dict[str, Any],
    path: str | Path,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> VSRMethod:
    """Build the method of an already read ``checkpoint`` (see :func:`load_method`), in eval mode."""
    cls = method_class_of(checkpoint, path)
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' holds no state_dict; pass a checkpoint written by `vsr fit`")
    hparams = checkpoint.get("hyper_parameters") or {}
    kwargs, records = build_init_args(cls, hparams, f"checkpoint '{path}'", CheckpointError)
    # As Lightning's load_from_checkpoint: arguments the class no longer takes are left out.
    accepted = set(cls.init_argument_names())
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    token = _LOADING_CHECKPOINT.set(True)
    try:
        method = cls(**kwargs)
    finally:
        _LOADING_CHECKPOINT.reset(token)
    method.hparams.update({k: v for k, v in records.items() if k in kwargs})
    method.on_load_checkpoint(checkpoint)
    try:
        method.load_state_dict(state, strict=strict)
    except VSRError:
        raise
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint '{path}' does not fit {cls.__name__} ({_first_line(err)}); was it written by another version of its plugin?"
        ) from None
    return method.to(map_location).eval()


def load_method(path: str | Path, map_location: str | torch.device = "cpu", strict: bool = True) -> VSRMethod:
    """Rebuild the method stored in a Lightning checkpoint or a ``vsr export`` folder, in eval mode.

    Nothing in the file is executed: it is read with ``weights_only=True``, its method class must be
    one of an installed plugin, and its init arguments may name only the classes
    :mod:`vsr_core.init_args` builds.

    Raises:
        CheckpointError: the file is missing, unreadable or refused, a folder is not an export, or the
            method's plugin is not installed.
        PretrainedError: an export folder's weights are missing or do not fit the method.
    """
    path = Path(path)
    if path.is_dir():
        read_export_record(path, error=CheckpointError)  # a folder without vsr_method.json: one line
        return load_exported(path, map_location=map_location)
    checkpoint = read_checkpoint(path)
    return method_from_checkpoint(checkpoint, path, map_location=map_location, strict=strict)
