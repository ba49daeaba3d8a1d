"""Weights-only start of a run (``--model.init_from CKPT_OR_EXPORT``) for stage sequences.

DiffVSR trains in three progressive stages, PS-SR goes latent -> pixel -> draft: each stage starts
from the weights the previous one wrote, with a new optimizer, step counter and schedule. That is
not a resume (``--ckpt_path`` restores everything, optimizers and loops included), so it is a
method argument: :class:`~vsr_core.method.VSRMethod` applies it once at fit start of a run that
does not resume (before the EMA callback takes its first copy), and never when a checkpoint is
loaded to restore; a resumed run does not even read the file.

The source is a Lightning checkpoint written by ``vsr fit`` (read with ``weights_only=True``) or a
``vsr export`` folder; it must come from the same method class. ``include`` / ``exclude`` select
state-dict keys with :mod:`fnmatch` patterns; ``strict`` requires every selected key to exist on
both sides with the same shape (keys the method rebuilds from its own files may be absent).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import torch

from vsr_core.errors import CheckpointError

__all__ = ["load_init_weights", "read_init_state"]


def _select(keys: Any, include: tuple[str, ...], exclude: tuple[str, ...]) -> set[str]:
    return {
        k
        for k in keys
        if any(fnmatch.fnmatchcase(k, p) for p in include) and not any(fnmatch.fnmatchcase(k, p) for p in exclude)
    }


def read_init_state(source: str | Path, method: Any) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, class name)`` of a checkpoint or export folder written by ``method``'s class.

    Raises:
        CheckpointError: missing or unreadable, or written by another method class (both named).
    """
    from vsr_core.torch_files import read_torch_file

    path = Path(source)
    own = f"{type(method).__module__}.{type(method).__qualname__}"
    if path.is_dir():
        from vsr_core.checkpoint import load_method

        exported = load_method(path)
        written_by = f"{type(exported).__module__}.{type(exported).__qualname__}"
        if not isinstance(method, type(exported)) and not isinstance(exported, type(method)):
            raise CheckpointError(
                f"--model.init_from {path}: it was exported from {written_by}, this run trains {own}"
            )
        return {k: v for k, v in exported.state_dict().items()}, written_by
    checkpoint = read_torch_file(path, what="--model.init_from", error=CheckpointError)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"--model.init_from '{path}' is not a checkpoint written by `vsr fit`")
    record = checkpoint.get("vsr_method") or {}
    written_by = record.get("class_path") or (checkpoint.get("hyper_parameters") or {}).get("_class_path") or "?"
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(method).__mro__}
    short = {f"{c.__module__.split('.')[0]}.{c.__name__}" for c in type(method).__mro__}
    if written_by not in names | short:
        raise CheckpointError(f"--model.init_from {path}: it was written by {written_by}, this run trains {own}")
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"--model.init_from {path} holds no state_dict; pass a checkpoint written by `vsr fit`")
    return state, written_by


def load_init_weights(
    method: Any,
    source: str | Path,
    include: tuple[str, ...] = ("*",),
    exclude: tuple[str, ...] = (),
    strict: bool = True,
) -> list[str]:
    """Copy the selected weights of ``source`` into ``method``; returns the keys loaded.

    Raises:
        CheckpointError: another method's file, or (``strict``) selected keys missing on one side
            or with other shapes — the first few are named.
    """
    state, _ = read_init_state(source, method)
    own = method.state_dict()
    wanted_file = _select(state, include, exclude)
    wanted_model = _select(own, include, exclude)
    rebuildable = method.rebuildable_state_keys()
    if strict:
        missing = sorted(wanted_model - wanted_file - rebuildable)
        unexpected = sorted(wanted_file - wanted_model)
        if missing or unexpected:
            parts = [
                f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
                for what, keys in (("missing in the file", missing), ("not in the model", unexpected))
                if keys
            ]
            raise CheckpointError(
                f"--model.init_from {source} does not fit {type(method).__name__}: {'; '.join(parts)}; select keys "
                "with --model.init_from_include/--model.init_from_exclude or set --model.init_from_strict false"
            )
    keys = sorted(wanted_file & wanted_model)
    wrong = [k for k in keys if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"--model.init_from {source}: {len(wrong)} weights have other shapes, e.g. {k} "
            f"{tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model (other size arguments?)"
        )
    from vsr_core.distributed import copy_full_into

    for k in keys:
        copy_full_into(own[k], state[k])  # also into this rank's shard of an FSDP2 parameter
    return keys
