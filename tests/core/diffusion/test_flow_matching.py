"""FlowMatchingSchedule: sigma grid and noising from diffusers, LQ->HQ flow, Euler sampler with exact sigmas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from vsr_core.diffusion import FlowMatchingSchedule, sample
from vsr_core.errors import ConfigError


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(3, 4, 2, 5, 6, generator=gen), torch.randn(3, 4, 2, 5, 6, generator=gen)


def test_wan_grid_is_diffusers_shifted_grid() -> None:
    schedule = FlowMatchingSchedule.preset("wan")
    reference = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    assert schedule.shift == 3.0 and schedule.sigmas.shape == (1000,)
    assert torch.equal(schedule.sigmas, reference.sigmas) and torch.equal(schedule.timesteps, reference.timesteps)
    plain = torch.arange(1000, 0, -1, dtype=torch.float32) / 1000
    torch.testing.assert_close(schedule.shift_sigma(plain), schedule.sigmas)
    torch.testing.assert_close(schedule.timestep(schedule.sigmas), schedule.timesteps)


def test_add_noise_equals_diffusers_scale_noise() -> None:
    schedule = FlowMatchingSchedule("wan")
    reference = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    x0, noise = _pair()
    idx = torch.tensor([0, 400, 999])
    ours = schedule.add_noise(x0, noise, schedule.sigmas[idx])
    torch.testing.assert_close(ours, reference.scale_noise(x0, reference.timesteps[idx], noise))
    s = schedule.sigmas[idx].view(3, 1, 1, 1, 1)
    torch.testing.assert_close(ours, (1 - s) * x0 + s * noise)


def test_velocity_conversions_and_paired_flow() -> None:
    schedule = FlowMatchingSchedule("flow")
    x_hq, x_lq = _pair(1)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    x_s = schedule.interpolate(x_hq, x_lq, sigma)
    s = sigma.view(3, 1, 1, 1, 1)
    torch.testing.assert_close(x_s, (1 - s) * x_hq + s * x_lq)  # PS-SR Eq. 4
    v = schedule.velocity(x_hq, x_lq)
    torch.testing.assert_close(v, x_lq - x_hq)  # PS-SR Eq. 7 target
    torch.testing.assert_close(schedule.x0_from_velocity(x_s, v, sigma), x_hq)
    torch.testing.assert_close(schedule.noise_from_velocity(x_s, v, sigma), x_lq)
    # One Euler step along the straight path lands on the path (Eq. 3).
    torch.testing.assert_close(schedule.step(x_s, v, sigma, 0.25), schedule.interpolate(x_hq, x_lq, 0.25))


def test_sampler_sigmas_shifted_or_exact() -> None:
    schedule = FlowMatchingSchedule("wan")
    shifted = schedule.make_sampler(sigmas=[1.0, 0.75, 0.5, 0.25])
    torch.testing.assert_close(
        shifted.sigmas, torch.cat([schedule.shift_sigma(torch.tensor([1.0, 0.75, 0.5, 0.25])), torch.zeros(1)])
    )
    exact = schedule.make_sampler(sigmas=[1.0, 0.75, 0.5, 0.25], apply_shift=False)
    torch.testing.assert_close(exact.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    torch.testing.assert_close(exact.timesteps, torch.tensor([1000.0, 750.0, 500.0, 250.0]))
    from_t = schedule.make_sampler(timesteps=[1000, 500], apply_shift=False)
    torch.testing.assert_close(from_t.sigmas, torch.tensor([1.0, 0.5, 0.0]))
    assert len(schedule.make_sampler(num_inference_steps=7).timesteps) == 7
    with pytest.raises(ConfigError, match="exactly one of"):
        schedule.make_sampler(sigmas=[1.0], num_inference_steps=3)
    with pytest.raises(ConfigError, match="strictly decrease"):
        schedule.make_sampler(sigmas=[0.5, 0.7])
    with pytest.raises(ConfigError, match="only 'euler'"):
        schedule.make_sampler("heun", sigmas=[1.0])


def test_euler_sampler_follows_the_straight_path() -> None:
    schedule = FlowMatchingSchedule("wan")
    x_hq, x_lq = _pair(2)
    sampler = schedule.make_sampler(sigmas=[1.0, 0.6, 0.3])
    # A perfect velocity model for the LQ -> HQ flow moves x_lq to x_hq in any number of steps.
    out = sample(sampler, lambda x, t: schedule.velocity(x_hq, x_lq), x_lq)
    torch.testing.assert_close(out, x_hq, rtol=1e-5, atol=1e-5)
    # The scheduler's own step is the Euler step.
    sampler = schedule.make_sampler(sigmas=[1.0, 0.6, 0.3])
    x = schedule.interpolate(x_hq, x_lq, 1.0)
    stepped = sampler.step(schedule.velocity(x_hq, x_lq), sampler.timesteps[0], x, return_dict=False)[0]
    torch.testing.assert_close(stepped, schedule.step(x, schedule.velocity(x_hq, x_lq), sampler.sigmas[0], sampler.sigmas[1]))


def test_training_sigmas_come_from_the_grid() -> None:
    schedule = FlowMatchingSchedule("wan")
    sigmas = schedule.sample_sigmas(256, generator=torch.Generator().manual_seed(0))
    assert sigmas.shape == (256,) and torch.isin(sigmas, schedule.sigmas).all()
    assert torch.equal(sigmas, schedule.sample_sigmas(256, generator=torch.Generator().manual_seed(0)))


def test_wan_unipc_folder_reads_as_flow_matching(tmp_path: Path) -> None:
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    unipc.save_config(tmp_path / "Wan" / "scheduler")
    schedule = FlowMatchingSchedule.from_pretrained(str(tmp_path / "Wan"))
    assert schedule.shift == 5.0 and torch.equal(schedule.sigmas, FlowMatchEulerDiscreteScheduler(shift=5.0).sigmas)
    assert FlowMatchingSchedule("wan").half().sigmas.dtype == torch.float32


def test_ddpm_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a flow-matching schedule; use DDPMSchedule"):
        FlowMatchingSchedule("cogvideox")
    with pytest.raises(ConfigError, match="use_dynamic_shifting"):
        FlowMatchingSchedule("flow", {"use_dynamic_shifting": True})
