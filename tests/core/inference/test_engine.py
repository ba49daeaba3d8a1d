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
        assert (lq.shape[2] - 1) % 4 == 0 and lq.shape[-1] % 8 == 0 and lq.shape[-2] % 8 == 0
        self.shapes.append(tuple(lq.shape))
        return lq.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2) + sampling.get("offset", 0.0)


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
        assert torch.equal(out, expected(video))  # cross-fade of identical windows is exact
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


def test_a_fusion_sees_the_tile_of_each_call():
    calls = []

    class TileAware(WindowFusion):
        def restore_window(self, method, lq, window, plan, prompt, *, tile=None, **sampling):
            calls.append((window.index, tile.index, tile.y, tile.x, tuple(lq.shape[-2:])))
            return method.restore(lq)

    class WithFusion(Upscale):
        def make_window_fusion(self):
            return TileAware()

    run(RestoreEngine(WithFusion(), EngineOptions(window=9, overlap=4, tile=16, tile_overlap=8)), frames(13, 16, 24))
    # two windows x tiles at columns 0 and 8 of a 16x24 frame
    assert calls == [(w, i, 0, x, (16, 16)) for w in (0, 1) for i, x in enumerate((0, 8))]


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
        def restore(self, lq, prompt=None, *, generator=None, **sampling):
            return super().restore(lq) + 0.1 * torch.randn(1, generator=generator)

    video = frames(12, 8, 8)
    a = run(RestoreEngine(Noisy(), EngineOptions(seed=3)), video)
    b = run(RestoreEngine(Noisy(), EngineOptions(seed=3)), video)
    c = run(RestoreEngine(Noisy(), EngineOptions(seed=4)), video)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_generator_is_seeded_per_file_and_the_global_rng_is_left_alone():
    class Recording(Upscale):
        def __init__(self):
            super().__init__()
            self.draws = []

        def restore(self, lq, prompt=None, *, generator=None, **sampling):
            self.draws.append((generator.device.type, torch.randn(2, generator=generator)))
            return super().restore(lq)

    method = Recording()
    engine = RestoreEngine(method, EngineOptions(window=9, overlap=4, seed=7))
    video = frames(14, 8, 8)  # windows at 0 and 5: two restore calls per file
    before = torch.random.get_rng_state()
    run(engine, video)
    run(engine, video)  # a second file with the same engine starts from the seed again
    assert torch.equal(torch.random.get_rng_state(), before)
    reference = torch.Generator().manual_seed(7)
    first, second = torch.randn(2, generator=reference), torch.randn(2, generator=reference)
    assert [d for d, _ in method.draws] == ["cpu"] * 4
    for k, expected in enumerate([first, second, first, second]):
        assert torch.equal(method.draws[k][1], expected)


def test_steps_prompt_and_options_reach_restore():
    class Recording(Upscale):
        seen = []

        def restore(self, lq, prompt=None, **sampling):
            self.seen.append((prompt, sorted(sampling)))
            return super().restore(lq)

    engine = RestoreEngine(Recording(), EngineOptions(prompt="a cat", sampling={"num_inference_steps": 3}))
    run(engine, frames(5, 8, 8))
    assert Recording.seen == [(["a cat"], ["generator", "num_inference_steps"])]


class Native(Upscale):
    """Upscale with a native tile of 16 LQ pixels and 8 pixels of native overlap."""

    native_tile = 16
    native_tile_overlap = 8


def test_frames_larger_than_the_native_tile_are_tiled_automatically():
    video = frames(5, 40, 56)
    method = Native()
    out = run(RestoreEngine(method, EngineOptions()), video)
    assert torch.equal(out, expected(video))
    assert {s[-2:] for s in method.shapes} == {(16, 16)}
    # rows at 0, 8, 16, 24 and columns at 0, 8, ..., 40: tile_starts with the native overlap of 8
    assert len(method.shapes) == 4 * 6
    small = Native()
    run(RestoreEngine(small, EngineOptions()), frames(5, 16, 16))
    assert small.shapes == [(1, 3, 5, 16, 16)]  # not larger than a tile: one call


def test_tile_zero_turns_tiling_off_and_tile_n_overrides_the_native_tile():
    video = frames(5, 40, 56)
    off = Native()
    assert torch.equal(run(RestoreEngine(off, EngineOptions(tile=0)), video), expected(video))
    assert off.shapes == [(1, 3, 5, 40, 56)]
    bigger = Native()
    run(RestoreEngine(bigger, EngineOptions(tile=32)), video)
    # 32-pixel tiles with a quarter (8) of overlap: rows 0, 8; columns 0, 24
    assert {s[-2:] for s in bigger.shapes} == {(32, 32)} and len(bigger.shapes) == 4


def test_a_tile_below_the_methods_minimum_is_one_line():
    import pytest

    from vsr_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--tile 4 is smaller than Native's minimum tile of 8 LQ pixels"):
        RestoreEngine(Native(), EngineOptions(tile=4))  # spatial_multiple 8
    with pytest.raises(ConfigError, match="--tile-overlap 16 must be smaller than the tile"):
        run(RestoreEngine(Native(), EngineOptions(tile=16, tile_overlap=16)), frames(2, 40, 40))
    with pytest.raises(ConfigError, match="--tile must be >= 0"):
        RestoreEngine(Native(), EngineOptions(tile=-1))


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


def test_the_default_overlap_is_the_methods_temporal_overlap():
    from vsr_core.testing import BoringMethod

    class EightFour(Upscale):  # DiffVSR's long-video setting: 8-frame windows, 4 shared
        temporal_window = 9  # the 4k+1 rule of Upscale: 9-frame windows
        temporal_overlap = 4

    assert [w.start for w in RestoreEngine(EightFour(), EngineOptions()).plan(19).windows] == [0, 5, 10]
    # --window scales the method's overlap with it (4 of 9 -> 8 of 17), --overlap overrides it
    assert RestoreEngine(EightFour(), EngineOptions(window=17)).overlap == 8
    assert RestoreEngine(EightFour(), EngineOptions(overlap=1)).overlap == 1
    method = BoringMethod()  # VSRMethod's default: a quarter of temporal_window (16)
    assert method.temporal_overlap == 4 and RestoreEngine(method, EngineOptions()).overlap == 4
    method.temporal_overlap = 6  # settable per instance (e.g. from an init argument)
    assert RestoreEngine(method, EngineOptions()).overlap == 6
