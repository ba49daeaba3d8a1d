"""Presets and overrides: names, suggestions, nested/dotted overrides, validation errors."""

from __future__ import annotations

import pytest

from vsr_core.data.degradations import (
    CodecParams,
    DegradationParams,
    available_presets,
    build_degradation,
    preset_params,
)
from vsr_core.errors import ConfigError


def test_available_presets():
    assert available_presets() == ["none", "bicubic", "simple", "realesrgan", "realbasicvsr"]


def test_unknown_preset_suggests_the_closest_and_lists_all_on_one_line():
    with pytest.raises(ConfigError) as err:
        build_degradation("realbasicsvr", 4)
    message = str(err.value)
    assert "did you mean 'realbasicvsr'?" in message and "bicubic" in message and "\n" not in message


def test_preset_names_are_case_insensitive():
    assert build_degradation("BICUBIC", 2).name == "bicubic"


def test_presets_carry_the_papers_values():
    rbvsr = preset_params("realbasicvsr")
    assert rbvsr.first.blur.sigma == (0.2, 3.0) and rbvsr.second.blur.sigma == (0.2, 1.5)
    assert rbvsr.second.blur.prob == 0.8 and rbvsr.second.resize.probs == (0.3, 0.4, 0.3)
    assert rbvsr.codec.bitrate == (1e4, 1e5) and rbvsr.drift is not None and rbvsr.final.jpeg is None
    esrgan = preset_params("realesrgan")
    assert esrgan.codec is None and esrgan.drift is None and esrgan.second.jpeg is None
    assert esrgan.final.sinc_prob == 0.8 and esrgan.final.jpeg.quality == (30.0, 95.0)
    assert preset_params("simple").first.blur.kernel_types == ("iso",)


def test_nested_and_dotted_overrides_and_none_to_disable():
    deg = build_degradation(
        "realbasicvsr",
        4,
        codec=None,
        second={"noise": {"gaussian_sigma": [1, 10]}},
        **{"first.jpeg.quality": [50, 60], "second.noise.prob": 0.5},
    )
    p = deg.params
    assert p.codec is None
    assert p.first.jpeg.quality == (50.0, 60.0)
    assert p.second.noise.gaussian_sigma == (1.0, 10.0) and p.second.noise.prob == 0.5
    assert p.second.noise.poisson_scale == (0.05, 2.5)  # untouched values keep the preset's


def test_a_mapping_turns_an_off_stage_on_with_defaults():
    p = build_degradation("bicubic", 4, codec={"codecs": ["mpeg4"], "codec_probs": [1]}).params
    assert p.codec == CodecParams(codecs=("mpeg4",), codec_probs=(1.0,))
    assert isinstance(p, DegradationParams)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"secnd": {}}, "unknown degradation option 'secnd'; did you mean 'second'"),
        ({"second.noise.sigma": (1, 2)}, "unknown degradation option 'second.noise.sigma'"),
        ({"first.blur.prob": 2.0}, r"blur.prob=2.0 must be a probability"),
        ({"first.blur.sigma": (3, 1)}, r"blur.sigma=\[3.0, 1.0\]"),
        ({"first.blur.kernel_types": ["box"], "first.blur.kernel_probs": [1]}, "unknown entries \\['box'\\]"),
        ({"first.blur.kernel_probs": [1, 1]}, "must be 6 non-negative weights"),
        ({"first.blur.kernel_sizes": [8]}, "odd kernel sizes"),
        ({"first.resize.modes": ["nearest"]}, "choose from"),
        ({"codec.codecs": ["notacodec"], "codec.codec_probs": [1]}, "not a video encoder"),
        ({"quantize": {"a": 1}}, "takes a value, not a mapping"),
    ],
)
def test_bad_overrides_are_one_line_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        build_degradation("realbasicvsr", 4, **overrides)
    assert "\n" not in str(err.value)
