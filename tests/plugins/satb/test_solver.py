"""CogVideoX DPM-Solver++(2M) with given step noise equals diffusers' step with the noise it draws itself."""

from __future__ import annotations

import torch

from satb.solver import cogvideox_dpm_step
from vsr_core.diffusion import DDPMSchedule


def test_given_noise_reproduces_diffusers_cogvideox_dpm_step_by_step() -> None:
    timesteps = [399, 319, 239, 159, 79]  # Table 4, 5 steps: first order, 2M three times, last to x0
    solver = DDPMSchedule("cogvideox").make_sampler("cogvideox_dpm", timesteps=timesteps)
    g = torch.Generator().manual_seed(0)
    shape = (2, 3, 4, 6, 6)
    ours = theirs = torch.randn(shape, generator=g)
    ours_x0 = theirs_x0 = None
    for i, t in enumerate(timesteps):
        v = torch.randn(shape, generator=g)
        back = timesteps[i - 1] if i else None
        following = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        seed = 100 + i
        theirs, theirs_x0 = solver.step(
            v,
            theirs_x0,
            solver.timesteps[i],
            back,
            theirs,
            generator=torch.Generator().manual_seed(seed),
            return_dict=False,
        )
        # diffusers draws once, and on a second-order step once more and uses that second draw.
        draws = torch.Generator().manual_seed(seed)
        noise = torch.randn(shape, generator=draws)
        if ours_x0 is not None and following >= 0:
            noise = torch.randn(shape, generator=draws)
        other = cogvideox_dpm_step(solver, v, ours_x0, t, back, following, ours, torch.zeros(shape))
        ours, ours_x0 = cogvideox_dpm_step(solver, v, ours_x0, t, back, following, ours, noise)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours_x0, theirs_x0, rtol=1e-5, atol=1e-6)
        if following >= 0:  # the noise enters every step but the last (which lands on x0)
            assert (other[0] - ours).abs().max() > 1e-3
        else:
            torch.testing.assert_close(other[0], ours)
