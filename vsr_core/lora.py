"""LoRA adapters through peft, saved and loaded in the diffusers LoRA file format.

The file is what diffusers' ``save_lora_weights`` writes for a pipeline component:
``pytorch_lora_weights.safetensors`` with keys ``<prefix>.<module path>.lora_A.weight`` /
``.lora_B.weight`` (peft layout, adapter name removed; ``prefix`` is the pipeline component,
``transformer`` for DiT pipelines, ``unet`` for UNet ones) and the adapter's ``LoraConfig`` as
JSON in the safetensors metadata entry ``lora_adapter_metadata`` with keys ``<prefix>.r``,
``<prefix>.lora_alpha``, ``<prefix>.target_modules``, ... So a trained adapter loads with
``pipe.load_lora_weights(directory)`` in diffusers, and a diffusers LoRA file loads here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY, LoraBaseMixin
from diffusers.utils import convert_unet_state_dict_to_peft, recurse_remove_peft_layers
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError

__all__ = [
    "add_lora",
    "DEFAULT_TARGET_MODULES",
    "load_lora",
    "lora_state_dict",
    "LORA_WEIGHT_NAME",
    "merge_lora",
    "save_lora",
]

#: The file name diffusers reads and writes (``LORA_WEIGHT_NAME_SAFE``).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: Attention projections of diffusers' ``Attention`` blocks: what diffusers' LoRA training scripts target.
DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def _is_diffusers_model(model: nn.Module) -> bool:
    return hasattr(model, "add_adapter") and hasattr(model, "unload_lora")


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float | None = None,
    target_modules: Iterable[str] | str = DEFAULT_TARGET_MODULES,
    adapter_name: str = "default",
    dropout: float = 0.0,
    init_lora_weights: bool | str = True,
) -> LoraConfig:
    """Insert a LoRA adapter (``W x + (alpha / rank) B A x``) into the matching linear/conv layers of ``model``.

    ``target_modules`` are module-name suffixes (or one regex string) as in peft; ``alpha``
    defaults to ``rank`` (scale 1). diffusers models get ``model.add_adapter`` (which also
    activates the adapter), other modules peft's ``inject_adapter_in_model``. As peft does, every
    parameter of ``model`` that is not LoRA is frozen. ``init_lora_weights=True`` starts with
    ``B = 0`` (the model's output is unchanged). Returns the ``LoraConfig``.
    """
    if rank < 1:
        raise ConfigError(f"LoRA rank must be >= 1, got {rank}")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=targets,
        lora_dropout=dropout,
        init_lora_weights=init_lora_weights,
    )
    existing = getattr(model, "peft_config", {}) or {}
    if adapter_name in existing:
        raise ConfigError(f"the model already has a LoRA adapter named {adapter_name!r}")
    try:
        _inject(model, config, adapter_name)
    except ValueError as err:  # peft's NoMatchingPeftModuleError is a ValueError
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot add LoRA to {type(model).__name__}: {first}") from None
    return config


def _inject(model: nn.Module, config: LoraConfig, adapter_name: str) -> None:
    try:
        if _is_diffusers_model(model):
            model.add_adapter(config, adapter_name=adapter_name)
        else:
            inject_adapter_in_model(config, model, adapter_name=adapter_name)
    except ValueError:
        # A failed injection must not leave the model half-configured (diffusers already set
        # _hf_peft_config_loaded, which would break the next add_adapter).
        configs = getattr(model, "peft_config", None)
        if configs is not None:
            configs.pop(adapter_name, None)
        if not configs:
            if configs is not None:
                del model.peft_config
            if getattr(model, "_hf_peft_config_loaded", False):
                model._hf_peft_config_loaded = False
        raise


def _adapter_config(model: nn.Module, adapter_name: str) -> LoraConfig:
    configs = getattr(model, "peft_config", None) or {}
    if adapter_name not in configs:
        names = ", ".join(configs) or "none"
        raise ConfigError(
            f"{type(model).__name__} has no LoRA adapter {adapter_name!r} (adapters: {names}); call add_lora first"
        )
    return configs[adapter_name]


def lora_state_dict(
    model: nn.Module, adapter_name: str = "default", prefix: str | None = "transformer"
) -> dict[str, torch.Tensor]:
    """The adapter's weights in diffusers' LoRA layout: ``<prefix>.<module>.lora_A.weight`` -> tensor.

    ``prefix=None`` leaves the keys unprefixed (peft's ``get_peft_model_state_dict`` layout).
    """
    _adapter_config(model, adapter_name)
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    lead = f"{prefix}." if prefix else ""
    return {f"{lead}{k}": v.detach().contiguous() for k, v in state.items()}


def save_lora(
    model: nn.Module, directory: str | Path, prefix: str = "transformer", adapter_name: str = "default"
) -> Path:
    """Write ``<directory>/pytorch_lora_weights.safetensors`` exactly as diffusers' ``save_lora_weights`` does.

    Returns the file path. The adapter's ``LoraConfig`` goes into the file's metadata so that
    loading recreates the same rank, alpha and targets.
    """
    config = _adapter_config(model, adapter_name)
    state = lora_state_dict(model, adapter_name, prefix)
    metadata = {f"{prefix}.{k}": v for k, v in config.to_dict().items()}
    LoraBaseMixin.write_lora_layers(
        state_dict=state,
        save_directory=str(directory),
        is_main_process=True,
        weight_name=LORA_WEIGHT_NAME,
        save_function=None,
        safe_serialization=True,
        lora_adapter_metadata=metadata,
    )
    return Path(directory) / LORA_WEIGHT_NAME


def _read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    file = path / LORA_WEIGHT_NAME if path.is_dir() else path
    if not file.is_file():
        raise PretrainedError(
            f"{file} does not exist (expected a diffusers LoRA file {LORA_WEIGHT_NAME} or a folder holding it)"
        )
    with safe_open(str(file), framework="pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
        raw = (handle.metadata() or {}).get(LORA_ADAPTER_METADATA_KEY)
    return state, (json.loads(raw) if raw else {})


def _config_from(state: dict[str, torch.Tensor], metadata: dict[str, object]) -> LoraConfig:
    if metadata:
        accepted = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
        return LoraConfig(**{k: v for k, v in metadata.items() if k in accepted})
    # No metadata (older files): rank from the A matrices, alpha = rank, targets = the module paths.
    ranks = {v.shape[0] for k, v in state.items() if k.endswith("lora_A.weight")}
    if len(ranks) != 1:
        raise PretrainedError(
            "the LoRA file has no adapter metadata and mixed ranks; save it with lora_adapter_metadata"
        )
    rank = ranks.pop()
    targets = sorted({k.rsplit(".lora_", 1)[0] for k in state})
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=targets)


def load_lora(
    model: nn.Module, path: str | Path, prefix: str = "transformer", adapter_name: str = "default"
) -> LoraConfig:
    """Load a diffusers-format LoRA file (or the folder holding it) into ``model``.

    The adapter ``adapter_name`` is created from the file's metadata if the model does not have it
    yet. Keys the adapter has but the file lacks, or file keys the model has no place for, raise
    :class:`PretrainedError`. Old diffusers keys (``lora.down`` / ``lora.up``) are converted.
    """
    path = Path(path)
    full_state, full_meta = _read_lora_file(path)
    lead = f"{prefix}."
    state = {k.removeprefix(lead): v for k, v in full_state.items() if k.startswith(lead)}
    if not state:
        found = sorted({k.split(".", 1)[0] for k in full_state})
        raise PretrainedError(
            f"{path} has no '{prefix}.' LoRA weights (it holds: {', '.join(found) or 'nothing'}); pass prefix=..."
        )
    if any(".lora.down." in k or ".lora.up." in k for k in state):
        state = convert_unet_state_dict_to_peft(state)
    metadata = {k.removeprefix(lead): v for k, v in full_meta.items() if k.startswith(lead)}
    if adapter_name not in (getattr(model, "peft_config", None) or {}):
        config = _config_from(state, metadata)
        try:
            _inject(model, config, adapter_name)
        except ValueError as err:
            raise PretrainedError(
                f"{path} does not fit {type(model).__name__}: {str(err).strip().splitlines()[0]}"
            ) from None
    expected = set(get_peft_model_state_dict(model, adapter_name=adapter_name))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise PretrainedError(f"{path} does not match the model's LoRA adapter {adapter_name!r}: {', '.join(parts)}")
    try:
        set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    except RuntimeError as err:  # size mismatch: a different rank or base model
        first = next(
            (line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err).splitlines()[0]
        )
        raise PretrainedError(f"{path} does not match the model's LoRA adapter {adapter_name!r}: {first}") from None
    return _adapter_config(model, adapter_name)


def merge_lora(model: nn.Module, adapter_names: list[str] | None = None, unload: bool = True) -> nn.Module:
    """Fold LoRA deltas into the base weights (``W += scale * B A``); with ``unload`` remove the LoRA layers.

    ``adapter_names=None`` merges the active adapters. After ``unload`` the model is a plain model
    again (no ``peft_config``) computing the same function as before.
    """
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no LoRA layers to merge")
    for layer in layers:
        layer.merge(adapter_names=adapter_names)
    if unload:
        if _is_diffusers_model(model):
            model.unload_lora()
        else:
            recurse_remove_peft_layers(model)
            if hasattr(model, "peft_config"):
                del model.peft_config
    return model
