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
    torch.testing.assert_close(schedule.model_timestep(schedule.sigmas), schedule.timesteps)


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
    v = schedule.target(x_hq, x_lq, sigma)
    torch.testing.assert_close(v, x_lq - x_hq)  # PS-SR Eq. 7 target
    torch.testing.assert_close(schedule.to_x0(v, x_s, sigma), x_hq)
    torch.testing.assert_close(schedule.to_noise(v, x_s, sigma), x_lq)
    # One Euler step along the straight path lands on the path (Eq. 3).
    torch.testing.assert_close(schedule.step(x_s, v, sigma, 0.25), schedule.interpolate(x_hq, x_lq, 0.25))


def test_explicit_sigmas_and_timesteps_are_never_shifted() -> None:
    schedule = FlowMatchingSchedule("wan", {"shift": 5.0})
    exact = schedule.make_sampler(sigmas=[1.0, 0.75, 0.5, 0.25])
    assert torch.equal(exact.sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    torch.testing.assert_close(exact.timesteps, torch.tensor([1000.0, 750.0, 500.0, 250.0]))
    # issue 12: with shift 5 diffusers turns timestep 699 into sigma 0.921; given explicitly it stays 0.699.
    shifted_by_diffusers = FlowMatchEulerDiscreteScheduler(shift=5.0)
    shifted_by_diffusers.set_timesteps(sigmas=[0.699])
    assert shifted_by_diffusers.sigmas[0].item() == pytest.approx(5 * 0.699 / (1 + 4 * 0.699), abs=1e-6)
    assert shifted_by_diffusers.sigmas[0].item() == pytest.approx(0.921, abs=1e-3)
    from_t = schedule.make_sampler(timesteps=[699, 400, 51])
    assert from_t.timesteps.tolist() == [699.0, 400.0, 51.0]
    torch.testing.assert_close(from_t.sigmas, torch.tensor([0.699, 0.4, 0.051, 0.0]))
    # The schedule's own shift is untouched: num_inference_steps gives diffusers' shifted grid.
    assert schedule.shift == 5.0 and schedule.make_sampler(num_inference_steps=3).config.shift == 5.0


def test_num_inference_steps_is_diffusers_own_shifted_grid() -> None:
    schedule = FlowMatchingSchedule("wan")
    reference = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    reference.set_timesteps(num_inference_steps=7)
    ours = schedule.make_sampler(num_inference_steps=7)
    assert torch.equal(ours.sigmas, reference.sigmas) and torch.equal(ours.timesteps, reference.timesteps)
    # By hand: diffusers spaces t linearly from sigma_max * N down to sigma_min * N, then shifts sigma = t / N.
    plain = torch.linspace(1000.0, schedule.sigmas[-1].item() * 1000, 7) / 1000
    torch.testing.assert_close(ours.sigmas[:-1], schedule.shift_sigma(plain))


def test_sampler_argument_errors() -> None:
    schedule = FlowMatchingSchedule("wan")
    with pytest.raises(ConfigError, match="exactly one of"):
        schedule.make_sampler(sigmas=[1.0], num_inference_steps=3)
    with pytest.raises(ConfigError, match="exactly one of"):
        schedule.make_sampler()
    with pytest.raises(ConfigError, match="strictly decrease"):
        schedule.make_sampler(sigmas=[0.5, 0.7])
    with pytest.raises(ConfigError, match="strictly decrease"):
        schedule.make_sampler(timesteps=[1200, 500])
    with pytest.raises(ConfigError, match="only 'euler'"):
        schedule.make_sampler("heun", sigmas=[1.0])
    assert isinstance(schedule.make_sampler(sigmas=[1.0]), FlowMatchEulerDiscreteScheduler)


def test_euler_sampler_follows_the_straight_path() -> None:
    schedule = FlowMatchingSchedule("wan")
    x_hq, x_lq = _pair(2)
    sampler = schedule.make_sampler(sigmas=[1.0, 0.6, 0.3])
    # A perfect velocity model for the LQ -> HQ flow moves x_lq to x_hq in any number of steps.
    out = sample(sampler, lambda x, t: schedule.target(x_hq, x_lq), x_lq)
    torch.testing.assert_close(out, x_hq, rtol=1e-5, atol=1e-5)
    # The scheduler's own step is the Euler step.
    sampler = schedule.make_sampler(sigmas=[1.0, 0.6, 0.3])
    x = schedule.interpolate(x_hq, x_lq, 1.0)
    v = schedule.target(x_hq, x_lq)
    stepped = sampler.step(v, sampler.timesteps[0], x, return_dict=False)[0]
    torch.testing.assert_close(stepped, schedule.step(x, v, sampler.sigmas[0], sampler.sigmas[1]))


def test_training_sigmas_come_from_the_grid() -> None:
    schedule = FlowMatchingSchedule("wan")
    sigmas = schedule.sample_t(256, generator=torch.Generator().manual_seed(0))
    assert sigmas.shape == (256,) and torch.isin(sigmas, schedule.sigmas).all()
    assert torch.equal(sigmas, schedule.sample_t(256, generator=torch.Generator().manual_seed(0)))
    # The default draw is diffusers' training-script one: a uniform index into the whole grid.
    idx = torch.randint(0, 1000, (256,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(sigmas, schedule.sigmas[idx])


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
