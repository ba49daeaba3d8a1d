"""Read a diffusers scheduler configuration from a preset name, dict, file, folder or scheduler instance."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import diffusers
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.pretrained import resolve_pretrained

#: Keys diffusers stores in every config that are not constructor arguments.
_META_KEYS = ("_class_name", "_diffusers_version", "_use_default_values")

#: Named scheduler configs of the base models the plugins build on (copied from their
#: ``scheduler/scheduler_config.json``; only keys that change the schedule or its sampling).
PRESETS: dict[str, dict[str, Any]] = {
    # CogVideoX-5b and CogVideoX1.5-5B: v-prediction, zero terminal SNR, no SNR shift.
    "cogvideox": {
        "_class_name": "CogVideoXDDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "snr_shift_scale": 1.0,
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "timestep_spacing": "trailing",
    },
    # CogVideoX-2b: the same with the SNR shifted by 3 (alpha_bar / (3 - 2 alpha_bar)).
    "cogvideox-2b": {
        "_class_name": "CogVideoXDDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "snr_shift_scale": 3.0,
        "clip_sample": False,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "timestep_spacing": "trailing",
    },
    # Stable Diffusion 1.x (epsilon) and 2.1-768 (v-prediction): scaled_linear 0.00085 -> 0.012.
    "sd": {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    },
    "sd-v": {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    },
    # Stable Diffusion x4 upscaler (the UNet's scheduler): scaled_linear 0.0001 -> 0.02, v-prediction.
    "sd-x4-upscaler": {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    },
    # Wan2.1 (flow matching): sigma shift 3 (480p; Wan recommends 5 for 720p).
    "wan": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0},
    # Rectified flow without shift.
    "flow": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0},
}


def scheduler_class(name: str) -> type[SchedulerMixin]:
    """The diffusers scheduler class called ``name``."""
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ConfigError(f"{name!r} is not a diffusers scheduler class")
    return cls


def init_kwargs(cls: type[SchedulerMixin], config: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``config`` that ``cls.__init__`` accepts (others would only produce warnings)."""
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {k: v for k, v in config.items() if k in accepted}


def load_scheduler_config(config: str | dict[str, Any] | SchedulerMixin, default_class: str) -> dict[str, Any]:
    """Return a scheduler config dict with ``_class_name`` set.

    ``config`` is a scheduler instance, a dict (``_class_name`` optional: ``default_class`` then,
    or ``CogVideoXDDIMScheduler`` when the dict has ``snr_shift_scale``),
    a preset name of :data:`PRESETS`, a ``scheduler_config.json`` file, a scheduler folder, or a
    diffusers model folder / hub id holding ``scheduler/``.
    """
    if isinstance(config, SchedulerMixin):
        return {**dict(config.config), "_class_name": type(config).__name__}
    if isinstance(config, dict):
        out = dict(config)
    elif config in PRESETS:
        out = dict(PRESETS[config])
    else:
        path = Path(config).expanduser()
        if path.is_file():
            file = path
        else:
            if not path.exists() and "/" not in str(config):
                raise ConfigError(
                    f"unknown scheduler preset {config!r}; use one of {', '.join(PRESETS)}, a scheduler_config.json, or a model folder"
                )
            folder = resolve_pretrained(config, "" if (path / "scheduler_config.json").is_file() else "scheduler")
            file = folder / "scheduler_config.json"
        try:
            out = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise PretrainedError(f"cannot read scheduler config {file}: {err}") from None
    # snr_shift_scale exists only in the CogVideoX schedulers: a bare dict with it means one of them.
    out.setdefault("_class_name", "CogVideoXDDIMScheduler" if "snr_shift_scale" in out else default_class)
    return out


def strip_meta(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without diffusers' bookkeeping keys."""
    return {k: v for k, v in config.items() if k not in _META_KEYS}
