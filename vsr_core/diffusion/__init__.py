"""Noise schedules built on diffusers scheduler configs: DDPM family and flow matching, plus samplers."""

from vsr_core.diffusion.ddpm import DDPMSchedule
from vsr_core.diffusion.flow_matching import FlowMatchingSchedule
from vsr_core.diffusion.samplers import SAMPLER_KINDS, make_ddpm_sampler, sample
from vsr_core.diffusion.scheduler_config import PRESETS

__all__ = ["PRESETS", "SAMPLER_KINDS", "DDPMSchedule", "FlowMatchingSchedule", "make_ddpm_sampler", "sample"]
