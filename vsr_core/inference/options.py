"""The options of ``vsr restore`` (and ``vsr.load``) resolved for one method into :class:`EngineOptions`."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

from vsr_core.errors import ConfigError
from vsr_core.inference.engine import EngineOptions
from vsr_core.inference.sampling import parse_sample_options

__all__ = ["engine_options"]


def _print_warning(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def engine_options(
    method: Any,
    device: Any = "cpu",
    *,
    steps: int | None = None,
    prompt: str | None = None,
    sample: list[str] | dict[str, Any] | None = None,
    window: int | None = None,
    overlap: int | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    color_fix: str = "none",
    fusion: str = "auto",
    precision: str = "fp32",
    seed: int | None = 0,
    on_warning: Callable[[str], None] = _print_warning,
) -> EngineOptions:
    """:class:`EngineOptions` for ``method`` from the options ``vsr restore`` takes.

    ``steps`` becomes ``num_inference_steps``; ``sample`` holds method-specific ``restore`` options
    (``KEY=VALUE`` strings, or a dict); the method's ``val_sampling`` gives the defaults underneath.
    ``prompt`` follows :func:`vsr_core.text.prompt_for` (a method that ignores prompts drops it with
    one warning, passed to ``on_warning``).

    Raises:
        ConfigError: a bad step count, an unknown ``sample`` key or a bad value, a prompt the method refuses.
    """
    from vsr_core.text import prompt_for

    sampling = dict(getattr(method, "val_sampling", {}) or {})
    sampling.update(parse_sample_options(method, sample))
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"--steps must be an integer >= 1, got {steps!r}")
        sampling["num_inference_steps"] = steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prompt = prompt_for(method, prompt)
    for warning in caught:
        on_warning(str(warning.message))
    return EngineOptions(
        window=window,
        overlap=overlap,
        tile=tile,
        tile_overlap=tile_overlap,
        color_fix=color_fix,
        device=device,
        precision=precision,
        seed=seed,
        prompt=prompt,
        fusion=fusion,
        sampling=sampling,
    )
