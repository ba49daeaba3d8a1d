"""ILT at every DDIM step through the engine's latent window protocol (the default long-video path), by value.

Which rule each test checks:

* the paper's Eq. 2 weights as engine weights (a weighted mean of two windows is ``alpha_j a + (1 - alpha_j) b``),
  and the release's weights under ``ilt.weights: release``: test_overlap_weights_*;
* noise rescheduling (the first window's noise reused and reordered) equal to the release's whole-video
  rearrangement loop: test_rescheduled_sources_*;
* the LR noise as a fixed function of the shared latent noise: test_lr_noise_*;
* end to end on the tiny model: ``RestoreEngine`` (what ``vsr restore --ckpt`` runs) equals a lockstep loop written
  here from Eq. 2 (fusion before every step and before decoding, rescheduled shared noise), and ``vsr restore`` of a
  long clip takes the latent path by default and the release's after-the-fact blend with ``--fusion pixel``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffvsr import DiffVSR
from diffvsr.ilt import release_video_noise
from diffvsr.ilt_latent import ZERO_WEIGHT, ILTLatentFusion, lr_noise_like, overlap_weights, rescheduled_sources
from vsr_core.cli import main
from vsr_core.errors import ConfigError
from vsr_core.export import export_method
from vsr_core.inference import EngineOptions, RestoreEngine, TimelineNoise, make_generator


def test_overlap_weights_are_equation_2_for_the_paper():
    # P = 4: alpha = 1 - j/3 = [1, 2/3, 1/3, 0] is the earlier window's weight, 1 - alpha the later one's.
    w = overlap_weights(8, before=4, after=4, rule="paper")
    expected = torch.tensor([ZERO_WEIGHT, 1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3, ZERO_WEIGHT])
    torch.testing.assert_close(w, expected)
    earlier, later = overlap_weights(8, 0, 4), overlap_weights(8, 4, 0)
    a, b = torch.tensor(3.0), torch.tensor(-5.0)  # one latent value in each window
    fused = (earlier[4:] * a + later[:4] * b) / (earlier[4:] + later[:4])
    torch.testing.assert_close(fused, torch.tensor([3.0, 3 * 2 / 3 - 5 / 3, 1 - 5 * 2 / 3, -5.0]))


def test_overlap_weights_of_the_release():
    alpha = torch.tensor([0.8, 0.6, 0.4, 0.2])  # 0.2 + 0.6 (1 - j/3)
    torch.testing.assert_close(overlap_weights(8, 0, 4, "release")[4:], alpha)
    torch.testing.assert_close(overlap_weights(8, 4, 0, "release")[:4], 1 - alpha)
    torch.testing.assert_close(overlap_weights(8, 0, 0, "release"), torch.ones(8))


def test_rescheduled_sources_equal_the_release_rearrangement():
    generator = torch.Generator().manual_seed(3)
    orders = [torch.randperm(4, generator=generator) for _ in range(4)]
    frames = torch.arange(20, dtype=torch.float32).view(1, 1, 20, 1, 1)  # each frame's noise is its own index
    release = release_video_noise(frames, window=8, stride=4, orders=orders).flatten().long().tolist()
    assert rescheduled_sources(20, 8, 4, orders) == release
    # frames 8..11 take frames 0..3 in orders[0]'s order (by hand)
    assert rescheduled_sources(12, 8, 4, orders)[8:] == orders[0].tolist()


def test_lr_noise_is_a_fixed_standard_normal_function_of_the_latent_noise():
    noise = torch.randn(2, 4, 5, 40, 50, generator=torch.Generator().manual_seed(0))
    lr = lr_noise_like(noise)
    assert lr.shape == (2, 3, 5, 40, 50)
    # the same latent values at a pixel give the same LR noise wherever they sit (another window, another tile)
    torch.testing.assert_close(lr_noise_like(noise[:, :, 2:, 10:30, 5:25]), lr[:, :, 2:, 10:30, 5:25], rtol=0, atol=0)
    # every channel counts
    changed = noise.clone()
    changed[:, 3] += 1e-3
    assert (lr_noise_like(changed) != lr).float().mean() > 0.99
    # standard normal, independent of the latent noise and across its own channels (60000 values)
    assert abs(lr.mean()) < 0.02 and abs(lr.std() - 1) < 0.02
    flat = lr.transpose(0, 1).reshape(3, -1)
    corr = torch.corrcoef(torch.cat([flat, noise.transpose(0, 1).reshape(4, -1)]))
    assert (corr - torch.eye(7)).abs().max() < 0.03


def test_window_shorter_than_twice_the_overlap_is_refused():
    method = DiffVSR(sampling={"num_inference_steps": 1})
    engine = RestoreEngine(method, EngineOptions(window=8, overlap=5, seed=0))
    with pytest.raises(ConfigError, match="shorter than twice the overlap 5"):
        engine.restore_tensor(torch.zeros(3, 20, 8, 8))


@pytest.fixture(scope="module")
def tiny_method():
    return DiffVSR(preset="tiny", vae="pixel-unshuffle", sampling={"num_inference_steps": 2}).eval()


def _lockstep_reference(method: DiffVSR, video: torch.Tensor, seed: int, alpha: torch.Tensor) -> torch.Tensor:
    """Two windows (frames 0-7 and 4-11) advanced together, Eq. 2 applied before each step and before decoding."""
    c, (h, w) = method.codec.latent_channels, video.shape[-2:]
    timeline = TimelineNoise(seed, 1, c)
    noise0 = timeline.slice(0, range(8), range(h), range(w))
    noise1 = timeline.slice(0, range(4, 12), range(h), range(w))  # the engine's slice of window 1
    order = torch.randperm(4, generator=make_generator(seed, "cpu"))  # the first draw of the per-file generator
    rescheduled = torch.cat([noise0[:, :, 4:], noise0[:, :, order]], dim=2)  # frames 8..11 <- frames order of 0..3
    lq = video.unsqueeze(0)
    s0 = method.prepare_window(lq[:, :, 0:8], noise=noise0, lr_noise=lr_noise_like(noise0))
    s1 = method.prepare_window(lq[:, :, 4:12], noise=rescheduled, lr_noise=lr_noise_like(noise1))
    a = alpha.view(1, 1, 4, 1, 1)

    def fuse(z0, z1):
        shared = a * z0[:, :, 4:] + (1 - a) * z1[:, :, :4]  # Eq. 2
        return torch.cat([z0[:, :, :4], shared], 2), torch.cat([shared, z1[:, :, 4:]], 2)

    z0, z1 = fuse(s0.latents, s1.latents)
    for i in range(s0.num_steps):
        z0, z1 = fuse(method.denoise_step(s0, i, z0), method.denoise_step(s1, i, z1))
    v0, v1 = method.finish_window(s0, z0)[0], method.finish_window(s1, z1)[0]
    return torch.cat([v0[:, :4], v1], dim=1)  # each frame from the last window covering it (final_window_weights)


def test_engine_fuses_every_step_with_rescheduled_noise(tiny_method):
    video = torch.rand(3, 12, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected = _lockstep_reference(tiny_method, video, seed=7, alpha=torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]))
    engine = RestoreEngine(tiny_method, EngineOptions(seed=7))
    out = engine.restore_tensor(video)
    assert engine.latent and isinstance(engine.runner.fusion, ILTLatentFusion)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # the fusion matters: windows run apart (the release's blend after the solver) give other frames
    pixel = RestoreEngine(tiny_method, EngineOptions(seed=7, fusion="pixel")).restore_tensor(video)
    assert (pixel[:, 4:8] - out[:, 4:8]).abs().max() > 1e-3


def test_rescheduled_noise_is_kept_per_tile(tiny_method, monkeypatch):
    """Four 4x4 tiles of an 8x8 frame: window 1's noise of each tile is window 0's, shared frames kept, rest reordered."""
    seen = []
    original = DiffVSR.prepare_window

    def spy(self, lq, prompt=None, **kwargs):
        state = original(self, lq, prompt, **kwargs)
        seen.append(state.latent_noise)
        return state

    monkeypatch.setattr(DiffVSR, "prepare_window", spy)
    video = torch.rand(3, 12, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1
    engine = RestoreEngine(tiny_method, EngineOptions(seed=5, tile=4, tile_overlap=0))
    assert engine.restore_tensor(video).shape == (3, 12, 32, 32) and len(engine.last_grid.tiles) == 4
    order = torch.randperm(4, generator=make_generator(5, "cpu"))
    timeline = TimelineNoise(5, 1, tiny_method.codec.latent_channels)
    for k, (y, x) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        first = timeline.slice(0, range(8), range(y, y + 4), range(x, x + 4))
        torch.testing.assert_close(seen[k], first, rtol=0, atol=0)
        torch.testing.assert_close(seen[4 + k], torch.cat([first[:, :, 4:], first[:, :, order]], 2), rtol=0, atol=0)


def test_engine_with_release_weights(tiny_method):
    video = torch.rand(3, 12, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    method = DiffVSR(
        preset="tiny", vae="pixel-unshuffle", sampling={"num_inference_steps": 2}, ilt={"weights": "release"}
    )
    method.load_state_dict(tiny_method.state_dict())
    expected = _lockstep_reference(method.eval(), video, seed=3, alpha=torch.tensor([0.8, 0.6, 0.4, 0.2]))
    torch.testing.assert_close(
        RestoreEngine(method, EngineOptions(seed=3)).restore_tensor(video), expected, atol=1e-5, rtol=0
    )


def test_after_denoising_opts_out_of_the_latent_protocol():
    method = DiffVSR(sampling={"num_inference_steps": 1}, ilt={"fuse": "after_denoising"})
    assert method.latent_layout is None and not RestoreEngine(method, EngineOptions()).latent


def _frames(folder, count, size=8):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def test_vsr_restore_of_a_long_clip_fuses_every_step(tiny_method, tmp_path, monkeypatch):
    """``vsr restore --ckpt`` of a 14-frame clip (3 windows, the last 6 frames long) through the latent path."""
    monkeypatch.chdir(tmp_path)
    export_method(tiny_method, tmp_path / "export")
    clip = _frames(tmp_path / "clip", 14)
    runs = []
    original = RestoreEngine._latent_stream

    def spy(self, *args, **kwargs):
        runs.append(self)
        yield from original(self, *args, **kwargs)

    monkeypatch.setattr(RestoreEngine, "_latent_stream", spy)
    base = ["restore", str(clip), "--ckpt", str(tmp_path / "export"), "--steps", "2", "--seed", "0"]
    assert main([*base, "-o", str(tmp_path / "latent")]) == 0
    assert len(runs) == 1 and isinstance(runs[0].runner.fusion, ILTLatentFusion)
    assert [(w.start, w.frames) for w in runs[0].runner.windows] == [(0, 8), (4, 8), (8, 6)]
    assert main([*base, "-o", str(tmp_path / "pixel"), "--fusion", "pixel"]) == 0
    assert len(runs) == 1  # the release's after-the-fact blend does not take the latent path
    assert (tmp_path / "latent" / "clip.mp4").is_file() and (tmp_path / "pixel" / "clip.mp4").is_file()
