"""Frame-count rules shared by codecs, the engine, the conformance kit and plugins (by value)."""

import pytest

from vsr_core.errors import ConfigError
from vsr_core.frames import frames_at_least, frames_at_most


def test_at_least_rounds_up_to_the_rule():
    # 4k+1: 1, 5, 9, 13 ...
    assert [frames_at_least(n, (4, 1)) for n in (0, 1, 2, 5, 6, 9, 10)] == [1, 1, 5, 5, 9, 9, 13]
    # even counts (a temporal factor 2 codec without causal first frame): 2, 4, 6 ...
    assert [frames_at_least(n, (2, 0)) for n in (1, 2, 3, 4)] == [2, 2, 4, 4]
    assert [frames_at_least(n, (1, 0)) for n in (1, 7)] == [1, 7]
    # 8k+3: 3, 11, 19
    assert [frames_at_least(n, (8, 3)) for n in (1, 3, 4, 11, 12)] == [3, 3, 11, 11, 19]


def test_at_most_rounds_down_without_inventing_frames():
    assert [frames_at_most(n, (4, 1)) for n in (1, 4, 5, 8, 9, 12)] == [1, 1, 5, 5, 9, 9]
    assert [frames_at_most(n, (2, 0)) for n in (2, 3, 5)] == [2, 2, 4]
    # fewer frames than the smallest valid count: the smallest (the caller pads or refuses)
    assert frames_at_most(1, (2, 0)) == 2
    assert frames_at_most(2, (8, 3)) == 3


def test_codec_and_rule_agree():
    from vsr_core.latent import PixelUnshuffleCodec

    codec = PixelUnshuffleCodec(factor=2, temporal_factor=2)
    assert codec.frames_rule == (2, 0)
    assert [codec.valid_frames(n) for n in (1, 3, 4)] == [frames_at_least(n, (2, 0)) for n in (1, 3, 4)]


@pytest.mark.parametrize("rule", [(0, 0), (4, -1)])
def test_bad_rule_is_one_line(rule):
    with pytest.raises(ConfigError, match="frames rule"):
        frames_at_least(3, rule)
