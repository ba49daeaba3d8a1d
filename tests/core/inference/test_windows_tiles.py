"""Window planning (frame rules, overlap, short videos) and tile planning."""

import pytest
import torch

from vsr_core.errors import ConfigError
from vsr_core.inference import gaussian_weight, plan_windows, tile_starts


@pytest.mark.parametrize("frames", [1, 3, 17, 33, 100, 257])
def test_windows_cover_every_frame_with_valid_lengths(frames):
    plan = plan_windows(frames, window=17, overlap=4, frames_rule=(4, 1))
    covered = set()
    for w in plan.windows:
        assert (w.length - 1) % 4 == 0
        covered.update(range(w.start, w.end))
    assert covered == set(range(plan.padded_frames))
    # a short video is padded to the next 4k+1 count; a long one keeps its length
    expected = {1: 1, 3: 5, 17: 17}.get(frames, frames)
    assert plan.padded_frames == expected
    for a, b in zip(plan.windows, plan.windows[1:]):
        assert a.end - b.start == a.overlap_after == b.overlap_before >= 4


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
