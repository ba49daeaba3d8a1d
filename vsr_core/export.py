"""`vsr export` folders: a method's trained parts in diffusers format, and loading them back.

Layout of an export folder:

* ``vsr_method.json``: ``class_path`` (as :func:`vsr_core.plugins.class_path` writes it, e.g.
  ``satb.SATBVR``; the long form ``satb.model.SATBVR`` of older folders is read too), ``init_args``
  (every init argument; object-valued ones as ``{"class_path", "init_args"}`` records, see
  :mod:`vsr_core.init_args`; optimizer factories built in Python are listed in ``dropped_init_args``),
  ``weights``
  (``ema`` or ``raw``), ``layout`` (``components``, or ``method`` when the method's own
  ``export_pretrained`` hook wrote the folder) and ``components`` (name -> ``kind``
  (``diffusers`` | ``module``) and its LoRA folders);
* ``<name>/``: each top-level submodule with trainable parameters (or a LoRA adapter). diffusers
  ``ModelMixin`` components are written by ``save_pretrained``; other modules as
  ``diffusion_pytorch_model.safetensors`` + ``config.json`` (their class). LoRA layers are not part
  of these base weights;
* ``<name>_lora/pytorch_lora_weights.safetensors`` (``<name>_lora_<adapter>/`` for adapters other
  than ``default``): the adapter in the diffusers LoRA format with prefix ``<name>``.

Submodules without trainable parameters (frozen VAE, text encoder, ...) are rebuilt from
``init_args`` (typically their ``pretrained=`` path). A method can take over with a hook
``export_pretrained(directory)`` (its own layout; the core still writes ``vsr_method.json``).

Loading back: a method class whose ``export_init_arg`` names one of its init arguments (e.g.
``pretrained`` of ``reference.ReferenceVSR``, ``satb_weights`` of ``satb.SATBVR``) reads the folder
itself when constructed with that argument; :func:`load_exported` (and
:func:`vsr_core.checkpoint.load_method`, which accepts export folders) passes the folder there.
Other methods are constructed from ``init_args`` and get the weights through
:func:`load_exported_weights` (or their ``load_pretrained(directory)`` hook). The recorded class is
looked up among the installed plugins only, and ``init_args`` are rebuilt under the rule of
:mod:`vsr_core.init_args`: reading an export folder never imports a module it names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vsr_core.errors import CheckpointError, PretrainedError, VSRError
from vsr_core.init_args import build_init_args, encode_init_args
from vsr_core.plugins import class_path, class_path_forms, installed_method

__all__ = [
    "adapter_names",
    "base_state_dict",
    "check_export_class",
    "differing_init_args",
    "export_method",
    "is_export_folder",
    "load_component",
    "load_exported",
    "load_exported_weights",
    "METHOD_FILE",
    "read_component_weights",
    "read_export_record",
    "save_component",
    "WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
]


WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
METHOD_FILE = "vsr_method.json"


def is_export_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``vsr_method.json``."""
    return (Path(path) / METHOD_FILE).is_file()


def read_export_record(folder: str | Path, error: type[VSRError] = PretrainedError) -> dict[str, Any]:
    """The checked ``vsr_method.json`` of an export folder; ``error`` (one line) when it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise error(f"export folder '{folder}' does not exist")
    file = folder / METHOD_FILE
    if not file.is_file():
        raise error(
            f"'{folder}' is not a `vsr export` folder (no {METHOD_FILE}); pass a checkpoint file or a folder written by `vsr export`"
        )
    try:
        record = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{file} cannot be read ({type(err).__name__}: {err})") from None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("class_path"), str)
        and isinstance(record.get("init_args", {}), dict)
        and isinstance(record.get("components", {}), dict)
    ):
        raise error(f"{file} is not a vsr method record (class_path, init_args, components)")
    return record


def check_export_class(folder: str | Path, cls: type) -> dict[str, Any]:
    """The record of ``folder`` after checking it was exported from ``cls`` (or one of its bases)."""
    record = read_export_record(folder)
    accepted = set().union(*(class_path_forms(base) for base in cls.__mro__))
    if record["class_path"] not in accepted:
        raise PretrainedError(
            f"'{folder}' was exported from {record['class_path']}, not {class_path(cls)}; "
            f"load it with --model {record['class_path']} or `vsr restore --ckpt {folder}`"
        )
    return record


def _is_lora_key(key: str) -> bool:
    return any(part.startswith("lora_") for part in key.split("."))


def _plain_names(module: nn.Module) -> dict[str, str]:
    """``{name in the plain module: name in module.state_dict()}`` without LoRA layers."""
    return {k.replace(".base_layer.", "."): k for k in module.state_dict() if not _is_lora_key(k)}


def base_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s weights without LoRA layers, under the names the plain module has."""
    state = module.state_dict()
    return {plain: state[key].detach().contiguous().cpu() for plain, key in _plain_names(module).items()}


