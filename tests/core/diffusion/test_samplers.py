"""make_sampler: diffusers samplers on the training table, with exactly the given timesteps or diffusers' own grids."""

from __future__ import annotations

import diffusers
import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler

from vsr_core.diffusion import PRESETS, SAMPLER_KINDS, DDPMSchedule, sample
from vsr_core.errors import ConfigError

SATB_5_STEPS = [399, 319, 239, 159, 79]


def _cfg(name: str) -> dict:
    return {k: v for k, v in PRESETS[name].items() if k != "_class_name"}


def _x0() -> torch.Tensor:
    return torch.randn(2, 4, 3, 6, 6, generator=torch.Generator().manual_seed(0))


def _oracle(schedule: DDPMSchedule, x0: torch.Tensor):
    # A perfect v-prediction model for the clean sample x0.
    return lambda x_t, t: schedule.v_from_x0(x_t, x0, t.long())


def _linear_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # An imperfect but deterministic "model" to compare two samplers step by step.
    return 0.3 * x_t + 0.001 * t.float() * x_t.tanh()


@pytest.mark.parametrize("kind", list(SAMPLER_KINDS))
def test_every_kind_uses_the_training_table_and_recovers_x0_with_a_perfect_model(kind: str) -> None:
    schedule = DDPMSchedule("cogvideox-2b")
    sampler = schedule.make_sampler(kind, SATB_5_STEPS)
    assert sampler.timesteps.tolist() == SATB_5_STEPS
    assert isinstance(sampler, SAMPLER_KINDS[kind][0])
    # The whole training table (its zero terminal alpha_bar clamped to 2**-24, as DPM-Solver does).
    table = schedule.alphas_cumprod.clamp_min(2.0**-24)
    torch.testing.assert_close(sampler.alphas_cumprod.double(), table, rtol=2e-6, atol=1e-7)
    x0 = _x0()
    x_start = schedule.add_noise(x0, torch.randn_like(x0), 399)
    out = sample(sampler, _oracle(schedule, x0), x_start, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)


def test_dpm_solver_takes_arbitrary_timesteps() -> None:
    schedule = DDPMSchedule("cogvideox")
    timesteps = [999, 700, 420, 130, 20]
    sampler = schedule.make_sampler("dpmsolver++", timesteps)
    assert sampler.timesteps.tolist() == timesteps and sampler.config.algorithm_type == "dpmsolver++"
    x0 = _x0()
    x_start = schedule.add_noise(x0, torch.randn_like(x0), 999)
    assert torch.isfinite(sample(sampler, _linear_model, x_start)).all()
    torch.testing.assert_close(
        sample(schedule.make_sampler("dpmsolver++", timesteps), _oracle(schedule, x0), x_start),
        x0,
        rtol=1e-4,
        atol=1e-4,
    )
    ddpm = schedule.make_sampler("ddpm", timesteps)
    assert ddpm.timesteps.tolist() == timesteps


@pytest.mark.parametrize("kind", ["ddim", "cogvideox_ddim", "cogvideox_dpm"])
def test_stride_samplers_take_uneven_timesteps_exactly(kind: str) -> None:
    schedule = DDPMSchedule("cogvideox")
    timesteps = [700, 420, 130]
    sampler = schedule.make_sampler(kind, timesteps)
    assert sampler.timesteps.tolist() == timesteps
    x0 = _x0()
    x_start = schedule.add_noise(x0, torch.randn_like(x0), 700)
    out = sample(sampler, _oracle(schedule, x0), x_start, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)
    # set_timesteps gives the stock grid and stride back.
    sampler.set_timesteps(4)
    assert sampler.timesteps.tolist() == [999, 749, 499, 249]


def test_ddim_step_goes_to_the_next_given_timestep() -> None:
    # Deterministic DDIM (eta = 0), Song et al. 2021 Eq. 12, written out for a v-prediction model:
    # x0 = sqrt(a_t) x - sqrt(1 - a_t) v, eps = sqrt(1 - a_t) x + sqrt(a_t) v, x_prev = sqrt(a_p) x0 + sqrt(1 - a_p) eps.
    schedule = DDPMSchedule("cogvideox")
    a = schedule.alphas_cumprod
    timesteps = [700, 420, 130]
    sampler = schedule.make_sampler("ddim", timesteps)
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for t, prev in ((700, 420), (420, 130), (130, None)):
        a_t = a[t]
        a_p = a[prev] if prev is not None else torch.tensor(1.0, dtype=torch.float64)  # set_alpha_to_one
        x0, eps = a_t.sqrt() * x - (1 - a_t).sqrt() * v, (1 - a_t).sqrt() * x + a_t.sqrt() * v
        expected = a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps
        stepped = sampler.step(v.float(), torch.tensor(t), x.float(), return_dict=False)[0]
        torch.testing.assert_close(stepped.double(), expected, rtol=1e-5, atol=1e-5, msg=f"step from {t}")
    # The config is restored after every step (nothing leaks out of the exact-stride trick).
    assert sampler.config.num_train_timesteps == 1000 and sampler.num_inference_steps == 3
    with pytest.raises(ValueError, match="not one of this sampler's timesteps"):
        sampler.step(v.float(), torch.tensor(500), x.float())


