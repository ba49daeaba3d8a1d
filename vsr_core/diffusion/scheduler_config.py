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

__all__ = ["PRESETS", "init_kwargs", "load_scheduler_config", "scheduler_class", "strip_meta"]

#: Keys diffusers stores in every config that are not constructor arguments.
_META_KEYS = ("_class_name", "_diffusers_version", "_use_default_values")

#: Named scheduler configs of the base models the plugins build on (their ``scheduler/scheduler_config.json``;
#: only keys that change the schedule or its sampling; keys left out take the diffusers class's default).
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
    # Stable Diffusion 1.x / 2.x tables in the DDPMScheduler form diffusers' training scripts load them
    # in (DDPMScheduler.from_pretrained(model, subfolder="scheduler")): scaled_linear 0.00085 -> 0.012.
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
    # stabilityai/stable-diffusion-2-1-base, scheduler/scheduler_config.json: PNDM (PLMS only), epsilon.
    # The betas are the LDM config's linear_start/linear_end 0.00085/0.012 (v2-inference.yaml) with LDM's
    # "linear" schedule, which is diffusers' "scaled_linear" (linspace of the square roots, squared).
    # No timestep_spacing key: diffusers' default "leading" applies, shifted by steps_offset 1.
    "sd2.1-base": {
        "_class_name": "PNDMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
    },
    # stabilityai/stable-diffusion-x4-upscaler, scheduler/scheduler_config.json: the UNet's scheduler is a
    # DDIMScheduler (model_index.json). Betas and parameterization from the original
    # configs/stable-diffusion/x4-upscaling.yaml (Stability-AI/stablediffusion): linear_start 0.0001,
    # linear_end 0.02, timesteps 1000, parameterization "v"; LDM's "linear" is diffusers' "scaled_linear".
    # steps_offset 1 without timestep_spacing (default "leading"): 50 DDIM steps are [981, 961, ..., 1].
    "sd-x4-upscaler": {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
    },
    # stabilityai/stable-diffusion-x4-upscaler, low_res_scheduler/: the DDPMScheduler that noises the
    # low-resolution image at noise_level (StableDiffusionUpscalePipeline, max_noise_level 350). The same
    # dict is what diffusers' single-file loader builds for this component (loaders/single_file_utils.py);
    # it is x4-upscaling.yaml's low_scale_config noise_schedule_config (linear_start 0.0001, linear_end
    # 0.02 with LDM's "linear" = diffusers' "scaled_linear").
    "sd-x4-upscaler-low-res": {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "clip_sample": True,
        "variance_type": "fixed_small",
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
