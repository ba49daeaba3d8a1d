"""Named degradation presets and ``build_degradation(preset, scale, **overrides)``.

Presets (see docs/degradations.md for every range and its source):

* ``none``          identity (scale 1 restoration on already degraded or clean data)
* ``bicubic``       antialiased bicubic downscale only
* ``simple``        isotropic Gaussian blur + antialiased bicubic downscale (DiffVSR stage 1)
* ``realesrgan``    Real-ESRGAN second-order pipeline (PS-SR's training degradation)
* ``realbasicvsr``  RealBasicVSR: second order + video codec, mild parameter drift over frames

Overrides are nested mappings or dotted keys over :class:`DegradationParams`, e.g.
``build_degradation("realbasicvsr", 4, codec=None, **{"second.noise.gaussian_sigma": (1, 10)})``
or ``second={"noise": {"prob": 0.0}}``; ``None`` turns a stage off and a mapping for a stage that is
off turns it on with default values plus the mapping.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Mapping
from typing import Any

from vsr_core.data.degradations.params import (
    BlurParams,
    CodecParams,
    DegradationParams,
    DriftParams,
    FinalParams,
    JPEGParams,
    NoiseParams,
    OrderParams,
    ResizeParams,
)
from vsr_core.data.degradations.pipeline import VideoDegradation
from vsr_core.errors import ConfigError

__all__ = ["apply_overrides", "available_presets", "build_degradation", "preset_params", "PRESETS"]

_BICUBIC_FINAL = {"modes": ("bicubic",), "antialias": True, "sinc_prob": 0.0, "jpeg": None}


def _none() -> DegradationParams:
    return DegradationParams(first=None, final=None, quantize=False)


def _bicubic() -> DegradationParams:
    return DegradationParams(first=None, final=FinalParams(**_BICUBIC_FINAL))


def _simple() -> DegradationParams:
    gaussian = BlurParams(kernel_types=("iso",), kernel_probs=(1.0,), sinc_prob=0.0)
    return DegradationParams(
        first=OrderParams(blur=gaussian, resize=None, noise=None, jpeg=None), final=FinalParams(**_BICUBIC_FINAL)
    )


def _second_order(jpeg: JPEGParams | None) -> OrderParams:
    # Real-ESRGAN second-order values (blur_prob2, resize_prob2/range2, noise_range2, poisson_scale_range2).
    return OrderParams(
        blur=BlurParams(prob=0.8, sigma=(0.2, 1.5)),
        resize=ResizeParams(probs=(0.3, 0.4, 0.3), scale=(0.3, 1.2), relative_to="output"),
        noise=NoiseParams(gaussian_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)),
        jpeg=jpeg,
    )


def _realesrgan() -> DegradationParams:
    # Real-ESRGAN has no second-order JPEG: its second JPEG is the one of the final stage.
    return DegradationParams(first=OrderParams(), second=_second_order(None), final=FinalParams())


def _realbasicvsr() -> DegradationParams:
    # RealBasicVSR: JPEG closes the second order, the final stage is resize + sinc only, then the codec.
    return DegradationParams(
        first=OrderParams(),
        second=_second_order(JPEGParams()),
        final=FinalParams(jpeg=None),
        codec=CodecParams(),
        drift=DriftParams(),
    )


PRESETS: dict[str, Callable[[], DegradationParams]] = {
    "none": _none,
    "bicubic": _bicubic,
    "simple": _simple,
    "realesrgan": _realesrgan,
    "realbasicvsr": _realbasicvsr,
}


def available_presets() -> list[str]:
    """Names accepted by :func:`build_degradation`."""
    return list(PRESETS)


def preset_params(preset: str) -> DegradationParams:
    """The :class:`DegradationParams` of a named preset (ConfigError with suggestions if unknown)."""
    factory = PRESETS.get(str(preset).lower())
    if factory is None:
        close = difflib.get_close_matches(str(preset).lower(), PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown degradation preset {preset!r}{hint} (available: {', '.join(PRESETS)})")
    return factory()


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    # "second.noise.prob": 0 -> {"second": {"noise": {"prob": 0}}}, deep-merged with nested mappings.
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        if rest:
            value = {rest: value}
        if isinstance(value, Mapping):
            value = _nest(value)
            if isinstance(nested.get(head), dict):
                value = _merge(nested[head], value)
        nested[head] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dataclass_type(owner: type, name: str) -> type | None:
    hint = typing.get_type_hints(owner)[name]
    for candidate in typing.get_args(hint) or (hint,):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def apply_overrides(params: Any, overrides: Mapping[str, Any], path: str = "") -> Any:
    """A copy of dataclass ``params`` with nested/dotted ``overrides`` applied (ConfigError on unknown keys)."""
    names = [f.name for f in dataclasses.fields(params)]
    changes: dict[str, Any] = {}
    for key, value in _nest(overrides).items():
        where = f"{path}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{path}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown degradation option '{where}'{hint} (options here: {', '.join(names)})")
        sub_type = _dataclass_type(type(params), key)
        if isinstance(value, Mapping):
            if sub_type is None:
                raise ConfigError(f"degradation option '{where}' takes a value, not a mapping")
            current = getattr(params, key)
            value = apply_overrides(current if current is not None else sub_type(), value, f"{where}.")
        elif isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    try:
        return dataclasses.replace(params, **changes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid degradation option under '{path or '<top>'}': {err}") from None


def build_degradation(preset: str, scale: int, **overrides: Any) -> VideoDegradation:
    """The :class:`VideoDegradation` of a named ``preset`` for ``scale``, with optional ``overrides``.

    ``build_degradation("realbasicvsr", 4)`` maps ``[B,3,T,H,W]`` clips in ``[-1, 1]`` to
    ``[B,3,T,H/4,W/4]``. See the module docstring for the override syntax.
    """
    params = preset_params(preset)
    if overrides:
        params = apply_overrides(params, overrides)
    return VideoDegradation(params, scale, name=str(preset).lower())
