"""The long-video engine with small stand-in methods (exact values, no training)."""

import torch

from vsr_core.inference import (
    EngineOptions,
    LinearCrossfade,
    RestoreEngine,
    WindowFusion,
    adain_color_fix,
    wavelet_color_fix,
)


class Upscale:
    """Nearest-neighbour x2 that records the window shapes it sees and obeys a 4k+1 rule."""

    scale = 2
    temporal_window = 9
    frames_rule = (4, 1)
    spatial_multiple = 8

    def __init__(self):
        self.shapes = []

    def restore(self, lq, prompt=None, **sampling):
        assert (
            (lq.shape[2] - 1) % 4 == 0
            and lq.shape[-1] % 8 == 0
            and lq.shape[-2] % 8 == 0
        )
        self.shapes.append(tuple(lq.shape))
        return lq.repeat_interleave(2, dim=-1).repeat_interleave(
            2, dim=-2
        ) + sampling.get("offset", 0.0)


def frames(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


def run(engine, video):
    return torch.stack(list(engine.restore_frames(iter(video), len(video))))


def expected(video):
    return video.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def test_odd_sizes_any_length_exact_frames():
    for n in (1, 2, 23):
        video = frames(n, 13, 21)
        method = Upscale()
        out = run(RestoreEngine(method, EngineOptions(overlap=4)), video)
        assert out.shape == (n, 26, 42, 3)
        assert torch.equal(
            out, expected(video)
        )  # cross-fade of identical windows is exact
        assert all(s[-2:] == (16, 24) for s in method.shapes)


def test_tiles_blend_back_to_the_same_frames():
    video = frames(5, 40, 56)
    method = Upscale()
    out = run(RestoreEngine(method, EngineOptions(tile=16, tile_overlap=8)), video)
    assert torch.equal(out, expected(video))
    assert len(method.shapes) > 4 and all(s[-2:] == (16, 16) for s in method.shapes)


def test_crossfade_weights_sum_to_one_in_overlaps():
    engine = RestoreEngine(Upscale(), EngineOptions(window=9, overlap=4))
    plan = engine.plan(29)  # 9 + 4 * 5: windows tile the video exactly
    total = torch.zeros(29)
    for w in plan.windows:
        total[w.start : w.end] += LinearCrossfade().weights(w, plan)
    assert torch.allclose(total, torch.ones(29))


class OffsetPerWindow(WindowFusion):
    """A method-supplied fusion: window i is shifted by i/127.5 and weighted 1 (averaging)."""

    def restore_window(self, method, lq, window, plan, prompt, **sampling):
        return method.restore(lq, offset=window.index / 127.5)


def test_method_supplies_its_own_fusion():
    class WithFusion(Upscale):
        def make_window_fusion(self):
            return OffsetPerWindow()

    video = torch.full((13, 8, 8, 3), 100, dtype=torch.uint8)
    out = run(RestoreEngine(WithFusion(), EngineOptions(window=9, overlap=5)), video)
    # windows start at 0 and 4: frames 0-3 from window 0, 4-8 averaged (100.5 -> rounded), 9-12 window 1
    assert out[:4].unique().tolist() == [100]
    assert out[9:].unique().tolist() == [101]
    assert out[4:9].unique().tolist() == [100]  # (100 + 101) / 2 = 100.5 rounds to even


def test_seeded_noise_is_reproducible():
    class Noisy(Upscale):
        def restore(self, lq, prompt=None, **sampling):
            return super().restore(lq) + 0.1 * torch.randn(1)

    video = frames(12, 8, 8)
    a = run(RestoreEngine(Noisy(), EngineOptions(seed=3)), video)
    b = run(RestoreEngine(Noisy(), EngineOptions(seed=3)), video)
    c = run(RestoreEngine(Noisy(), EngineOptions(seed=4)), video)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_colour_fixes_take_the_reference_colour():
    restored = torch.rand(1, 3, 2, 32, 32) * 0.2
    reference = torch.rand(1, 3, 2, 32, 32) * 0.5 - 0.4
    fixed = adain_color_fix(restored, reference)
    assert torch.allclose(fixed.mean((-2, -1)), reference.mean((-2, -1)), atol=1e-5)
    flat = torch.full_like(restored, 0.3)
    assert torch.allclose(
        wavelet_color_fix(flat, torch.full_like(flat, -0.2)),
        torch.full_like(flat, -0.2),
        atol=1e-5,
    )


def test_a_source_that_ends_early_is_an_error_not_padding():
    """26 frames where 48 were promised: the engine must not invent the other 22 (issue 9)."""
    import pytest

    from vsr_core.errors import TruncatedVideoError

    video = frames(26, 8, 8)
    engine = RestoreEngine(Upscale(), EngineOptions(window=9, overlap=4))
    out = []
    with pytest.raises(TruncatedVideoError) as err:
        for frame in engine.restore_frames(iter(video), 48):
            out.append(frame)
    assert (err.value.decoded, err.value.expected) == (26, 48)
    assert len(out) < 26  # only frames of real inputs were yielded before the end was found
    assert torch.equal(torch.stack(out), expected(video[: len(out)]))
    # asked for the 26 that exist, the same source restores completely
    assert torch.equal(run(engine, video), expected(video))