def test_sampler_argument_errors() -> None:
    schedule = DDPMSchedule("cogvideox")
    with pytest.raises(ConfigError, match="strictly decrease"):
        schedule.make_sampler("ddpm", [100, 200])
    with pytest.raises(ConfigError, match="strictly decrease"):
        schedule.make_sampler("ddim", [1000, 200])
    with pytest.raises(ConfigError, match="integers"):
        schedule.make_sampler("ddim", [400.5, 200])
    with pytest.raises(ConfigError, match="unknown sampler kind 'euler'"):
        schedule.make_sampler("euler", [10])
    with pytest.raises(ConfigError, match="exactly one of timesteps or num_inference_steps"):
        schedule.make_sampler("ddim")
    with pytest.raises(ConfigError, match="exactly one of timesteps or num_inference_steps"):
        schedule.make_sampler("ddim", [10], num_inference_steps=1)
    with pytest.raises(ConfigError, match="between 1 and 1000"):
        schedule.make_sampler("ddim", num_inference_steps=0)
    # Leading spacing with steps_offset 1 would start at timestep 1000, past the table (diffusers issue 10003).
    with pytest.raises(ConfigError, match="leave \\[0, 1000\\)"):
        DDPMSchedule("sd-x4-upscaler").make_sampler("ddim", num_inference_steps=1000)


def test_matches_stock_cogvideox_samplers_on_their_own_grid() -> None:
    # Our sampler (truncated table as trained betas) against the stock CogVideoX schedulers.
    schedule = DDPMSchedule("cogvideox-2b")
    x_start = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    for kind, cls in (("cogvideox_ddim", CogVideoXDDIMScheduler), ("cogvideox_dpm", CogVideoXDPMScheduler)):
        stock = cls(**_cfg("cogvideox-2b"))
        stock.set_timesteps(10)
        ours = schedule.make_sampler(kind, num_inference_steps=10)
        assert ours.timesteps.tolist() == stock.timesteps.tolist() == schedule.trailing_timesteps(10)
        a = sample(stock, _linear_model, x_start, generator=torch.Generator().manual_seed(3))
        b = sample(ours, _linear_model, x_start, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3, msg=kind)


def test_matches_stock_dpm_solver_with_custom_timesteps() -> None:
    schedule = DDPMSchedule("cogvideox")
    stock = DPMSolverMultistepScheduler.from_config(_cfg("cogvideox"))
    stock.set_timesteps(timesteps=SATB_5_STEPS)
    ours = schedule.make_sampler("dpmsolver++", SATB_5_STEPS)
    x_start = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        sample(ours, _linear_model, x_start), sample(stock, _linear_model, x_start), rtol=1e-4, atol=1e-4
    )


def test_overrides_reach_the_sampler() -> None:
    sampler = DDPMSchedule("cogvideox").make_sampler("dpmsolver++", SATB_5_STEPS, solver_order=1)
    assert sampler.config.solver_order == 1 and sampler.config.prediction_type == "v_prediction"


# ----------------------------------------------------------------- grids of the base models' own schedulers

#: preset -> the kinds whose grids are compared with diffusers' own scheduler of that kind.
BASE_MODELS = {
    "sd-x4-upscaler": ("ddim", "ddpm", "dpmsolver++"),
    "sd2.1-base": ("ddim", "ddpm", "dpmsolver++"),
    "cogvideox": ("cogvideox_ddim", "cogvideox_dpm", "ddim", "ddpm", "dpmsolver++"),
    "cogvideox-2b": ("cogvideox_ddim", "cogvideox_dpm", "dpmsolver++"),
}


def _stock(preset: str, kind: str, steps: int, **overrides):
    """diffusers' own scheduler of ``kind`` for the base model, the way a pipeline swaps schedulers."""
    base_cls = getattr(diffusers, PRESETS[preset]["_class_name"])
    base = base_cls.from_config(_cfg(preset))
    cls, fixed = SAMPLER_KINDS[kind]
    stock = cls.from_config(base.config, **fixed, **overrides)
    stock.set_timesteps(steps)
    return stock


