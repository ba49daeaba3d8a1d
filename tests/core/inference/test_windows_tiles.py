"""Window planning (frame rules, overlap, short videos, the shorter last window), tile planning and row blending."""

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.inference import blend_rows, gaussian_weight, plan_tiles, plan_windows, tile_starts


@pytest.mark.parametrize("frames", [1, 3, 17, 33, 100, 257])
def test_windows_cover_every_frame_with_valid_lengths(frames):
    plan = plan_windows(frames, window=17, overlap=4, frames_rule=(4, 1))
    covered = set()
    for w in plan.windows:
        assert (w.length - 1) % 4 == 0 and w.length <= 17
        covered.update(range(w.start, w.end))
    assert covered == set(range(plan.padded_frames))
    assert plan.windows[-1].end == plan.padded_frames  # nothing runs past the end
    # a short video is padded to the next 4k+1 count; a long one keeps its length
    expected = {1: 1, 3: 5, 17: 17}.get(frames, frames)
    assert plan.padded_frames == expected
    for a, b in zip(plan.windows, plan.windows[1:]):
        assert a.end - b.start == a.overlap_after == b.overlap_before >= 4


def test_the_last_window_is_only_as_long_as_the_rest_needs():
    # 32 frames, 17-frame windows, overlap 4: 0-16, 13-29, and 26-31 (the 2 frames left plus 4 shared)
    plan = plan_windows(32, window=17, overlap=4)
    assert [(w.start, w.length, w.overlap_before, w.overlap_after) for w in plan.windows] == [
        (0, 17, 0, 4),
        (13, 17, 4, 4),
        (26, 6, 4, 0),
    ]
    # with a 4k+1 rule the tail is rounded up to a valid length: 100 - (95 - 4) = 9 frames
    plan = plan_windows(100, window=17, overlap=4, frames_rule=(4, 1))
    assert [(w.start, w.length) for w in plan.windows][-2:] == [(78, 17), (91, 9)]
    # windows that end exactly at the end need no tail
    assert [w.start for w in plan_windows(30, window=17, overlap=4).windows] == [0, 13]


def test_window_is_rounded_down_to_the_rule():
    plan = plan_windows(100, window=16, overlap=2, frames_rule=(4, 1))
    assert {w.length for w in plan.windows} == {13}


def test_bad_overlap_is_a_config_error():
    with pytest.raises(ConfigError, match="overlap"):
        plan_windows(100, window=8, overlap=8)


def test_tiles_cover_and_end_at_the_border():
    assert tile_starts(100, 40, 8) == [0, 32, 60]
    assert tile_starts(30, 40, 8) == [0]
    w = gaussian_weight(8, 6)
    assert w.shape == (8, 6) and torch.all(w > 0) and w[4, 3] > w[0, 0]


def test_tile_grid_in_raster_order():
    grid = plan_tiles(40, 24, 16, 8)
    assert [(t.index, t.row, t.col, t.y, t.x, t.height, t.width) for t in grid.tiles] == [
        (r * 2 + c, r, c, y, x, 16, 16) for r, y in enumerate((0, 8, 16, 24)) for c, x in enumerate((0, 8))
    ]
    whole = plan_tiles(40, 24, None)
    assert whole.single and whole.tiles[0].height == 40 and whole.tiles[0].width == 24
    # a side the frame does not exceed is not cut
    narrow = plan_tiles(40, 12, 16, 8)
    assert {(t.x, t.width) for t in narrow.tiles} == {(0, 12)}


def test_blend_rows_equals_the_dense_weighted_mean_and_releases_rows_early():
    grid = plan_tiles(20, 14, 8, 3)  # rows 0, 5, 10, 12; columns 0, 5, 6
    s = 2
    outputs = {t.index: torch.rand(3, 2, 16, 16) for t in grid.tiles}
    # independent dense computation: every tile's Gaussian-weighted output summed on the full frame
    total = torch.zeros(3, 2, 40, 28)
    weight = torch.zeros(40, 28)
    g = gaussian_weight(16, 16)
    for t in grid.tiles:
        total[:, :, t.y * s : t.y * s + 16, t.x * s : t.x * s + 16] += outputs[t.index] * g
        weight[t.y * s : t.y * s + 16, t.x * s : t.x * s + 16] += g
    expected = total / weight
    consumed = []

    def lazily():
        for t in grid.tiles:
            consumed.append(t.index)
            yield t, outputs[t.index]

    bands = []
    for y0, rows in blend_rows(grid, s, lazily()):
        bands.append((y0, rows.shape[2], len(consumed)))
        assert torch.allclose(rows, expected[:, :, y0 : y0 + rows.shape[2]], atol=1e-6)
    # rows above each new row of tiles come out before that row is restored; together they cover the frame
    assert bands == [(0, 10, 4), (10, 10, 7), (20, 4, 10), (24, 16, 12)]
    assert sum(b[1] for b in bands) == 40


def test_blend_rows_passes_a_single_tile_through():
    grid = plan_tiles(8, 8, 16)
    out = torch.rand(3, 2, 16, 16)
    assert [(y0, rows) for y0, rows in blend_rows(grid, 2, iter([(grid.tiles[0], out)]))] == [(0, out)]
