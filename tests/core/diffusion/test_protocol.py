"""The NoiseSchedule protocol, by value, on both schedule families (DDPM with v / eps / x0 prediction, flow matching)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import (
    CogVideoXDDIMScheduler,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    SchedulerMixin,
)

from vsr_core.diffusion import PRESETS, DDPMSchedule, FlowMatchingSchedule, NoiseSchedule
from vsr_core.errors import ConfigError

#: name -> (class, preset, overrides)
SCHEDULES = {
    "ddpm-v": (DDPMSchedule, "cogvideox", {}),
    "ddpm-eps": (DDPMSchedule, "sd", {}),
    "ddpm-x0": (DDPMSchedule, "sd", {"prediction_type": "sample"}),
    "flow": (FlowMatchingSchedule, "wan", {}),
}


def _make(name: str) -> NoiseSchedule:
    cls, preset, overrides = SCHEDULES[name]
    return cls.preset(preset, **overrides)


def _diffusers_reference(name: str) -> SchedulerMixin:
    cls, preset, overrides = SCHEDULES[name]
    config = {**{k: v for k, v in PRESETS[preset].items() if k != "_class_name"}, **overrides}
    if cls is FlowMatchingSchedule:
        return FlowMatchEulerDiscreteScheduler.from_config(config)
    return DDPMScheduler.from_config(config)


def _times(schedule: NoiseSchedule) -> torch.Tensor:
    # Away from the singular ends (a = 0 at the zero-terminal-SNR step, sigma = 0).
    if isinstance(schedule, DDPMSchedule):
        return torch.tensor([3, 250, 700, 990])
    return torch.tensor([0.02, 0.25, 0.7, 1.0])


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 2, 5, 6, generator=gen), torch.randn(4, 3, 2, 5, 6, generator=gen)


def _column(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1, 1)


@pytest.fixture(params=list(SCHEDULES))
def name(request) -> str:
    return request.param


def test_both_families_share_the_protocol(name: str) -> None:
    schedule = _make(name)
    assert isinstance(schedule, NoiseSchedule)
    # preset / from_pretrained are implemented once, on the base class.
    assert type(schedule).preset.__func__ is NoiseSchedule.preset.__func__
    assert type(schedule).from_pretrained.__func__ is NoiseSchedule.from_pretrained.__func__
    assert schedule.prediction_type == {"ddpm-v": "v_prediction", "ddpm-eps": "epsilon", "ddpm-x0": "sample"}.get(
        name, "flow"
    )
    with pytest.raises(ConfigError, match="unknown schedule preset 'nope'"):
        type(schedule).preset("nope")


def test_from_pretrained_reads_the_scheduler_folder(name: str, tmp_path: Path) -> None:
    reference = _diffusers_reference(name)
    reference.save_config(tmp_path / "model" / "scheduler")
    loaded = type(_make(name)).from_pretrained(str(tmp_path / "model"))
    x0, noise = _data()
    t = _times(loaded)
    torch.testing.assert_close(loaded.add_noise(x0, noise, t), _make(name).add_noise(x0, noise, t))


def test_add_noise_equals_diffusers(name: str) -> None:
    schedule, reference = _make(name), _diffusers_reference(name)
    x0, noise = _data()
    t = _times(schedule)
    if isinstance(schedule, DDPMSchedule):
        if name == "ddpm-v":  # CogVideoX's table with diffusers' own arithmetic
            reference = CogVideoXDDIMScheduler.from_config(
                {k: v for k, v in PRESETS["cogvideox"].items() if k != "_class_name"}
            )
        expected = reference.add_noise(x0, noise, t)
    else:  # diffusers noises at timesteps of its training grid: take sigmas from that grid
        idx = torch.tensor([0, 300, 750, 999])
        t = schedule.sigmas[idx]
        expected = reference.scale_noise(x0, reference.timesteps[idx], noise)
    torch.testing.assert_close(schedule.add_noise(x0, noise, t), expected)


def test_target_equals_diffusers(name: str) -> None:
    schedule = _make(name)
    x0, noise = _data(1)
    t = _times(schedule)
    if name == "ddpm-v":
        reference = DDPMScheduler.from_config({k: v for k, v in PRESETS["sd"].items() if k != "_class_name"})
        reference.alphas_cumprod = schedule.alphas_cumprod.float()
        expected = reference.get_velocity(x0, noise, t)
        torch.testing.assert_close(schedule.velocity(x0, noise, t), expected)
    elif name == "ddpm-eps":
        expected = noise
    elif name == "ddpm-x0":
        expected = x0
    else:
        expected = noise - x0  # the straight-path velocity FlowMatchEulerDiscreteScheduler.step integrates
    torch.testing.assert_close(schedule.target(x0, noise, t), expected)


def test_exact_target_round_trips_to_x0_and_noise(name: str) -> None:
    schedule = _make(name)
    x0, noise = _data(2)
    t = _times(schedule)
    x_t = schedule.add_noise(x0, noise, t)
    out = schedule.target(x0, noise, t)
    torch.testing.assert_close(schedule.to_x0(out, x_t, t), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(schedule.to_noise(out, x_t, t), noise, rtol=1e-4, atol=1e-4)


def test_alpha_sigma_snr_and_model_timestep_by_value(name: str) -> None:
    schedule = _make(name)
    t = _times(schedule)
    alpha, sigma = schedule.alpha_sigma(t)
    if isinstance(schedule, DDPMSchedule):
        a = _diffusers_reference(name).alphas_cumprod.double()[t]
        if name == "ddpm-v":
            a = schedule.alphas_cumprod[t]
        torch.testing.assert_close(alpha, a.sqrt(), rtol=1e-6, atol=0)
        torch.testing.assert_close(sigma, (1 - a).sqrt(), rtol=1e-6, atol=0)
        torch.testing.assert_close(schedule.snr(t), a / (1 - a), rtol=1e-6, atol=0)
        model_t = schedule.model_timestep(t)
        assert model_t.dtype == torch.long and model_t.tolist() == t.tolist()
    else:
        torch.testing.assert_close(alpha, torch.tensor([0.98, 0.75, 0.3, 0.0]))
        torch.testing.assert_close(sigma, t)
        # ((1 - s) / s)^2: 49^2, 3^2, (3/7)^2, 0
        torch.testing.assert_close(
            schedule.snr(t), torch.tensor([2401.0, 9.0, 9 / 49, 0.0], dtype=torch.float64), rtol=1e-5, atol=1e-9
        )
        torch.testing.assert_close(schedule.model_timestep(t), torch.tensor([20.0, 250.0, 700.0, 1000.0]))
        assert schedule.snr(0.5).item() == pytest.approx(1.0)
        assert schedule.model_timestep(0.699).item() == pytest.approx(699.0)


def test_sample_t_stays_in_range_and_is_reproducible(name: str) -> None:
    schedule = _make(name)
    draw = schedule.sample_t(4000, generator=torch.Generator().manual_seed(0), low=100, high=400)
    assert draw.shape == (4000,)
    assert torch.equal(draw, schedule.sample_t(4000, generator=torch.Generator().manual_seed(0), low=100, high=400))
    assert not torch.equal(
        draw, schedule.sample_t(4000, generator=torch.Generator().manual_seed(1), low=100, high=400)
    )
    model_t = schedule.model_timestep(draw)
    assert model_t.min() >= 100 and model_t.max() < 400
    if isinstance(schedule, DDPMSchedule):
        assert draw.dtype == torch.long
        assert set(draw.tolist()) == set(range(100, 400))  # uniform over the whole range (4000 draws of 300)
    else:
        assert draw.dtype == torch.float32 and torch.isin(draw, schedule.sigmas).all()
        in_range = schedule.sigmas[(schedule.timesteps >= 100) & (schedule.timesteps < 400)]
        assert set(draw.tolist()) <= set(in_range.tolist())
    full = schedule.sample_t(4000, generator=torch.Generator().manual_seed(2))
    assert schedule.model_timestep(full).max() >= 990 and schedule.model_timestep(full).min() <= 10
    with pytest.raises(ConfigError):
        schedule.sample_t(2, low=500, high=400)


def test_make_sampler_natural_default_and_exact_timesteps(name: str) -> None:
    schedule = _make(name)
    natural = schedule.make_sampler(num_inference_steps=4)
    expected_class = {
        "ddpm-v": CogVideoXDDIMScheduler,  # CogVideoX's own scheduler class
        "flow": FlowMatchEulerDiscreteScheduler,
    }.get(name, DDPMScheduler)  # the "sd" preset is written as a DDPMScheduler config
    assert isinstance(natural, expected_class) and len(natural.timesteps) == 4
    explicit = schedule.make_sampler(timesteps=[699, 400, 51])
    assert [float(t) for t in explicit.timesteps.tolist()] == [699.0, 400.0, 51.0]


def test_precision_casts_keep_the_tables(name: str) -> None:
    schedule = _make(name)
    reference = _make(name)
    schedule.to(torch.bfloat16)
    x0, noise = _data(3)
    t = _times(schedule)
    torch.testing.assert_close(schedule.add_noise(x0, noise, t), reference.add_noise(x0, noise, t), rtol=0, atol=0)
    assert schedule.state_dict() == {}


def test_time_types_are_checked() -> None:
    with pytest.raises(ConfigError, match="integers"):
        DDPMSchedule("cogvideox").add_noise(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.5, 0.2]))
    with pytest.raises(ConfigError, match="float sigmas"):
        FlowMatchingSchedule("wan").add_noise(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([500, 200]))
    with pytest.raises(ConfigError, match="no training sigma"):
        FlowMatchingSchedule("wan").sample_t(2, low=1001)