def adapter_names(module: nn.Module) -> list[str]:
    """Names of the peft LoRA adapters of ``module`` (empty without LoRA)."""
    return list((getattr(module, "peft_config", None) or {}).keys())


def _lora_folder(name: str, adapter: str) -> str:
    return f"{name}_lora" if adapter == "default" else f"{name}_lora_{adapter}"


def save_component(module: nn.Module, folder: str | Path) -> str:
    """Write ``module``'s base weights (no LoRA layers) as a diffusers model folder; returns its kind.

    diffusers models without adapters: ``save_pretrained`` (``diffusers``). Others:
    ``diffusion_pytorch_model.safetensors`` plus ``config.json`` (the diffusers config, else the
    module's class name: ``module``).
    """
    folder = Path(folder)
    if hasattr(module, "save_pretrained") and hasattr(module, "save_config") and not adapter_names(module):
        module.save_pretrained(folder, safe_serialization=True)
        return "diffusers"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(base_state_dict(module), str(folder / WEIGHTS_NAME))
    if hasattr(module, "save_config"):
        module.save_config(folder)
        return "diffusers"
    config = {"_class_name": type(module).__qualname__, "_module": type(module).__module__}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return "module"


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:  # truncated, or not a safetensors file
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise PretrainedError(f"{file} cannot be read ({type(err).__name__}: {first}); export it again") from None


