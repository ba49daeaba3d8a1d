"""CPU offload of a method's big models for inference (``vsr restore --offload model|sequential``).

What diffusers pipelines do with ``enable_model_cpu_offload`` / ``enable_sequential_cpu_offload``,
for a :class:`~vsr_core.method.VSRMethod`: its *offloadable models* are the outermost diffusers
(``ModelMixin``) and transformers (``PreTrainedModel``) models inside it — the denoiser, ControlNet,
predictor, VAE, text encoder of SATB-VR, say. They are the bulk of the weights and the only
modules whose calls accelerate's hooks can see (their ``forward``, and diffusers' ``encode`` /
``decode``, which diffusers decorates for exactly this).

* ``model``: each model stays in CPU memory and moves to the GPU when it is called; the model
  called before it moves back at that moment (accelerate's ``cpu_offload_with_hook`` chained in
  call order). Peak GPU memory: the largest model plus activations. A few seconds per window.
* ``sequential``: the weights stay on the CPU and every leaf module's weights are streamed to the
  GPU for its own forward only (accelerate's ``cpu_offload``). The least memory, the slowest.

Everything else (small trainable heads, connectors, schedules) lives on the GPU throughout.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from vsr_core.errors import ConfigError

__all__ = ["OFFLOAD_MODES", "enable_offload", "offloadable_models"]

OffloadMode = Literal["none", "model", "sequential"]
OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "sequential")


def _is_big_model(module: nn.Module) -> bool:
    from diffusers import ModelMixin

    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        PreTrainedModel = ()  # type: ignore[assignment]  # noqa: N806
    return isinstance(module, (ModelMixin, PreTrainedModel))


def offloadable_models(method: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, model)`` for each outermost diffusers/transformers model inside ``method``, in module order."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in method.named_modules():
        if module is method or not _is_big_model(module):
            continue
        if any(name.startswith(f"{outer}.") for outer, _ in found):
            continue  # inside a model already found
        found.append((name, module))
    return found


def enable_offload(method: nn.Module, mode: OffloadMode, device: torch.device | str) -> list[str]:
    """Offload ``method``'s big models as ``mode`` says, executing on ``device``; returns their names.

    Call it on a method whose weights are on the CPU, instead of ``method.to(device)``: the rest of the
    method moves to ``device``, the offloaded models stay on the CPU until they are called.

    Raises:
        ConfigError: an unknown mode, or a method without a diffusers/transformers model to offload.
    """
    if mode not in OFFLOAD_MODES:
        raise ConfigError(f"--offload must be one of {', '.join(OFFLOAD_MODES)}; got {mode!r}")
    device = torch.device(device)
    if mode == "none":
        method.to(device)
        return []
    from accelerate import cpu_offload, cpu_offload_with_hook

    models = offloadable_models(method)
    if not models:
        raise ConfigError(f"{type(method).__name__} has no diffusers or transformers model to offload; drop --offload")
    offloaded = {id(model) for _, model in models}
    _move_rest(method, offloaded, device)
    hook: Any = None
    for _, model in models:
        if mode == "model":
            _, hook = cpu_offload_with_hook(model, execution_device=device, prev_module_hook=hook)
        else:
            cpu_offload(model, execution_device=device)
    return [name for name, _ in models]


def _move_rest(module: nn.Module, offloaded: set[int], device: torch.device) -> None:
    """Move every parameter and buffer outside the offloaded models to ``device``."""
    for child in module.children():
        if id(child) in offloaded:
            continue
        _move_rest(child, offloaded, device)
    for name, param in list(module.named_parameters(recurse=False)):
        module._parameters[name] = nn.Parameter(param.data.to(device), requires_grad=param.requires_grad)
    for name, buffer in list(module.named_buffers(recurse=False)):
        if buffer is not None:
            module._buffers[name] = buffer.to(device)
