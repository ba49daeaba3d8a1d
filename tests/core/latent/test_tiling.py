"""Generic spatial tiling: tile placement, complementary ramps, and exactness for local receptive fields."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from vsr_core.errors import ConfigError
from vsr_core.latent import LatentCodec
from vsr_core.latent.tiling import ramp, tile_starts, tiled_apply


class LocalConvCodec(LatentCodec):
    """A test codec with a known, small receptive field: 2x2 average pooling + 3x3 convs (no normalization)."""

    spatial_factor = 2
    latent_channels = 4

    def __init__(self, **options):
        super().__init__(**options)
        gen = torch.Generator().manual_seed(0)
        self.enc = torch.nn.Parameter(torch.randn(4, 3, 3, 3, generator=gen) * 0.3)
        self.dec = torch.nn.Parameter(torch.randn(12, 4, 3, 3, generator=gen) * 0.3)
        self._finish_init()

    def _per_frame(self, x, fn):
        b, c, t, h, w = x.shape
        y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)

    def _encode(self, video, sample_posterior, generator):
        return self._per_frame(video, lambda f: F.conv2d(F.avg_pool2d(f, 2), self.enc, padding=1))

    def _decode(self, latents):
        return self._per_frame(latents, lambda z: F.pixel_shuffle(F.conv2d(z, self.dec, padding=1), 2))


def test_tiles_cover_the_image_and_end_at_the_border() -> None:
    assert tile_starts(64, 32, 8) == [0, 24, 32]
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(20, 32, 8) == [0]
    for size, tile, overlap in [(100, 32, 8), (96, 48, 16), (33, 16, 4)]:
        starts = tile_starts(size, tile, overlap)
        covered = torch.zeros(size, dtype=torch.bool)
        for s in starts:
            covered[s : s + tile] = True
            assert s + tile <= size
        assert covered.all() and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in pairwise(starts))


def test_ramps_skip_the_outer_quarter_and_cross_fade_to_one() -> None:
    w = ramp(20, 8, 8, dtype=torch.float64, device=torch.device("cpu"))
    # 8 shared entries: 2 unused at the edge, 4 ramping, 2 at full weight.
    expected = torch.tensor([0, 0, 0.2, 0.4, 0.6, 0.8, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(w[:8], expected)
    torch.testing.assert_close(w[-8:], expected.flip(0))
    assert w[8:12].eq(1).all()
    # The successor's rising weights complement a tile's falling weights to exactly 1.
    torch.testing.assert_close(w[-8:] + w[:8], torch.ones(8, dtype=torch.float64))
    # Image borders are not shared: full weight up to the edge.
    assert ramp(6, 0, 0, dtype=torch.float64, device=torch.device("cpu")).eq(1).all()


def test_tiled_apply_is_exact_for_a_pointwise_function() -> None:
    x = torch.randn(2, 3, 2, 40, 56)
    out = tiled_apply(x, lambda t: t * 3 + 1, tile=16, overlap=8, scale=Fraction(1))
    torch.testing.assert_close(out, x * 3 + 1, rtol=0, atol=1e-6)


def test_receptive_field_inside_the_overlap_gives_the_untiled_result() -> None:
    video = torch.rand(1, 3, 3, 48, 64) * 2 - 1
    whole = LocalConvCodec()
    tiled = LocalConvCodec(tile_size=24, tile_overlap=16)
    z = whole.encode(video)
    torch.testing.assert_close(tiled.encode(video), z, rtol=0, atol=1e-5)
    torch.testing.assert_close(tiled.decode(z), whole.decode(z), rtol=0, atol=1e-5)


def test_too_small_overlap_shows_seams() -> None:
    # Guard against a trivially passing test above: without enough overlap tiles do differ.
    video = torch.rand(1, 3, 1, 48, 64) * 2 - 1
    z = LocalConvCodec().encode(video)
    seams = (LocalConvCodec(tile_size=24, tile_overlap=0).encode(video) - z).abs().max()
    assert seams > 1e-3


def test_tile_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="multiples of LocalConvCodec's spatial factor 2"):
        LocalConvCodec(tile_size=25, tile_overlap=8)
    with pytest.raises(ConfigError, match="smaller than tile_size"):
        LocalConvCodec(tile_size=16, tile_overlap=16)
