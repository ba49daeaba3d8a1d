"""ILT (Eq. 2) and noise rescheduling by value, the release's rules, and the fusion through the long-video engine.

Which rule each test checks:

* ``paper`` weights ``alpha_j = 1 - j/(P-1)`` and ``release`` weights ``0.2 + 0.6 (1 - j/(P-1))``: test_weights_*;
* Eq. 2 on latents: test_fuse_overlap_is_equation_2;
* noise rescheduling (the paper's "reuse and reorder"; the release's rearrangement of the whole video's noise, which
  keeps shared frames' noise and gives new frames a permutation of the frames ``L`` before them): test_rescheduled_*;
* the release's after-the-fact fusion through the engine hook (``ILTFusion``): test_fusion_*.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffvsr.ilt import (
    ILTFusion,
    final_window_weights,
    fuse_overlap,
    ilt_weights,
    release_video_noise,
    reschedule_noise,
)
from diffvsr.options import ILTOptions
from vsr_core.errors import ConfigError
from vsr_core.inference import EngineOptions, RestoreEngine, Window, plan_windows


def test_weights_of_the_paper_and_the_release():
    assert ilt_weights(4, "paper").tolist() == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    assert ilt_weights(4, "release").tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert ilt_weights(2, "paper").tolist() == [1.0, 0.0]
    assert ilt_weights(1, "paper").tolist() == [0.5]
    with pytest.raises(ConfigError):
        ilt_weights(0)


def test_fuse_overlap_is_equation_2():
    earlier = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(2, 3, 4, 2, 2)  # F_i[s + j] = j
    later = torch.full((2, 3, 4, 2, 2), 10.0)  # F_{i+1}[j] = 10
    fused = fuse_overlap(earlier, later, ilt_weights(4, "paper"))
    # alpha_j * j + (1 - alpha_j) * 10 with alpha = [1, 2/3, 1/3, 0]
    expected = [0.0, 2 / 3 * 1 + 1 / 3 * 10, 1 / 3 * 2 + 2 / 3 * 10, 10.0]
    assert fused[0, 0, :, 0, 0].tolist() == pytest.approx(expected)


def _release_rearrangement(noise: np.ndarray, window: int, stride: int, orders: list[list[int]]) -> np.ndarray:
    """The release pipeline's loop, written out with numpy (``noise_strategy == "rearrange"``)."""
    out = noise.copy()
    for step, frame in enumerate(range(window, noise.shape[2], stride)):
        index = list(range(frame - window, frame + stride - window))
        shuffled = [index[k] for k in orders[step]]
        out[:, :, frame : frame + stride] = out[:, :, shuffled]
    return out


def test_rescheduled_noise_equals_the_release_rearrangement_window_by_window():
    length, overlap, frames = 8, 4, 20
    stride = length - overlap
    noise = torch.randn(1, 4, frames, 3, 3, generator=torch.Generator().manual_seed(0))
    # The permutations reschedule_noise draws, reproduced from the same seeded generator.
    probe = torch.Generator().manual_seed(5)
    orders = [torch.randperm(stride, generator=probe).tolist() for _ in range(3)]
    video = torch.from_numpy(_release_rearrangement(noise.numpy(), length, stride, orders))
    torch.testing.assert_close(release_video_noise(noise, length, stride, [torch.tensor(o) for o in orders]), video)
    generator = torch.Generator().manual_seed(5)
    window = noise[:, :, :length]
    for start in range(stride, frames - length + 1, stride):
        window = reschedule_noise(window, overlap, generator)
        torch.testing.assert_close(window, video[:, :, start : start + length])


def test_rescheduled_noise_shares_the_overlap_and_reorders_the_frames_that_left():
    previous = torch.arange(8.0).view(1, 1, 8, 1, 1)
    nxt = reschedule_noise(previous, 3, torch.Generator().manual_seed(1))
    assert nxt[0, 0, :3, 0, 0].tolist() == [5.0, 6.0, 7.0]  # the overlap keeps its noise
    assert sorted(nxt[0, 0, 3:, 0, 0].tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0]  # the frames that left, reordered


def test_final_weights_take_each_frame_from_the_last_window_covering_it():
    assert final_window_weights(Window(0, 0, 8, 0, 4)).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert final_window_weights(Window(1, 4, 8, 4, 0)).tolist() == [1] * 8


def test_window_shorter_than_twice_the_overlap_is_refused():
    with pytest.raises(ConfigError, match="shorter than twice the overlap"):
        ILTOptions(window=8, overlap=5)
    with pytest.raises(ConfigError, match="shorter than twice the overlap 5"):
        ILTFusion().start(plan_windows(30, 8, 5))


