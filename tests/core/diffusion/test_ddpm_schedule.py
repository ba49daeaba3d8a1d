"""DDPMSchedule: alphas_cumprod from diffusers itself, forward process and conversions against diffusers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDPMScheduler

from vsr_core.diffusion import PRESETS, DDPMSchedule
from vsr_core.errors import ConfigError


def _cfg(name: str) -> dict:
    return {k: v for k, v in PRESETS[name].items() if k != "_class_name"}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(3, 4, 2, 5, 6, generator=gen), torch.randn(3, 4, 2, 5, 6, generator=gen)


def test_cogvideox_table_is_diffusers_with_zero_terminal_snr() -> None:
    schedule = DDPMSchedule.preset("cogvideox")
    assert schedule.alphas_cumprod.dtype == torch.float64 and schedule.prediction_type == "v_prediction"
    assert torch.equal(schedule.alphas_cumprod, CogVideoXDDIMScheduler(**_cfg("cogvideox")).alphas_cumprod.double())
    assert schedule.alphas_cumprod[-1].item() == 0.0 and schedule.snr(999).item() == 0.0
    snr = schedule.snr(torch.arange(1000))
    assert (snr[1:] < snr[:-1]).all() and schedule.snr(0).item() == pytest.approx(0.99915 / 0.00085, rel=1e-3)


def test_cogvideox_2b_snr_shift_is_diffusers() -> None:
    shifted = DDPMSchedule("cogvideox-2b")
    reference = CogVideoXDPMScheduler(**_cfg("cogvideox-2b")).alphas_cumprod.double()
    assert torch.equal(shifted.alphas_cumprod, reference)
    # Before the zero-SNR rescale, the shift divides the SNR by snr_shift_scale: check it on an unrescaled pair.
    plain = DDPMSchedule("cogvideox", {"rescale_betas_zero_snr": False}).snr(torch.tensor([10, 500]))
    shift3 = DDPMSchedule("cogvideox-2b", {"rescale_betas_zero_snr": False}).snr(torch.tensor([10, 500]))
    torch.testing.assert_close(shift3, plain / 3, rtol=1e-5, atol=0)


def test_sd_presets_are_scaled_linear() -> None:
    sd = DDPMSchedule("sd-x4-upscaler")
    betas = torch.linspace(0.0001**0.5, 0.02**0.5, 1000, dtype=torch.float32) ** 2
    torch.testing.assert_close(sd.alphas_cumprod, torch.cumprod(1 - betas, 0).double())
    assert DDPMSchedule("sd").prediction_type == "epsilon" and DDPMSchedule("sd-v").prediction_type == "v_prediction"


def test_add_noise_and_velocity_equal_diffusers() -> None:
    schedule = DDPMSchedule("cogvideox")
    x0, noise = _batch()
    t = torch.tensor([0, 421, 998])
    ref = DDPMScheduler.from_config(_cfg("sd"))
    ref.alphas_cumprod = schedule.alphas_cumprod.float()  # CogVideoX's table, diffusers' arithmetic
    torch.testing.assert_close(schedule.add_noise(x0, noise, t), ref.add_noise(x0, noise, t))
    torch.testing.assert_close(schedule.velocity(x0, noise, t), ref.get_velocity(x0, noise, t))
    sd = DDPMSchedule("sd")
    sd_ref = DDPMScheduler.from_config(_cfg("sd"))
    torch.testing.assert_close(sd.add_noise(x0, noise, t), sd_ref.add_noise(x0, noise, t))
    torch.testing.assert_close(sd.velocity(x0, noise, t), sd_ref.get_velocity(x0, noise, t))


def test_formulas_and_round_trips() -> None:
    schedule = DDPMSchedule("cogvideox")
    x0, noise = _batch(1)
    t = torch.tensor([5, 300, 900])
    a = schedule.alphas_cumprod[t].float().view(3, 1, 1, 1, 1)
    x_t = schedule.add_noise(x0, noise, t)
    torch.testing.assert_close(x_t, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    v = schedule.velocity(x0, noise, t)
    torch.testing.assert_close(v, a.sqrt() * noise - (1 - a).sqrt() * x0)
    torch.testing.assert_close(schedule.x0_from_v(x_t, v, t), x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(schedule.eps_from_v(x_t, v, t), noise, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(schedule.x0_from_eps(x_t, noise, t), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(schedule.eps_from_x0(x_t, x0, t), noise, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(schedule.v_from_x0(x_t, x0, t), v, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(schedule.to_x0(v, x_t, t), schedule.x0_from_v(x_t, v, t))
    assert torch.equal(schedule.target(x0, noise, t), v)
    eps_schedule = DDPMSchedule("sd")
    x_t = eps_schedule.add_noise(x0, noise, t)
    assert torch.equal(eps_schedule.target(x0, noise, t), noise)
    torch.testing.assert_close(eps_schedule.to_x0(noise, x_t, t), x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(eps_schedule.to_noise(noise, x_t, t), noise)


def test_timestep_broadcasting() -> None:
    schedule = DDPMSchedule("cogvideox")
    x0, noise = _batch()
    torch.testing.assert_close(
        schedule.add_noise(x0, noise, 250), schedule.add_noise(x0, noise, torch.full((3,), 250))
    )
    flat = torch.randn(3, 7)
    assert schedule.add_noise(flat, flat, torch.tensor([1, 2, 3])).shape == (3, 7)
    with pytest.raises(ValueError, match=r"scalar or \[B=3\]"):
        schedule.add_noise(x0, noise, torch.tensor([1, 2]))
    with pytest.raises(ConfigError, match="integers"):
        schedule.snr(torch.tensor([0.5]))


def test_table_stays_float64_and_out_of_state_dicts() -> None:
    schedule = DDPMSchedule("cogvideox").to(torch.bfloat16)
    assert schedule.alphas_cumprod.dtype == torch.float64
    assert schedule.state_dict() == {}
    with torch.device("meta"):
        meta = DDPMSchedule("cogvideox")
    meta.to_empty(device="cpu")
    assert torch.equal(meta.alphas_cumprod, DDPMSchedule("cogvideox").alphas_cumprod)


def test_config_sources(tmp_path: Path) -> None:
    reference = DDPMSchedule("cogvideox-2b").alphas_cumprod
    # A bare dict with snr_shift_scale is a CogVideoX scheduler config.
    assert torch.equal(DDPMSchedule(_cfg("cogvideox-2b")).alphas_cumprod, reference)
    assert DDPMSchedule(_cfg("cogvideox-2b")).scheduler_class is CogVideoXDDIMScheduler
    # A scheduler instance, a scheduler folder, a model folder holding scheduler/, a json file.
    instance = CogVideoXDPMScheduler(**_cfg("cogvideox-2b"))
    assert torch.equal(DDPMSchedule(instance).alphas_cumprod, reference)
    instance.save_config(tmp_path / "model" / "scheduler")
    assert torch.equal(DDPMSchedule(str(tmp_path / "model" / "scheduler")).alphas_cumprod, reference)
    from_model = DDPMSchedule.from_pretrained(str(tmp_path / "model"))
    assert from_model.scheduler_class is CogVideoXDPMScheduler and torch.equal(from_model.alphas_cumprod, reference)
    file = tmp_path / "model" / "scheduler" / "scheduler_config.json"
    assert torch.equal(DDPMSchedule(str(file)).alphas_cumprod, reference)
    assert json.loads(file.read_text())["snr_shift_scale"] == 3.0
    # Overrides win over the config.
    assert DDPMSchedule("cogvideox", {"prediction_type": "epsilon"}).prediction_type == "epsilon"


def test_bad_configs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scheduler preset 'cogvideo'"):
        DDPMSchedule("cogvideo")
    with pytest.raises(ConfigError, match="unknown schedule preset"):
        DDPMSchedule.preset("nope")
    with pytest.raises(ConfigError, match="use FlowMatchingSchedule"):
        DDPMSchedule("wan")
    with pytest.raises(ConfigError, match="'NotAScheduler' is not a diffusers scheduler class"):
        DDPMSchedule({"_class_name": "NotAScheduler"})
    from vsr_core.errors import PretrainedError

    with pytest.raises(PretrainedError, match="has no 'scheduler/' folder"):
        DDPMSchedule.from_pretrained(str(tmp_path))


def test_timestep_helpers() -> None:
    schedule = DDPMSchedule("cogvideox")
    t = schedule.sample_t(64, generator=torch.Generator().manual_seed(0), low=100, high=200)
    assert t.dtype == torch.long and t.min() >= 100 and t.max() < 200
    assert torch.equal(t, schedule.sample_t(64, generator=torch.Generator().manual_seed(0), low=100, high=200))
    # SATB-VR Table 4 rows are trailing grids below the jump-start timestep.
    assert schedule.trailing_timesteps(5, start=399) == [399, 319, 239, 159, 79]
    assert schedule.trailing_timesteps(8, start=399) == [399, 349, 299, 249, 199, 149, 99, 49]
    assert schedule.trailing_timesteps(1, start=199) == [199]
    assert schedule.trailing_timesteps(4) == [999, 749, 499, 249]
    with pytest.raises(ConfigError):
        schedule.sample_t(2, low=10, high=5)