@pytest.mark.parametrize("preset", list(BASE_MODELS))
@pytest.mark.parametrize("steps", [1, 7, 20, 50])
def test_grids_equal_diffusers_set_timesteps(preset: str, steps: int) -> None:
    schedule = DDPMSchedule(preset)
    for kind in BASE_MODELS[preset]:
        ours = schedule.make_sampler(kind, num_inference_steps=steps).timesteps.tolist()
        assert ours == _stock(preset, kind, steps).timesteps.tolist(), (preset, kind, steps)


def test_grids_by_hand() -> None:
    # leading spacing (stride N // n) shifted by steps_offset 1: the SD x4 upscaler's and SD 2.1's DDIM grid.
    leading_50 = list(range(981, 0, -20))
    assert leading_50[0] == 981 and leading_50[-1] == 1 and len(leading_50) == 50
    assert DDPMSchedule("sd-x4-upscaler").make_sampler(num_inference_steps=50).timesteps.tolist() == leading_50
    assert DDPMSchedule("sd2.1-base").make_sampler("ddim", num_inference_steps=50).timesteps.tolist() == leading_50
    # trailing spacing (round(N - i N / n) - 1), CogVideoX: 999, 979, ..., 19 for 50 steps; 999, 666, 332 for 3.
    cog = DDPMSchedule("cogvideox")
    assert cog.make_sampler(num_inference_steps=50).timesteps.tolist() == list(range(999, 0, -20))
    assert cog.make_sampler(num_inference_steps=3).timesteps.tolist() == [999, 666, 332]
    # linspace spacing (round(linspace(0, N - 1, n)) reversed), from an override: 999, 500, 0 for 3 steps.
    assert cog.make_sampler("ddim", num_inference_steps=3, timestep_spacing="linspace").timesteps.tolist() == [
        999,
        500,
        0,
    ]
    # The upscaler's config sets no timestep_spacing: DPM-Solver takes its own default, linspace over n + 1
    # points without the last, round(linspace(0, 999, 4))[::-1][:-1] = 999, 666, 333 (as diffusers' from_config).
    dpm = DDPMSchedule("sd-x4-upscaler").make_sampler("dpmsolver++", num_inference_steps=3).timesteps.tolist()
    assert dpm == [999, 666, 333]
    # CogVideoX's config does set trailing: DPM-Solver keeps it.
    assert cog.make_sampler("dpmsolver++", num_inference_steps=3).timesteps.tolist() == [999, 666, 332]


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_grid_sampling_steps_like_the_stock_ddim(spacing: str) -> None:
    # On its own grid the sampler also *steps* as the base model's pipeline does (diffusers' stride rule).
    schedule = DDPMSchedule("sd-x4-upscaler")
    stock = _stock("sd-x4-upscaler", "ddim", 12, timestep_spacing=spacing)
    ours = schedule.make_sampler("ddim", num_inference_steps=12, timestep_spacing=spacing)
    assert ours.timesteps.tolist() == stock.timesteps.tolist()
    x_start = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        sample(ours, _linear_model, x_start), sample(stock, _linear_model, x_start), rtol=1e-4, atol=1e-4
    )


def test_explicit_timesteps_are_used_as_given_for_every_kind() -> None:
    schedule = DDPMSchedule("sd-x4-upscaler")
    given = [981, 700, 333, 90, 1]
    for kind in SAMPLER_KINDS:
        assert schedule.make_sampler(kind, given).timesteps.tolist() == given, kind


def test_unset_config_keys_stay_class_defaults_through_every_source(tmp_path) -> None:
    # A scheduler instance built from the upscaler's hub config (no timestep_spacing) and the same config
    # as a dict give the same grids: DDIM keeps "leading" (+ steps_offset 1), DPM-Solver takes "linspace".
    instance = DDIMScheduler.from_config(_cfg("sd-x4-upscaler"))
    for schedule in (DDPMSchedule(instance), DDPMSchedule("sd-x4-upscaler")):
        assert schedule.make_sampler("ddim", num_inference_steps=4).timesteps.tolist() == [751, 501, 251, 1]
        assert schedule.make_sampler("dpmsolver++", num_inference_steps=3).timesteps.tolist() == [999, 666, 333]
    # A config that names the spacing keeps it for every kind; an override wins over both.
    trailing = DDPMSchedule("sd-x4-upscaler", {"timestep_spacing": "trailing"})
    assert trailing.make_sampler("dpmsolver++", num_inference_steps=3).timesteps.tolist() == [999, 666, 332]
    leading = trailing.make_sampler("ddim", num_inference_steps=3, timestep_spacing="leading")
    assert leading.timesteps.tolist() == [667, 334, 1]
