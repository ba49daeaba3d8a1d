"""Building SATB-VR's three transformers from one base model without wasting host memory.

SATB-VR holds three CogVideoX-sized networks (Sec. 3.2): the predictor (a full copy of the base
with its own LoRA), the denoiser (the base with LoRA, connectors and an LQ patch embedding) and a
6-block ControlNet copied from the base. At CogVideoX1.5-5B's size every fp32 copy is 22 GB, so
the order of construction decides the host memory of a process (measured in docs/methods/satb.md):

1. the base is loaded directly in the dtype its frozen parts keep (``torch_dtype``; fp32 only
   when a part of it trains fully);
2. the denoiser is built on the meta device and takes the base's tensors (no copy, no random
   initialization of a third model); only its new connectors and LQ embedding get memory;
3. the predictor is a copy of the base made *after* loading in the frozen dtype;
4. the ControlNet copies the first blocks (fp32: it trains fully), again without a random init.

Also here: which parameters train (LoRA adapters on the blocks, full fine-tuning, or frozen).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel
from torch import nn

from satb.controlnet import SATBControlNet
from satb.denoiser import LQConditionedTransformer
from satb.presets import Preset
from vsr_core.lora import add_lora

__all__ = [
    "add_block_lora",
    "adopt_weights",
    "apply_trainability",
    "build_controlnet",
    "build_denoiser",
    "build_predictor_transformer",
    "cast_frozen",
    "is_meta",
    "lora_target_pattern",
    "random_base",
]


def is_meta(module: nn.Module) -> bool:
    """Whether ``module``'s parameters live on the meta device (a shapes-only build)."""
    first = next(module.parameters(), None)
    return first is not None and first.device.type == "meta"


def random_base(spec: Preset, latent_channels: int) -> CogVideoXTransformer3DModel:
    """The preset's base transformer with random weights (``in``/``out_channels`` follow the codec)."""
    config = {**spec.transformer, "in_channels": latent_channels, "out_channels": latent_channels}
    return CogVideoXTransformer3DModel(**config)


def adopt_weights(target: nn.Module, source: nn.Module) -> None:
    """Give ``target`` (built on the meta device) ``source``'s tensors under the same names, without copying.

    Parameters and persistent buffers go through ``load_state_dict(assign=True)``; non-persistent
    buffers (e.g. a sin-cos position table) are taken over too. Names of ``target`` that ``source``
    lacks stay on the meta device for the caller to build.
    """
    state = source.state_dict()
    result = target.load_state_dict(state, strict=False, assign=True)
    if result.unexpected_keys:
        raise ValueError(
            f"{type(source).__name__} has weights {type(target).__name__} lacks: {result.unexpected_keys[:3]}"
        )
    own_buffers = dict(target.named_buffers())
    for name, buffer in source.named_buffers():
        if name not in state and name in own_buffers:
            path, _, attr = name.rpartition(".")
            target.get_submodule(path)._buffers[attr] = buffer


def build_denoiser(base: CogVideoXTransformer3DModel, spec: Preset, lq_condition: bool) -> LQConditionedTransformer:
    """F_d around ``base``'s weights: the base's blocks (shared, not copied) plus new zero-initialized LQ modules."""
    config = dict(
        **dict(base.config),
        enable_connector=lq_condition,
        enable_control_patchemb=lq_condition,
        connector_heads=spec.connector_heads,
        connector_dim=spec.connector_dim,
        control_hidden_channels=spec.control_hidden_channels,
        control_groups=spec.control_groups,
    )
    if is_meta(base):
        return LQConditionedTransformer(**config)  # a shapes-only build: nothing to share
    with torch.device("meta"):
        denoiser = LQConditionedTransformer(**config)
    adopt_weights(denoiser, base)
    denoiser.make_lq_modules()  # only the new modules get memory: trainable, fp32
    return denoiser


def build_predictor_transformer(base: CogVideoXTransformer3DModel) -> CogVideoXTransformer3DModel:
    """The predictor's transformer: a copy of ``base`` (Sec. 3.2), taken in the dtype ``base`` was loaded in."""
    return copy.deepcopy(base)


def build_controlnet(base: CogVideoXTransformer3DModel, spec: Preset) -> SATBControlNet:
    """The LQ ControlNet: copies of ``base``'s embeddings and first ``spec.controlnet_layers`` blocks, in fp32."""
    return SATBControlNet.from_transformer(
        base, spec.controlnet_layers, spec.control_hidden_channels, spec.control_groups
    )


def lora_target_pattern(targets: Sequence[str]) -> str:
    """peft regex for ``transformer_blocks.<i>.<target>``: the blocks only, not connectors or embeddings."""
    names = "|".join(t.replace(".", r"\.") for t in targets)
    return rf".*transformer_blocks\.\d+\.(attn1\.)?({names})"


def add_block_lora(model: nn.Module, lora: Any, adapter_name: str = "default") -> None:
    """Attach a fresh LoRA adapter (``B = 0``: the model starts equal to its base) to the blocks of ``model``.

    ``lora`` is a :class:`~vsr_core.options.LoRAOptions` (rank, alpha, targets, dropout).
    """
    add_lora(model, lora.rank, lora.alpha, lora_target_pattern(lora.targets), adapter_name, dropout=lora.dropout)


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name


def apply_trainability(model: nn.Module, mode: str, always_trainable: Sequence[str] = ()) -> None:
    """Set ``requires_grad``: ``full`` all; ``lora`` LoRA only; ``none`` nothing.

    Parameters whose names start with one of ``always_trainable`` (new modules without pretrained
    weights, e.g. the connectors) train in every mode.
    """
    for name, parameter in model.named_parameters():
        trainable = mode == "full" or (mode == "lora" and is_lora_parameter(name))
        parameter.requires_grad_(trainable or name.startswith(tuple(always_trainable)))


def cast_frozen(modules: Sequence[nn.Module | None], dtype: torch.dtype) -> None:
    """Frozen parameters of ``modules`` to ``dtype`` (trainable ones stay fp32 for the optimizer)."""
    for module in modules:
        if module is None:
            continue
        for parameter in module.parameters():
            if not parameter.requires_grad and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
        for upcast in (p for p in module.parameters() if p.requires_grad and p.dtype != torch.float32):
            upcast.data = upcast.data.float()
