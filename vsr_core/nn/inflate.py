"""Inflating a 2D (image) network to video: temporal modules run after chosen layers of the image network.

The image network keeps running on frames ``[B*T, C, H, W]`` exactly as before. After each chosen layer (a
*site*: e.g. every ``Transformer2DModel`` and ``ResnetBlock2D`` of a diffusers ``UNet2DConditionModel``), a
forward hook reshapes the layer's output to the video layout ``[B, C, T, H, W]``, runs the site's temporal
module on it and reshapes back. So:

* **names do not change**: the image network's modules, parameters and ``state_dict`` keys stay what they were
  (pretrained image weights, diffusers LoRA names and FSDP block classes keep working); each temporal module
  is a new child ``<site>.temporal`` and brings only new keys;
* **it starts as the image network**: temporal modules built zero-initialised (``x + 0``) leave every output
  unchanged; :func:`vsr_core.testing.assert_reproduces_image_model` checks that for a plugin;
* **the call takes frames**: ``model(frames, ..., num_frames=T)`` -- the inflated model receives per-frame inputs
  ``[B*T, ...]`` (conditioning repeated per frame with :func:`~vsr_core.nn.reshape.repeat_per_frame`) plus
  the clip length, which a hook on the model removes from the keyword arguments before its ``forward`` runs.
  ``temporal_kwargs={...}`` in the same call goes to the temporal modules whose ``forward`` declares those names
  (e.g. the timestep for an AdaLN; a module with ``**kwargs`` gets all of them). The values stay in effect
  until the next call, so activation checkpointing that recomputes a layer during ``backward`` sees the clip
  length of the forward pass before it.

The model is inflated in place (and returned); ``copy.deepcopy`` of an inflated model is an independent
inflated model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.nn.reshape import frames_to_video, video_to_frames

__all__ = [
    "TEMPORAL_CHILD",
    "TemporalSite",
    "inflate_to_video",
    "is_inflated",
    "modules_of_type",
    "output_channels",
    "run_on_frames",
    "temporal_modules",
    "temporal_parameters",
    "temporal_state_dict",
]

#: Name of the child module that holds a site's temporal module (``down_blocks.0.attentions.0.temporal``).
TEMPORAL_CHILD = "temporal"
_STATE_ATTR = "_vsr_video_call"

Selector = Callable[[str, nn.Module], bool] | Iterable[str] | type | tuple[type, ...]


@dataclass(frozen=True)
class TemporalSite:
    """Where a temporal module goes: the qualified ``name`` of the 2D ``module`` it follows and its output
    ``channels`` (``None`` when :func:`output_channels` cannot tell)."""

    name: str
    module: nn.Module
    channels: int | None


def output_channels(module: nn.Module) -> int | None:
    """Channels of a 2D layer's output: ``out_channels`` (convolutions, diffusers resnets, Transformer2DModel,
    samplers), else the last resnet's of a diffusers down/mid/up block; ``None`` if neither exists."""
    channels = getattr(module, "out_channels", None)
    if isinstance(channels, int):
        return channels
    resnets = getattr(module, "resnets", None)
    if isinstance(resnets, nn.ModuleList) and len(resnets):
        return output_channels(resnets[-1])
    return None


def modules_of_type(*types: type, under: Iterable[str] | None = None) -> Callable[[str, nn.Module], bool]:
    """A site selector: modules that are instances of ``types``, only inside the submodules named in ``under``
    (e.g. ``under=["down_blocks.1", "mid_block"]``) when given."""
    prefixes = None if under is None else tuple(under)

    def select(name: str, module: nn.Module) -> bool:
        inside = prefixes is None or any(name == p or name.startswith(p + ".") for p in prefixes)
        return inside and isinstance(module, types)

    return select


def run_on_frames(temporal: nn.Module, frames: torch.Tensor, num_frames: int, **kwargs: Any) -> torch.Tensor:
    """Run a video module on frames: ``[B*T, C, H, W] -> [B, C, T, H, W] -> temporal -> [B*T, C, H, W]``."""
    return video_to_frames(temporal(frames_to_video(frames, num_frames), **kwargs))


class _VideoCall:
    """The clip length and temporal keyword arguments of the model's latest call (a forward pre-hook on the root)."""

    def __init__(self) -> None:
        self.num_frames: int | None = None
        self.temporal_kwargs: dict[str, Any] = {}
        self.sites: list[str] = []

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        self.num_frames = kwargs.pop("num_frames", None)
        self.temporal_kwargs = kwargs.pop("temporal_kwargs", None) or {}
        return args, kwargs


