"""Score networks for distribution matching: one callable interface, two arrangements.

A *score model* is any callable ``(x_t, model_timestep, condition) -> model_out``: ``x_t``
``[B, c, t, h, w]`` noised latents, ``model_timestep`` ``[B]`` what the network receives for the
schedule time (``schedule.model_timestep(t)``), ``condition`` whatever the network is conditioned on
(text embeddings, LQ latents, ``None``), and ``model_out`` ``[B, c, t, h, w]`` in the schedule's
prediction type (epsilon, v or flow velocity).

The real and the fake score of VSD / DMD (PS-SR Eq. 8, UltraVSR Eq. 10) are built either

* as **two peft adapters on one base** (OSEDiff / PS-SR: the frozen pretrained model is the real
  score, the same model with a trainable ``"fake"`` LoRA is the fake score; the generator may be a
  third adapter on the same base): :func:`adapter_scores` / :class:`AdapterScore`; or
* as **separate modules** (UltraVSR trains its real TRU too): :class:`ModuleScore`.

Switching adapters here never changes ``requires_grad`` (peft's ``set_adapter`` /
``enable_adapters`` would: they mark the active adapter trainable and all others frozen), so the
optimizer groups a method set up, and Lightning's optimizer toggling, are left exactly as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from vsr_core.errors import ConfigError

__all__ = [
    "AdapterScore",
    "ModuleScore",
    "ScoreModel",
    "activate_adapters",
    "adapter_scores",
    "use_adapters",
]

#: ``forward(module, x_t, model_timestep, condition) -> model_out``: how to call a backbone whose
#: signature is not ``module(x_t, timestep, condition)`` (e.g. ``unet(x, t, encoder_hidden_states=c).sample``).
ForwardFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], torch.Tensor]


class ScoreModel(Protocol):
    """``(x_t [B, c, t, h, w], model_timestep [B], condition) -> model_out [B, c, t, h, w]``."""

    def __call__(self, x_t: torch.Tensor, model_timestep: torch.Tensor, condition: Any) -> torch.Tensor: ...


def _default_forward(
    module: nn.Module, x_t: torch.Tensor, model_timestep: torch.Tensor, condition: Any
) -> torch.Tensor:
    return module(x_t, model_timestep, condition)


def _tuner_layers(model: nn.Module) -> list[BaseTunerLayer]:
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no LoRA adapters; add one with vsr_core.lora.add_lora first")
    return layers


def _adapter_names(layers: Sequence[BaseTunerLayer]) -> set[str]:
    names: set[str] = set()
    for layer in layers:
        names.update(layer._all_available_adapter_names())
    return names


def _select(layers: Sequence[BaseTunerLayer], names: list[str] | None) -> None:
    for layer in layers:
        if names is None:
            layer.enable_adapters(False)
        else:
            layer.enable_adapters(True)
            layer.set_adapter(names)


@contextlib.contextmanager
def _keep_requires_grad(model: nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def activate_adapters(model: nn.Module, names: str | Sequence[str] | None) -> None:
    """Make ``names`` the active LoRA adapters of ``model`` (``None``: none, the base model alone).

    Unlike peft's ``set_adapter`` this leaves every ``requires_grad`` flag as it was. Useful after
    :func:`vsr_core.lora.add_lora` of a second adapter, which leaves only the new one active.
    """
    layers = _tuner_layers(model)
    wanted = None if names is None else ([names] if isinstance(names, str) else list(names))
    if wanted is not None:
        missing = sorted(set(wanted) - _adapter_names(layers))
        if missing:
            raise ConfigError(
                f"{type(model).__name__} has no LoRA adapter {', '.join(map(repr, missing))} "
                f"(adapters: {', '.join(sorted(_adapter_names(layers)))})"
            )
    with _keep_requires_grad(model):
        _select(layers, wanted)


@contextlib.contextmanager
def use_adapters(model: nn.Module, names: str | Sequence[str] | None) -> Iterator[nn.Module]:
    """Within the block only ``names`` are active (``None``: the base model alone); restored after.

    ``requires_grad`` flags are never changed. The previous state (active adapters, disabled or not)
    of every LoRA layer is restored on exit, also when the block raises.
    """
    layers = _tuner_layers(model)
    saved = [(layer, list(layer.active_adapters), layer.disable_adapters) for layer in layers]
    activate_adapters(model, names)
    try:
        yield model
    finally:
        with _keep_requires_grad(model):
            for layer, active, disabled in saved:
                layer.enable_adapters(True)
                layer.set_adapter(active)
                if disabled:
                    layer.enable_adapters(False)


class AdapterScore:
    """A score model that runs ``model`` with only the LoRA adapter(s) ``adapter`` active (``None``: base only).

    ``forward(module, x_t, model_timestep, condition)`` calls the backbone (default
    ``module(x_t, model_timestep, condition)``); it returns ``[B, c, t, h, w]`` model outputs.
    """

    def __init__(
        self, model: nn.Module, adapter: str | Sequence[str] | None, forward: ForwardFn | None = None
    ) -> None:
        _tuner_layers(model)
        self.model, self.adapter, self.forward = model, adapter, forward or _default_forward

    def __call__(self, x_t: torch.Tensor, model_timestep: torch.Tensor, condition: Any) -> torch.Tensor:
        with use_adapters(self.model, self.adapter):
            return self.forward(self.model, x_t, model_timestep, condition)


class ModuleScore:
    """A score model that is its own module (UltraVSR's real and fake TRUs), run as ``forward(module, x_t, t, c)``."""

    def __init__(self, module: nn.Module, forward: ForwardFn | None = None) -> None:
        self.module, self.forward = module, forward or _default_forward

    def __call__(self, x_t: torch.Tensor, model_timestep: torch.Tensor, condition: Any) -> torch.Tensor:
        return self.forward(self.module, x_t, model_timestep, condition)


def adapter_scores(
    model: nn.Module, fake_adapter: str = "fake", forward: ForwardFn | None = None
) -> tuple[AdapterScore, AdapterScore]:
    """``(real, fake)`` score models on one base: real = the base with every adapter off, fake = only ``fake_adapter``.

    The base stays frozen (the real score of OSEDiff / PS-SR Eq. 8); ``fake_adapter`` is a LoRA the
    method added with :func:`vsr_core.lora.add_lora` and trains with :meth:`DistributionMatching.fake_score_loss`.
    """
    layers = _tuner_layers(model)
    if fake_adapter not in _adapter_names(layers):
        raise ConfigError(
            f"{type(model).__name__} has no LoRA adapter {fake_adapter!r} for the fake score "
            f"(adapters: {', '.join(sorted(_adapter_names(layers)))}); add it with vsr_core.lora.add_lora"
        )
    return AdapterScore(model, None, forward), AdapterScore(model, fake_adapter, forward)
