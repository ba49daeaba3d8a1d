"""Noise schedules built on diffusers scheduler configs: one protocol for DDPM and flow matching, samplers, noise-level conditioning."""

from vsr_core.diffusion.base import NoiseSchedule
from vsr_core.diffusion.ddpm import DDPMSchedule
from vsr_core.diffusion.flow_matching import FLOW_SAMPLER_KINDS, FlowMatchingSchedule
from vsr_core.diffusion.noise_level import LowResNoiser
from vsr_core.diffusion.samplers import SAMPLER_KINDS, ExactTimestepsMixin, make_ddpm_sampler, sample
from vsr_core.diffusion.scheduler_config import PRESETS

__all__ = [
    "FLOW_SAMPLER_KINDS",
    "PRESETS",
    "SAMPLER_KINDS",
    "DDPMSchedule",
    "ExactTimestepsMixin",
    "FlowMatchingSchedule",
    "LowResNoiser",
    "NoiseSchedule",
    "make_ddpm_sampler",
    "sample",
]
