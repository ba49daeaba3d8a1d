"""The latent window protocol's pieces: layout arithmetic, latent windows and tiles, the default fusion weights."""

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.inference import (
    LatentFusion,
    LatentLayout,
    Window,
    WindowPlan,
    gaussian_weight,
    implements_latent_protocol,
    plan_tiles,
)
from vsr_core.inference.latent import latent_tiles, latent_windows
from vsr_core.latent import PixelUnshuffleCodec
from vsr_core.testing import BoringMethod, LatentBoringMethod


def test_layout_frames_and_sizes():
    causal = LatentLayout(latent_channels=16, temporal_factor=4, spatial_factor=8, causal=True, latent_multiple=2)
    assert [causal.latent_frames(n) for n in (1, 5, 17, 81)] == [1, 2, 5, 21]  # 4k+1 -> k+1
    plain = LatentLayout(latent_channels=48, temporal_factor=4, spatial_factor=2)
    assert [plain.latent_frames(n) for n in (4, 16)] == [1, 4]  # 4k -> k
    # CogVideoX at x4: latent = LQ * 4 / 8; patch 2 -> LQ sides in multiples of 16*2/4 = 4
    assert causal.lq_quantum(4) == 4 and causal.to_latent(256, 4) == 128
    # tiny SATB-like: unshuffle 2 at x4 -> latent = 2 x LQ, any LQ size is whole patches
    assert LatentLayout(latent_channels=12, spatial_factor=2, latent_multiple=2).lq_quantum(4) == 1
    assert LatentLayout(latent_channels=4, spatial_factor=8).lq_quantum(3) == 8
    with pytest.raises(ConfigError, match="not a multiple of the latent factor 8"):
        causal.to_latent(3, 4)
    with pytest.raises(ConfigError, match="latent_channels must be >= 1"):
        LatentLayout(latent_channels=0)


def test_layout_from_a_codec_and_the_method_default():
    codec = PixelUnshuffleCodec(factor=2, temporal_factor=4)
    assert LatentLayout.from_codec(codec) == LatentLayout(48, 4, 2, False, 1)
    method = LatentBoringMethod(scale=2, temporal_factor=4)
    assert method.latent_layout == LatentLayout(48, 4, 2, False, 1)
    assert implements_latent_protocol(method) and not implements_latent_protocol(BoringMethod())
    assert BoringMethod().latent_layout is None  # no codec


def test_latent_windows_map_pixel_windows_to_latent_frames():
    layout = LatentLayout(latent_channels=16, temporal_factor=4, causal=True)
    plan = WindowPlan(25, 25, (Window(0, 0, 17, 0, 9), Window(1, 8, 17, 9, 0)))
    a, b = latent_windows(plan, layout)
    # pixel 0-16 -> latent 0-4, pixel 8-24 -> latent 2-6: latent frames 2, 3, 4 shared
    assert (a.start, a.frames, a.overlap_before, a.overlap_after) == (0, 5, 0, 3)
    assert (b.start, b.frames, b.overlap_before, b.overlap_after) == (2, 5, 3, 0)
    with pytest.raises(ConfigError, match="does not start on a latent frame"):
        latent_windows(WindowPlan(20, 20, (Window(0, 3, 17, 0, 0),)), layout)


def test_latent_tiles_scale_the_lq_grid():
    layout = LatentLayout(latent_channels=16, spatial_factor=8)
    grid = plan_tiles(48, 40, 32, 16)  # rows 0, 16; columns 0, 8
    tiles = latent_tiles(grid, layout, scale=4)
    assert [(t.y, t.x, t.height, t.width) for t in tiles] == [
        (0, 0, 16, 16),
        (0, 4, 16, 16),
        (8, 0, 16, 16),
        (8, 4, 16, 16),
    ]


def test_default_fusion_crossfades_shared_latent_frames_and_weights_tiles():
    layout = LatentLayout(latent_channels=4)
    plan = WindowPlan(12, 12, (Window(0, 0, 8, 0, 4), Window(1, 4, 8, 4, 0)))
    first, second = latent_windows(plan, layout)
    grid = plan_tiles(8, 8, 4, 2)
    tiles = latent_tiles(grid, layout, scale=1)
    fusion = LatentFusion()
    fusion.start((first, second), tiles)
    w = fusion.weights(first, tiles[0], 0)
    ramp_down = torch.tensor([1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert torch.allclose(w, ramp_down[:, None, None] * gaussian_weight(4, 4)[None])
    w = fusion.weights(second, tiles[0], 3)
    assert torch.allclose(w[:, 0, 0] / gaussian_weight(4, 4)[0, 0], torch.tensor([0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1]))
    # the crossfade of the two windows sums to one on every shared frame
    assert torch.allclose(ramp_down[4:] + torch.tensor([0.2, 0.4, 0.6, 0.8]), torch.ones(4))
    fusion.start((first,), tiles[:1])  # one tile: no spatial weighting
    assert torch.equal(fusion.weights(first, tiles[0], 0), ramp_down[:, None, None])


def test_a_method_opts_out_of_latent_fusion_with_no_layout():
    """Three steps for its own restore only: ``latent_layout = None`` keeps the engine on pixel fusion."""

    class OwnStepsOnly(LatentBoringMethod):
        latent_layout = None

    method = OwnStepsOnly(scale=2, temporal_factor=4)
    assert not implements_latent_protocol(method)
    from vsr_core.inference import EngineOptions, RestoreEngine

    with pytest.raises(
        ConfigError, match="OwnStepsOnly does not implement .* with a latent_layout; use --fusion pixel"
    ):
        RestoreEngine(method, EngineOptions(fusion="latent"))
    assert not RestoreEngine(method, EngineOptions(fusion="auto")).latent
