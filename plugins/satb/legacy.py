"""Reading init-argument records of the flat layout SATB-VR had before its option groups.

Checkpoints and ``vsr export`` folders written before the option groups (:mod:`satb.options`)
record ~35 flat arguments (``lora_rank``, ``num_steps``, ``timestep_sampling``, ...), several as
``None`` whose meaning depended on the preset: a randomly initialized tiny model (``preset: tiny``
without ``pretrained``) trained fully with residual outputs at the solver's start points, any other
model with LoRA and CogVideoX's v-prediction. :func:`upgrade_flat_arguments` turns such a record
into the option groups with exactly the values the old code used, so those files keep loading and
restore as before. New files record the groups.
"""

from __future__ import annotations

from typing import Any

from vsr_core.errors import ConfigError

__all__ = ["FLAT_ARGUMENTS", "upgrade_flat_arguments"]

#: The SATB-specific init arguments of the flat layout (the core's arguments did not change).
FLAT_ARGUMENTS = (
    "blend",
    "use_predictor",
    "lq_condition",
    "denoiser_finetune",
    "predictor_finetune",
    "ddc_weight",
    "ddc_blocks",
    "diff_grad_to_predictor",
    "predictor_parameterization",
    "predictor_timestep",
    "tau_max",
    "timestep_sampling",
    "train_step_counts",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "controlnet_layers",
    "text_encoder",
    "ignore_prompts",
    "prompt_template",
    "text_cache",
    "num_steps",
    "guidance_scale",
    "color_fix",
    "sampler",
    "denoiser_output",
    "vae_tile_size",
    "vae_tile_overlap",
)

#: The old defaults of arguments a record may leave out (it then used these).
_OLD_DEFAULTS: dict[str, Any] = {
    "blend": "satb",
    "use_predictor": True,
    "lq_condition": True,
    "ddc_weight": 1.0,
    "predictor_timestep": 399,
    "lora_rank": 64,
    "text_encoder": "auto",
    "ignore_prompts": True,
    "prompt_template": True,
    "num_steps": 5,
    "guidance_scale": 1.0,
    "color_fix": True,
    "sampler": "dpmsolver++",
    "vae_tile_overlap": 0,
}

_OLD_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
#: The jump-start timestep of a step count under the old rule (Table 4's ``τ_s``).
_OLD_START = {1: 199, 2: 199, 3: 299}


def upgrade_flat_arguments(
    flat: dict[str, Any], preset: str, pretrained: str | None, controlnet_layers: int
) -> dict[str, dict[str, Any]]:
    """The option-group arguments (plain dicts, by init-argument name) a flat-layout record stands for.

    Args:
        flat: the record's SATB-specific flat arguments (a subset of :data:`FLAT_ARGUMENTS`).
        preset, pretrained: the record's ``preset`` and ``pretrained`` (they decided the ``None`` defaults).
        controlnet_layers: the preset's ControlNet depth; a record asking for another one is refused.

    Raises:
        ConfigError: an argument the groups cannot express (a ControlNet depth other than the preset's).
    """
    a = {**_OLD_DEFAULTS, **flat}
    random_tiny = preset == "tiny" and not pretrained

    def chosen(name: str, tiny_default: Any, default: Any) -> Any:
        value = a.get(name)
        return value if value is not None else (tiny_default if random_tiny else default)

    if a.get("controlnet_layers") not in (None, controlnet_layers):
        raise ConfigError(
            f"this record asks for a {a['controlnet_layers']}-block ControlNet; the {preset} preset has {controlnet_layers}"
        )
    timestep_sampling = chosen("timestep_sampling", "jump_start", "paper")
    step_counts = tuple(a.get("train_step_counts") or (1, 5))
    if a.get("tau_max") is not None:
        tau_max = a["tau_max"]
    elif timestep_sampling == "jump_start":
        tau_max = max(_OLD_START.get(n, 399) for n in step_counts) + 1
    else:
        tau_max = 1000
    lq_condition = bool(a["lq_condition"])
    tiny_output = "lq_residual" if lq_condition else "x0"
    rank = int(a["lora_rank"])
    return {
        "recipe": {
            "timestep_sampling": timestep_sampling,
            "tau_max": tau_max,
            "train_step_counts": step_counts,
            "blend": a["blend"],
            "diff_weighting": "v",
            "diff_grad_to_predictor": chosen("diff_grad_to_predictor", False, True),
        },
        "predictor_options": {
            "enabled": bool(a["use_predictor"]),
            "parameterization": chosen("predictor_parameterization", "residual", "v_at_lq"),
            "timestep": "tau_s" if a["predictor_timestep"] is None else int(a["predictor_timestep"]),
            "finetune": chosen("predictor_finetune", "full", "lora"),
        },
        "denoiser_options": {
            "lq_condition": lq_condition,
            "output": chosen("denoiser_output", tiny_output, "v"),
            "finetune": chosen("denoiser_finetune", "full", "lora"),
        },
        "ddc": {
            "weight": float(a["ddc_weight"]),
            "blocks": "quarters" if a.get("ddc_blocks") is None else tuple(a["ddc_blocks"]),
        },
        "lora": {
            "rank": rank,
            "alpha": float(rank if a.get("lora_alpha") is None else a["lora_alpha"]),
            "targets": tuple(a.get("lora_targets") or _OLD_LORA_TARGETS),
        },
        "sampling": {
            "num_inference_steps": int(a["num_steps"]),
            "guidance_scale": float(a["guidance_scale"]),
            "sampler": a["sampler"],
            "color_fix": "wavelet" if a["color_fix"] else "none",
            "prompt_template": bool(a["prompt_template"]),
            "vae_posterior": "mode",
        },
        "text": {
            "encoder": a["text_encoder"],
            "ignore_prompts": bool(a["ignore_prompts"]),
            "cache": a.get("text_cache"),
        },
        "vae_tiling": {"tile_size": int(a.get("vae_tile_size") or 0), "tile_overlap": int(a["vae_tile_overlap"])},
    }