def read_component_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a diffusers model folder: one safetensors file, or the shards of its index."""
    folder = Path(folder)
    single, index = folder / WEIGHTS_NAME, folder / WEIGHTS_INDEX_NAME
    if single.is_file():
        return _read_safetensors(single)
    if not index.is_file():
        raise PretrainedError(f"{single} does not exist (the export is incomplete; export it again)")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainedError(f"{index} cannot be read ({type(err).__name__}: {err})") from None
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not (folder / shard).is_file():
            raise PretrainedError(f"{folder / shard} does not exist (listed in {WEIGHTS_INDEX_NAME})")
        state.update(_read_safetensors(folder / shard))
    return state


def load_component(module: nn.Module, folder: str | Path, cause: str = "") -> None:
    """Load the base weights of a diffusers model folder into ``module`` (LoRA layers untouched).

    Every name and shape is checked first: a mismatch raises one-line :class:`PretrainedError`
    and leaves ``module`` unchanged. ``cause`` (e.g. which init arguments differ from the export's)
    ends a shape-mismatch message.
    """
    folder = Path(folder)
    state = read_component_weights(folder)
    names = _plain_names(module)
    own = module.state_dict()
    kind = type(module).__name__
    missing, unexpected = sorted(set(names) - set(state)), sorted(set(state) - set(names))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise PretrainedError(
            f"{folder} does not fit {kind}: {len(missing)} missing and {len(unexpected)} unexpected weights (e.g. {example})"
        )
    for plain, key in names.items():
        if state[plain].shape != own[key].shape:
            raise PretrainedError(
                f"{folder}: {plain} has shape {tuple(state[plain].shape)}, {kind} expects {tuple(own[key].shape)}"
                + (f" ({cause})" if cause else "")
            )
    module.load_state_dict({key: state[plain] for plain, key in names.items()}, strict=False)


def export_method(method: nn.Module, directory: str | Path, weights: str = "raw") -> Path:
    """Write ``method``'s trained parts into ``directory`` (see the module docstring); returns it."""
    from vsr_core.lora import save_lora

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    components: dict[str, Any] = {}
    hook = getattr(method, "export_pretrained", None)
    if callable(hook):
        hook(directory)
    else:
        training_only = set(getattr(method, "training_only_modules", ()))
        for name, child in method.named_children():
            if name in training_only:
                continue  # discriminators, fake scores, teachers: never needed to restore
            adapters = adapter_names(child)
            if not adapters and not any(p.requires_grad for p in child.parameters()):
                continue
            entry: dict[str, Any] = {"kind": save_component(child, directory / name), "lora": {}}
            for adapter in adapters:
                save_lora(child, directory / _lora_folder(name, adapter), prefix=name, adapter_name=adapter)
                entry["lora"][adapter] = _lora_folder(name, adapter)
            components[name] = entry
    init_args, dropped = encode_init_args(dict(getattr(method, "hparams", {}) or {}))
    record = {
        "class_path": class_path(type(method)),
        "init_args": init_args,
        "weights": weights,
        "layout": "method" if callable(hook) else "components",
        "components": components,
    }
    if dropped:
        record["dropped_init_args"] = dropped
    (directory / METHOD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return directory


def load_exported_weights(method: nn.Module, folder: str | Path) -> dict[str, Any]:
    """Load the component weights and LoRA adapters of an export folder into a constructed ``method``.

    Returns the folder's record. Raises :class:`PretrainedError` (one line) when the folder is not
    an export of ``method``'s class, a file is missing or unreadable, or a name or shape does not fit.
    """
    from vsr_core.lora import load_lora

    folder = Path(folder)
    record = check_export_class(folder, type(method))
    if record.get("layout") == "method":
        loader = getattr(method, "load_pretrained", None)
        if not callable(loader):
            arg = getattr(type(method), "export_init_arg", None)
            how = f"construct it with {arg}={folder}" if arg else "use load_exported"
            raise PretrainedError(f"'{folder}' was written by {type(method).__name__}.export_pretrained; {how}")
        loader(folder)
        return record
    differing = differing_init_args(record, method)
    cause = (
        "exported with "
        + ", ".join(f"{k}={a!r}" for k, (a, _) in differing.items())
        + "; this method has "
        + ", ".join(f"{k}={b!r}" for k, (_, b) in differing.items())
        if differing
        else "the export does not fit this method"
    )
    for name, entry in record["components"].items():
        child = getattr(method, name, None)
        if not isinstance(child, nn.Module):
            raise PretrainedError(f"{folder}: component '{name}' is not a submodule of {type(method).__name__}")
        load_component(child, folder / name, cause=cause)
        for adapter, lora_folder in (entry.get("lora") or {}).items():
            load_lora(child, folder / lora_folder, prefix=name, adapter_name=adapter)
    return record


_NOT_COMPARED = {"pretrained", "satb_weights"}  # where the weights came from, not what they are


def differing_init_args(record: dict[str, Any], method: nn.Module) -> dict[str, tuple[Any, Any]]:
    """``{name: (exported value, method's value)}`` for init arguments that differ (sizes, presets, ...).

    Only arguments both sides record are compared; the ones naming where weights were read from
    (``pretrained``, the class's ``export_init_arg``) are not.
    """
    try:
        own, _ = encode_init_args(dict(getattr(method, "hparams", {}) or {}))
    except VSRError:
        return {}
    skip = _NOT_COMPARED | {getattr(type(method), "export_init_arg", None)}
    exported = record.get("init_args") or {}
    return {
        key: (exported[key], own[key])
        for key in sorted(set(exported) & set(own))
        if key not in skip and exported[key] != own[key]
    }


def _construct(cls: type, args: dict[str, Any], folder: Path) -> nn.Module:
    accepted = cls.init_argument_names()
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise PretrainedError(
            f"{folder / METHOD_FILE}: {cls.__name__} has no init argument '{unknown[0]}' "
            "(exported by another version of its plugin?)"
        )
    return cls(**args)


def load_exported(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the method written by :func:`export_method` (in eval mode).

    Raises:
        PretrainedError: the folder or one of its files is missing or does not fit the method.
        CheckpointError: the plugin of the recorded method class is not installed.
    """
    directory = Path(directory)
    record = read_export_record(directory)
    cls = installed_method(record["class_path"], source=f"the export '{directory}'", error=CheckpointError)
    args, records = build_init_args(cls, record.get("init_args") or {}, str(directory / METHOD_FILE), PretrainedError)
    arg = getattr(cls, "export_init_arg", None)
    if arg:
        method = _construct(cls, {**args, arg: str(directory)}, directory)
    else:
        method = _construct(cls, args, directory)
    if hasattr(method, "hparams"):
        method.hparams.update(records)  # recorded as read, so exporting it again writes the same record
    if not arg:
        load_exported_weights(method, directory)
    return method.to(map_location).eval()