class _LatentEcho:
    """A stand-in method whose latents are its output: ``finish_window`` returns them, the solver does nothing."""

    scale = 1
    temporal_window = 8
    frames_rule = (1, 0)

    def __init__(self) -> None:
        self.states: list = []

    def draw_lr_noise(self, lq, generator=None):
        return torch.randn(lq.shape, generator=generator)

    def prepare_window(self, lq, prompt=None, *, noise=None, lr_noise=None, generator=None, **_):
        class State:
            pass

        state = State()
        state.latent_noise = torch.randn(lq.shape, generator=generator) if noise is None else noise
        state.lr_noise = torch.randn(lq.shape, generator=generator) if lr_noise is None else lr_noise
        state.latents = state.latent_noise * 0.1 + lq  # "denoised" content of this window
        state.num_steps = 2
        self.states.append(state)
        return state

    def denoise_step(self, state, i, latents):
        return latents

    def finish_window(self, state, latents):
        return latents

    def restore(self, lq, prompt=None, *, generator=None):  # the engine reads its signature; ILTFusion never calls it
        raise AssertionError("the fusion restores windows through prepare/denoise/finish")


def test_fusion_applies_equation_2_after_the_solver_and_reuses_the_noise():
    method = _LatentEcho()
    fusion = ILTFusion(weights_rule="release")
    plan = plan_windows(12, 8, 4)
    fusion.start(plan)
    lq = torch.rand(1, 3, 12, 2, 2) * 2 - 1
    generator = torch.Generator().manual_seed(0)
    first = fusion.restore_window(method, lq[:, :, :8], plan.windows[0], plan, None, generator=generator)
    second = fusion.restore_window(method, lq[:, :, 4:], plan.windows[1], plan, None, generator=generator)
    s0, s1 = method.states
    # Noise: the overlap keeps window 0's noise (latents and LR conditioning), the new frames reuse its first four.
    torch.testing.assert_close(s1.latent_noise[:, :, :4], s0.latent_noise[:, :, 4:])
    torch.testing.assert_close(s1.lr_noise[:, :, :4], s0.lr_noise[:, :, 4:])
    assert torch.equal(s1.latent_noise[:, :, 4:].sort(dim=2).values, s0.latent_noise[:, :, :4].sort(dim=2).values)
    # Latents: Eq. 2 with the release's weights on the overlap, window 1's own latents after it.
    alpha = torch.tensor([0.8, 0.6, 0.4, 0.2]).view(1, 1, 4, 1, 1)
    torch.testing.assert_close(second[:, :, :4], alpha * s0.latents[:, :, 4:] + (1 - alpha) * s1.latents[:, :, :4])
    torch.testing.assert_close(second[:, :, 4:], s1.latents[:, :, 4:])
    torch.testing.assert_close(first, s0.latents)
    assert fusion.weights(plan.windows[0], plan).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_fusion_with_independent_noise_draws_fresh_noise():
    method = _LatentEcho()
    fusion = ILTFusion(noise="independent")
    plan = plan_windows(12, 8, 4)
    fusion.start(plan)
    lq = torch.zeros(1, 3, 12, 2, 2)
    for window in plan.windows:
        fusion.restore_window(method, lq[:, :, window.start : window.end], window, plan, None)
    s0, s1 = method.states
    assert not torch.allclose(s1.latent_noise[:, :, :4], s0.latent_noise[:, :, 4:])


def test_fusion_keeps_state_per_tile_through_the_engine():
    method = _LatentEcho()
    calls = []
    fusion = ILTFusion()
    original = fusion.restore_window

    def spy(m, lq, window, plan, prompt, **sampling):
        calls.append((window.index, tuple(lq.shape)))
        return original(m, lq, window, plan, prompt, **sampling)

    fusion.restore_window = spy
    engine = RestoreEngine(method, EngineOptions(window=8, overlap=4, tile=4, tile_overlap=0), fusion=fusion)
    frames = [torch.full((8, 8, 3), 100 + 10 * i, dtype=torch.uint8) for i in range(12)]
    out = list(engine.restore_frames(frames, 12))
    assert len(out) == 12
    assert [c[0] for c in calls] == [0, 0, 0, 0, 1, 1, 1, 1]  # four tiles per window, each with its own history
    assert len(method.states) == 8
    for tile in range(4):
        torch.testing.assert_close(
            method.states[4 + tile].latent_noise[:, :, :4], method.states[tile].latent_noise[:, :, 4:]
        )
