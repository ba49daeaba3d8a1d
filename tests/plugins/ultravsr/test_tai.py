"""Intervals and Gaussian tiles around TAI (the release's inference rules)."""

from __future__ import annotations

import math

import torch

from ultravsr.tai import interval_bounds, tiled


def test_intervals_follow_the_release_rule():
    # Split only when both the frame count and the (upsampled) frame size are above the limits.
    assert interval_bounds(100, 30, 1080, 1920, 1440) == [(0, 30), (30, 60), (60, 90), (90, 100)]
    assert interval_bounds(100, 30, 720, 1280, 1440) == [(0, 100)]  # 1280 px <= 1440
    assert interval_bounds(30, 30, 2160, 3840, 1440) == [(0, 30)]  # not longer than an interval
    assert interval_bounds(7, 3, 8, 8, 0) == [(0, 3), (3, 6), (6, 7)]
    assert interval_bounds(7, 0, 8, 8, 0) == [(0, 7)]  # 0 frames: never split


def test_no_tiles_when_the_area_fits_one_tile():
    x = torch.randn(1, 2, 3, 8, 12)
    calls = []
    out = tiled(lambda v: calls.append(v.shape) or v * 2, x, tile=10, overlap=2, grid=(8, 12))  # 96 <= 100
    assert calls == [x.shape] and torch.equal(out, x * 2)


def test_tiles_blend_back_a_pointwise_function_exactly():
    x = torch.randn(1, 2, 3, 20, 28)
    shapes = []

    def fn(v):
        shapes.append(tuple(v.shape[-2:]))
        return v * 3 - 1

    out = tiled(fn, x, tile=8, overlap=2, grid=(20, 28))
    torch.testing.assert_close(out, x * 3 - 1)  # weights are normalised: a pointwise fn is unchanged
    assert set(shapes) == {(8, 8)} and len(shapes) == 3 * 5  # starts 0,6,12 (rows) and 0,6,12,18,20 (cols)


def test_tiles_map_between_grids_of_different_scale():
    x = torch.randn(1, 1, 2, 16, 16)  # "pixels" on a grid of 4 x 4 cells of 4 pixels (an encoder)

    def pool(v):  # 4x4 average per cell: a per-cell function
        return torch.nn.functional.avg_pool3d(v, (1, 4, 4))

    out = tiled(pool, x, tile=2, overlap=1, grid=(4, 4), in_scale=4)
    torch.testing.assert_close(out, pool(x))

    def up(v):  # a decoder: each cell becomes 2 x 2 pixels
        return v.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)

    z = torch.randn(1, 1, 2, 5, 5)
    torch.testing.assert_close(tiled(up, z, tile=3, overlap=1, grid=(5, 5), out_scale=2), up(z))


def test_tile_weights_are_the_release_gaussian():
    # A function that marks each tile's output with its own index shows the blend weights.
    x = torch.zeros(1, 1, 1, 12, 20)  # square tiles of side min(12, 12, 20) = 12 (the release's rule)
    index = iter(range(10))

    def mark(v):
        return torch.full_like(v, float(next(index)))

    out = tiled(mark, x, tile=12, overlap=4, grid=(12, 20))  # tiles at 0 and 8, overlap on columns 8..11
    weight = lambda i: math.exp(-((i - 5.5) ** 2) / (2 * (0.1 * 12) ** 2))  # noqa: E731 - sigma = 0.1 x side
    row = weight(6)  # the same row weight in both tiles; the core floors the 2-D weight at exp(-8)
    for col in (8, 10, 11):
        w0, w1 = max(row * weight(col), math.exp(-8)), max(row * weight(col - 8), math.exp(-8))
        assert abs(float(out[0, 0, 0, 6, col]) - w1 / (w0 + w1)) < 1e-5  # tile 0 marks 0, tile 1 marks 1