class _TemporalHook:
    """Forward hook of one site: applies the site's temporal module to the site's output."""

    def __init__(self, call: _VideoCall, site: str, temporal: nn.Module) -> None:
        self.call, self.site, self.temporal = call, site, temporal

    def _apply(self, frames: Any) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(f"temporal site {self.site!r} must output frames [B*T, C, H, W], got {shape}")
        if self.call.num_frames is None:
            raise ValueError(f"{self.site!r} has a temporal module: call the inflated model with num_frames=T")
        return run_on_frames(self.temporal, frames, self.call.num_frames, **self._accepted(self.call.temporal_kwargs))

    def _accepted(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The temporal keyword arguments this module's ``forward`` declares (all of them if it takes ``**kwargs``)."""
        if not kwargs:
            return kwargs
        parameters = inspect.signature(self.temporal.forward).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return kwargs
        names = {p.name for p in parameters}
        return {k: v for k, v in kwargs.items() if k in names}

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> Any:
        # The primary output is a tensor, the first item of a tuple (diffusers blocks with return_dict=False,
        # down blocks' (hidden, skips)) or the first field of a BaseOutput (``.sample``).
        if isinstance(output, torch.Tensor):
            return self._apply(output)
        if isinstance(output, tuple):
            return (self._apply(output[0]), *output[1:])
        if isinstance(output, dict):  # diffusers BaseOutput is an OrderedDict dataclass
            first = next(iter(output))
            return type(output)(**{**output, first: self._apply(output[first])})
        raise ValueError(f"temporal site {self.site!r} returns {type(output).__name__}, not a tensor or tuple")


def _resolve_sites(model: nn.Module, after: Selector) -> list[tuple[str, nn.Module]]:
    # Modules inside temporal modules attached before are never sites themselves.
    call = getattr(model, _STATE_ATTR, None)
    attached = tuple(f"{site}.{TEMPORAL_CHILD}" for site in (call.sites if call is not None else ()))
    named = [
        (n, m) for n, m in model.named_modules() if n and not any(n == a or n.startswith(a + ".") for a in attached)
    ]
    if isinstance(after, type) or (isinstance(after, tuple) and all(isinstance(t, type) for t in after)):
        after = modules_of_type(*((after,) if isinstance(after, type) else after))
    if callable(after):
        return [(n, m) for n, m in named if after(n, m)]
    by_name = dict(named)
    sites = []
    for name in after:
        if name not in by_name:
            example = next((n for n in by_name if n.count(".") >= 2), next(iter(by_name), ""))
            raise ConfigError(
                f"inflate_to_video: {type(model).__name__} has no module named {name!r} (names look like {example!r})"
            )
        sites.append((name, by_name[name]))
    return sites


def inflate_to_video(
    model: nn.Module, temporal_module_factory: Callable[[TemporalSite], nn.Module], *, after: Selector
) -> nn.Module:
    """Attach a temporal module after each selected layer of ``model`` (in place) and return ``model``.

    ``temporal_module_factory(site)`` builds the module for a :class:`TemporalSite`; it maps a video
    ``[B, C, T, H, W]`` to the same shape (for example
    ``lambda site: TemporalSelfAttention(site.channels, num_heads=8)``). ``after`` selects the sites: a
    predicate ``(name, module) -> bool`` (see :func:`modules_of_type`), a module class or tuple of classes, or an
    iterable of qualified module names. The inflated model is then called as ``model(frames, ..., num_frames=T)``
    with frames ``[B*T, ...]`` (row ``b*T + t``). Inflating again adds more sites to the same model.
    """
    sites = _resolve_sites(model, after)
    if not sites:
        raise ConfigError(f"inflate_to_video: the selection matches no module of {type(model).__name__}")
    call = getattr(model, _STATE_ATTR, None)
    if call is None:
        call = _VideoCall()
        model.register_forward_pre_hook(call, with_kwargs=True)
        setattr(model, _STATE_ATTR, call)
    for name, module in sites:
        if name in call.sites or hasattr(module, TEMPORAL_CHILD):
            raise ConfigError(f"inflate_to_video: {name!r} already has a child named {TEMPORAL_CHILD!r}")
        temporal = temporal_module_factory(TemporalSite(name, module, output_channels(module)))
        reference = next(module.parameters(), None)
        if reference is not None:
            temporal.to(device=reference.device, dtype=reference.dtype)
        module.add_module(TEMPORAL_CHILD, temporal)
        module.register_forward_hook(_TemporalHook(call, name, temporal))
        call.sites.append(name)
    return model


def is_inflated(model: nn.Module) -> bool:
    """Whether :func:`inflate_to_video` attached temporal modules to ``model``."""
    return getattr(model, _STATE_ATTR, None) is not None


def temporal_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Site name -> temporal module, in the order they were attached (empty for a model never inflated)."""
    call = getattr(model, _STATE_ATTR, None)
    sites = [] if call is None else call.sites
    return {name: getattr(model.get_submodule(name), TEMPORAL_CHILD) for name in sites}


def temporal_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of all temporal modules (what a temporal-layers-only training stage optimises)."""
    return [p for module in temporal_modules(model).values() for p in module.parameters()]


def temporal_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The temporal modules' entries of ``model.state_dict()``, under the same keys (``<site>.temporal.*``)."""
    prefixes = tuple(f"{name}.{TEMPORAL_CHILD}." for name in temporal_modules(model))
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
