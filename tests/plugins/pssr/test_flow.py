"""Paired flow matching (Eq. 2-4, 7) and the speculative timesteps, by value."""

from __future__ import annotations

import pytest
import torch

from pssr.flow import draft_timesteps, landing_velocity, lq_endpoint, max_steps, paired_state, velocity_target
from vsr_core.diffusion import FlowMatchingSchedule
from vsr_core.errors import ConfigError


@pytest.fixture
def schedule() -> FlowMatchingSchedule:
    return FlowMatchingSchedule("flow", {"shift": 5.0})


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 2, 4, 4, generator=g, dtype=torch.float64), torch.randn(
        2, 3, 2, 4, 4, generator=g, dtype=torch.float64
    )


def test_paper_reading_is_eq4_and_eq7(schedule, pair):
    z_hq, z_lq = pair
    sigma = torch.tensor([0.25, 0.6], dtype=torch.float64)
    z_t = paired_state(schedule, z_hq, z_lq, sigma, sigma_lq=1.0)
    by_hand = torch.stack([(1 - s) * z_hq[i] + s * z_lq[i] for i, s in enumerate(sigma.tolist())])  # Eq. 4
    torch.testing.assert_close(z_t, by_hand)
    torch.testing.assert_close(
        velocity_target(schedule, z_hq, z_lq, 1.0), z_lq - z_hq
    )  # Eq. 7: z_L - z_H, not z_H - z_L


@pytest.mark.parametrize("sigma_lq", [1.0, 0.699])
def test_the_line_reaches_z_lq_at_sigma_lq_and_x0_of_the_target_is_z_hq(schedule, pair, sigma_lq):
    z_hq, z_lq = pair
    ones = torch.ones(2, dtype=torch.float64)
    torch.testing.assert_close(paired_state(schedule, z_hq, z_lq, ones * sigma_lq, sigma_lq), z_lq)
    torch.testing.assert_close(paired_state(schedule, z_hq, z_lq, ones * 0, sigma_lq), z_hq)
    target = velocity_target(schedule, z_hq, z_lq, sigma_lq)
    torch.testing.assert_close(target, (z_lq - z_hq) / sigma_lq)
    for sigma in (sigma_lq, 0.5, 0.399):
        z_t = paired_state(schedule, z_hq, z_lq, ones * sigma, sigma_lq)
        # the x0 conversion is consistent with the L2 target at every point of the line (Eq. 5 / 6)
        torch.testing.assert_close(schedule.to_x0(target, z_t, sigma), z_hq)
        torch.testing.assert_close(landing_velocity(z_t, z_hq, sigma), target)


def test_release_reading_extrapolates_to_sigma_one(pair):
    z_hq, z_lq = pair
    e = lq_endpoint(z_hq, z_lq, 0.7)
    torch.testing.assert_close(0.3 * z_hq + 0.7 * e, z_lq)  # the line through z_H and z_L, at sigma 1
    assert lq_endpoint(z_hq, z_lq, 1.0) is z_lq


def test_euler_step_is_eq3(schedule, pair):
    z_hq, z_lq = pair
    v = velocity_target(schedule, z_hq, z_lq, 0.699)
    z = paired_state(schedule, z_hq, z_lq, torch.full((2,), 0.699, dtype=torch.float64), 0.699)
    step = schedule.step(z, v, 0.699, 0.599)  # python floats become float32 sigmas: compare at float32 precision
    torch.testing.assert_close(
        step, z - (0.699 - 0.599) * v, rtol=1e-6, atol=1e-6
    )  # z_{t-1} = z_t - (s_t - s_{t-1}) phi
    assert not torch.allclose(step, z + (0.699 - 0.599) * v, atol=1e-3)
    # with the true velocity one step lands on the line at the next sigma
    on_line = paired_state(schedule, z_hq, z_lq, torch.full((2,), 0.599, dtype=torch.float64), 0.699)
    torch.testing.assert_close(step, on_line, rtol=1e-6, atol=1e-6)


def test_draft_timesteps_follow_the_release_and_the_rule():
    assert draft_timesteps(699, 399, 4) == [599, 499, 399]  # the release's list
    assert draft_timesteps(699, 399, 1) == []
    assert draft_timesteps(699, 399, 2) == [399]
    assert draft_timesteps(699, 399, 8) == [656, 613, 570, 528, 485, 442, 399]  # round(699 - k * 300 / 7)
    fifty = draft_timesteps(699, 399, 50)
    assert (
        len(fifty) == 49
        and len(set(fifty)) == 49
        and fifty[-1] == 399
        and all(a > b for a, b in zip(fifty, fifty[1:]))
    )
    assert draft_timesteps(1000, 400, 4) == [800, 600, 400]  # the paper's sigma_T = 1 reading
    assert max_steps(699, 399) == 301 and len(draft_timesteps(699, 399, 301)) == 300


@pytest.mark.parametrize("steps", [0, -1, 302])
def test_step_counts_outside_the_schedule_are_config_errors(steps):
    with pytest.raises(ConfigError, match=r"num_inference_steps must be in \[1, 301\]"):
        draft_timesteps(699, 399, steps)
