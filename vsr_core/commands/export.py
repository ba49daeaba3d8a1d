"""``vsr export CKPT -o DIR``: a checkpoint's trained parts as a diffusers-format folder.

The folder layout, and loading it back (``load_method(DIR)``, ``vsr restore --ckpt DIR``, a method's
``pretrained=``-style argument), are in :mod:`vsr_core.export`. This module is the command line only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from vsr_core.errors import CheckpointError, ConfigError, VSRError
from vsr_core.export import export_method, read_export_record


def _apply_ema(method: nn.Module, ckpt: str) -> bool:
    """Load ``ema_state_dict`` of the checkpoint into ``method``; False when it has none."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    ema = checkpoint.get("ema_state_dict")
    if not ema:
        return False
    state = method.state_dict()
    unknown = sorted(set(ema) - set(state))
    if unknown:
        raise CheckpointError(
            f"{ckpt}: EMA weights name parameters the method lacks (e.g. {unknown[0]})"
        )
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
    from vsr_core.checkpoint import load_method

    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"output '{out}' exists and is not an empty folder; choose a new one"
        )
    method = load_method(args.ckpt)
    weights = "raw"
    if Path(args.ckpt).is_dir():  # an export folder: its weights are already chosen
        weights = read_export_record(args.ckpt, error=CheckpointError).get("weights", "raw")
        if args.weights not in (None, weights):
            raise ConfigError(f"{args.ckpt} is an export of {weights} weights; --weights applies to checkpoints")
    elif args.weights != "raw":
        if _apply_ema(method, args.ckpt):
            weights = "ema"
        elif args.weights == "ema":
            raise CheckpointError(
                f"{args.ckpt} has no EMA weights (train with the EMA callback); use --weights raw"
            )
    # Written next to the target and renamed at the end: a failed export leaves no half folder.
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        try:
            tmp.mkdir(parents=True)
        except OSError as err:
            raise ConfigError(
                f"cannot create '{tmp.parent}' ({err.strerror})"
            ) from None
        export_method(method, tmp, weights=weights)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"exported {type(method).__name__} ({weights} weights) to {out}")
    return 0
