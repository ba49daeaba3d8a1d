"""Typed option groups every method reuses (LitGPT's ``TrainArgs``/``EvalArgs`` style).

A method takes a group as one init argument with a real default::

    def __init__(self, scale: int = 4, lora: LoRAOptions = LoRAOptions(), sampling: MySampling = MySampling(),
                 **kwargs: Any) -> None:
        super().__init__(scale=scale, **kwargs)
        self.lora = LoRAOptions.coerce(lora)

jsonargparse shows every field with its default in ``--model.help`` and ``--print_config``
(``--model.lora.rank 16`` on the command line, a nested mapping in YAML). A method whose defaults
differ subclasses the group (``class SATBSampling(SamplingOptions): num_inference_steps: int = 5``)
and narrows choices with ``Literal``. Groups are frozen dataclasses: a default instance in a
signature is never mutated. Checkpoints and ``vsr export`` records store them as plain dicts
(:meth:`OptionGroup.as_dict`), so :meth:`OptionGroup.coerce` accepts both forms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from vsr_core.errors import ConfigError

__all__ = [
    "ColorFix",
    "LoRAOptions",
    "OptionGroup",
    "SamplingOptions",
    "TilingOptions",
    "plain_hyperparameters",
]

G = TypeVar("G", bound="OptionGroup")

ColorFix = Literal["none", "wavelet", "adain"]


@dataclass(frozen=True)
class OptionGroup:
    """Base of the option groups: frozen, checked on construction, convertible to and from dicts."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            hint = hints.get(f.name)
            if get_origin(hint) is Literal and value not in get_args(hint):
                choices = ", ".join(map(str, get_args(hint)))
                raise ConfigError(f"{type(self).__name__}.{f.name} must be one of {choices}; got {value!r}")
            if get_origin(hint) is tuple and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))  # YAML lists arrive as lists
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line) for values that do not fit together; override per group."""

    @classmethod
    def coerce(cls: type[G], value: G | dict[str, Any] | None) -> G:
        """``value`` as this group: an instance (returned as is), a dict of fields, or ``None`` (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, OptionGroup):
            value = value.as_dict()
        if not isinstance(value, dict):
            raise ConfigError(f"{cls.__name__} must be a mapping of its fields, got {type(value).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no option '{unknown[0]}'; its options are {', '.join(sorted(names))}"
            )
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain Python values (tuples stay tuples)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self: G, **changes: Any) -> G:
        """A copy with ``changes`` applied (checked like a new group)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class LoRAOptions(OptionGroup):
    """LoRA adapters (peft) on a backbone's projections.

    Args:
        rank: adapter rank ``r``.
        alpha: peft ``lora_alpha``; the update is scaled by ``alpha / rank``.
        targets: module-name suffixes to adapt (diffusers names, e.g. ``to_q``, ``to_out.0``).
        dropout: dropout on the adapter input during training.
    """

    rank: int = 64
    alpha: float = 64.0
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    dropout: float = 0.0

    def check(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {self.rank}")
        if not self.targets:
            raise ConfigError("LoRA targets must name at least one module")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TilingOptions(OptionGroup):
    """Spatial tiling of a VAE (encode and decode), in pixels.

    Args:
        tile_size: tile side; ``0`` encodes and decodes whole frames.
        tile_overlap: pixels shared by neighbouring tiles (blended linearly).
    """

    tile_size: int = 0
    tile_overlap: int = 0

    def check(self) -> None:
        if self.tile_size < 0 or self.tile_overlap < 0:
            raise ConfigError(f"tile_size and tile_overlap must be >= 0, got {self.tile_size}, {self.tile_overlap}")
        if self.tile_size and self.tile_overlap >= self.tile_size:
            raise ConfigError(f"tile_overlap {self.tile_overlap} must be smaller than tile_size {self.tile_size}")

    @property
    def enabled(self) -> bool:
        return self.tile_size > 0


@dataclass(frozen=True)
class SamplingOptions(OptionGroup):
    """How ``restore`` samples by default (diffusers' vocabulary); ``restore`` arguments override it.

    Args:
        num_inference_steps: denoiser evaluations per window.
        guidance_scale: classifier-free guidance; ``1`` runs a single conditional pass.
        sampler: the sampler kind (a method narrows the choices with ``Literal``).
        color_fix: colour correction of the output against the upsampled input.
    """

    num_inference_steps: int = 1
    guidance_scale: float = 1.0
    sampler: str = "ddim"
    color_fix: ColorFix = "none"

    def check(self) -> None:
        if self.num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance_scale < 1.0:
            raise ConfigError(f"guidance_scale must be >= 1 (1 disables guidance), got {self.guidance_scale}")


def plain_hyperparameters(hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` with option groups as plain dicts and only plain values kept.

    Checkpoints hold only plain types (None, bool, int, float, str, lists, tuples, dicts), so they
    load with ``torch.load(weights_only=True)``. A callable given in Python code (an optimizer
    factory) is stored as ``None``; from the CLI it arrives as a ``class_path`` mapping and is kept.
    Module objects are kept for ``vsr export`` to record (or refuse) by name.
    """
    return {key: _plain(value) for key, value in hparams.items()}


_PLAIN = (type(None), bool, int, float, str)


def _plain(value: Any) -> Any:
    if isinstance(value, OptionGroup):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, _PLAIN):
        return value
    from torch import nn

    if isinstance(value, nn.Module):
        # Kept: `vsr export` records it as class_path/init_args where its class allows, and
        # refuses it (naming the argument) where it does not.
        return value
    # A Python callable (an optimizer or scheduler factory passed in code) cannot be stored without
    # storing code and is not needed to rebuild the model; the CLI records such arguments as
    # class_path/init_args mappings instead, which are kept.
    return None
