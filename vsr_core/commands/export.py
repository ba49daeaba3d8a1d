"""``vsr export CKPT -o DIR``: a checkpoint's trained parts as a diffusers-format folder.

Layout of ``DIR``:

* ``vsr_method.json``: ``class_path``, ``init_args`` (the JSON-serialisable ones), ``weights``
  (``ema`` or ``raw``) and ``components`` (name -> ``diffusers`` | ``module``, plus LoRA folders);
* ``<name>/``: each top-level submodule with trainable parameters (or a LoRA adapter). diffusers
  ``ModelMixin`` components are written by ``save_pretrained``; other modules as
  ``diffusion_pytorch_model.safetensors`` + ``config.json`` (their class). LoRA layers are not part
  of these base weights;
* ``<name>_lora/pytorch_lora_weights.safetensors`` (``<name>_lora_<adapter>/`` for adapters other
  than ``default``): the adapter in the diffusers LoRA format with prefix ``<name>``.

Submodules without trainable parameters (frozen VAE, text encoder, ...) are rebuilt from
``init_args`` (typically their ``pretrained=`` path). A method can take over with a hook
``export_pretrained(directory)``; :func:`load_exported` rebuilds the method from the folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vsr_core.errors import CheckpointError, ConfigError, PretrainedError, VSRError

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
METHOD_FILE = "vsr_method.json"


def _is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))


def base_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s weights without LoRA layers, under the names the plain module has."""
    return {
        k.replace(".base_layer.", "."): v.detach().contiguous().cpu()
        for k, v in module.state_dict().items()
        if not _is_lora_key(k)
    }


def _adapters(module: nn.Module) -> list[str]:
    return list((getattr(module, "peft_config", None) or {}).keys())


def _lora_folder(name: str, adapter: str) -> str:
    return f"{name}_lora" if adapter == "default" else f"{name}_lora_{adapter}"


def _json_args(hparams: dict[str, Any]) -> dict[str, Any]:
    args = {}
    for key, value in hparams.items():
        if key.startswith("_"):
            continue
        try:
            json.dumps(value)
        except TypeError:
            continue  # optimizer factories and the like: not needed to rebuild a model for inference
        args[key] = value
    return args


def export_method(
    method: nn.Module, directory: str | Path, weights: str = "raw"
) -> Path:
    """Write ``method``'s trained parts into ``directory`` (see the module docstring); returns it."""
    from vsr_core.lora import save_lora

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(method)
    components: dict[str, Any] = {}
    hook = getattr(method, "export_pretrained", None)
    if callable(hook):
        hook(directory)
    else:
        for name, child in method.named_children():
            adapters = _adapters(child)
            if not adapters and not any(p.requires_grad for p in child.parameters()):
                continue
            entry: dict[str, Any] = {"lora": {}}
            if (
                hasattr(child, "save_pretrained")
                and hasattr(child, "save_config")
                and not adapters
            ):
                child.save_pretrained(directory / name, safe_serialization=True)
                entry["kind"] = "diffusers"
            else:
                (directory / name).mkdir(exist_ok=True)
                save_file(base_state_dict(child), str(directory / name / WEIGHTS_NAME))
                if hasattr(child, "save_config"):
                    child.save_config(directory / name)
                    entry["kind"] = "diffusers"
                else:
                    config = {
                        "_class_name": type(child).__qualname__,
                        "_module": type(child).__module__,
                    }
                    (directory / name / "config.json").write_text(
                        json.dumps(config, indent=2) + "\n"
                    )
                    entry["kind"] = "module"
            for adapter in adapters:
                save_lora(
                    child,
                    directory / _lora_folder(name, adapter),
                    prefix=name,
                    adapter_name=adapter,
                )
                entry["lora"][adapter] = _lora_folder(name, adapter)
            components[name] = entry
    record = {
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "init_args": _json_args(dict(getattr(method, "hparams", {}) or {})),
        "weights": weights,
        "components": components,
    }
    (directory / METHOD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return directory


def load_exported(
    directory: str | Path, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the method written by :func:`export_method` (in eval mode).

    Raises:
        PretrainedError: the folder or one of its files is missing or does not fit the method.
    """
    from vsr_core.checkpoint import import_method_class
    from vsr_core.lora import load_lora
    from vsr_core.plugins import load_plugins

    directory = Path(directory)
    record_file = directory / METHOD_FILE
    if not record_file.is_file():
        raise PretrainedError(f"{directory} is not a vsr export (no {METHOD_FILE})")
    record = json.loads(record_file.read_text())
    load_plugins(warn=False)
    method = import_method_class(record["class_path"])(**record["init_args"])
    loader = getattr(method, "load_pretrained", None)
    if callable(loader):
        loader(directory)
        return method.to(map_location).eval()
    for name, entry in record["components"].items():
        child = getattr(method, name, None)
        if not isinstance(child, nn.Module):
            raise PretrainedError(
                f"{directory}: component '{name}' is not a submodule of {type(method).__name__}"
            )
        file = directory / name / WEIGHTS_NAME
        if not file.is_file():
            raise PretrainedError(f"{file} does not exist")
        state = load_file(str(file))
        own = {
            k: k.replace(".base_layer.", ".")
            for k in child.state_dict()
            if not _is_lora_key(k)
        }
        missing = sorted(set(own.values()) - set(state))
        unexpected = sorted(set(state) - set(own.values()))
        if missing or unexpected:
            raise PretrainedError(
                f"{file} does not fit {type(child).__name__}: missing {missing[:1]}, unexpected {unexpected[:1]}"
            )
        child.load_state_dict({k: state[v] for k, v in own.items()}, strict=False)
        for adapter, folder in entry.get("lora", {}).items():
            load_lora(child, directory / folder, prefix=name, adapter_name=adapter)
    return method.to(map_location).eval()


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
    parser = argparse.ArgumentParser(
        prog="vsr export",
        description="Write a checkpoint's trained parts as a diffusers-format folder.",
    )
    parser.add_argument("ckpt", help="checkpoint written by `vsr fit`")
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
    if args.weights != "raw":
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
