"""``vsr export CKPT -o DIR``: a checkpoint's trained parts as a diffusers-format folder.

The folder layout, and loading it back (``load_method(DIR)``, ``vsr restore --ckpt DIR``, a method's
``pretrained=``-style argument), are in :mod:`vsr_core.export`. This module is the command line only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from torch import nn

from vsr_core.errors import CheckpointError, ConfigError, VSRError

__all__ = ["main"]


def _apply_ema(method: nn.Module, checkpoint: dict[str, Any], ckpt: str) -> bool:
    """Load ``ema_state_dict`` of the (already read) checkpoint into ``method``; False when it has none."""
    ema = checkpoint.get("ema_state_dict")
    if not ema:
        return False
    if not isinstance(ema, dict):
        raise CheckpointError(f"{ckpt}: ema_state_dict is not a state dict; export with --weights raw")
    state = method.state_dict()
    unknown = sorted(set(ema) - set(state))
    if unknown:
        raise CheckpointError(f"{ckpt}: EMA weights name parameters the method lacks (e.g. {unknown[0]})")
    wrong = [k for k, v in ema.items() if not hasattr(v, "shape") or tuple(v.shape) != tuple(state[k].shape)]
    if wrong:
        raise CheckpointError(f"{ckpt}: EMA weight {wrong[0]} does not fit the method; export with --weights raw")
    state.update({k: v.to(state[k].dtype) for k, v in ema.items()})
    method.load_state_dict(state)
    return True


def main(argv: list[str]) -> int:
    """Run ``vsr export`` with ``argv``; returns the exit code (errors: one ``error:`` line)."""
    parser = argparse.ArgumentParser(
        prog="vsr export",
        description="Write a checkpoint's trained parts as a diffusers-format folder.",
    )
    parser.add_argument("ckpt", help="checkpoint written by `vsr fit` (or a `vsr export` folder, to copy it)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output folder (must not exist or be empty)",
    )
    parser.add_argument(
        "--weights",
        choices=("ema", "raw"),
        default=None,
        help="default: ema when the checkpoint has it",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return _run(args)
    except VSRError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


def _run(args: argparse.Namespace) -> int:
    from vsr_core.checkpoint import load_method, method_from_checkpoint, read_checkpoint
    from vsr_core.export import export_method, read_export_record
    from vsr_core.partial_files import partial_path, remove_stale_partials

    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output '{out}' exists and is not an empty folder; choose a new one")
    weights = "raw"
    from_folder = Path(args.ckpt).is_dir()
    if from_folder:  # an export folder: its weights are already chosen
        method = load_method(args.ckpt)
        weights = read_export_record(args.ckpt, error=CheckpointError).get("weights", "raw")
        if args.weights not in (None, weights):
            raise ConfigError(f"{args.ckpt} is an export of {weights} weights; --weights applies to checkpoints")
    else:
        checkpoint = read_checkpoint(args.ckpt)  # read once, weights_only: nothing in it runs
        method = method_from_checkpoint(checkpoint, args.ckpt)
    if not from_folder and args.weights != "raw":
        if _apply_ema(method, checkpoint, args.ckpt):
            weights = "ema"
        elif args.weights == "ema":
            raise CheckpointError(f"{args.ckpt} has no EMA weights (train with the EMA callback); use --weights raw")
    # Written next to the target and renamed at the end: a failed export leaves no half folder (and a
    # folder left by a killed export is removed by the next one, see vsr_core.partial_files).
    remove_stale_partials(out.parent)
    tmp = partial_path(out)
    try:
        try:
            tmp.mkdir(parents=True)
        except OSError as err:
            raise ConfigError(f"cannot create '{tmp.parent}' ({err.strerror})") from None
        export_method(method, tmp, weights=weights)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"exported {type(method).__name__} ({weights} weights) to {out}")
    return 0
