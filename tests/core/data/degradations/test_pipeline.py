"""VideoDegradation end to end: shapes, ranges, seeding, per-clip parameters, drift, bad sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsr_core.data.degradations import VideoDegradation, build_degradation
from vsr_core.errors import ConfigError

PRESETS = ["bicubic", "simple", "realesrgan", "realbasicvsr"]
# Codec-free variants keep the parametrised sweep fast; the codec has its own tests.
NO_CODEC = {"realbasicvsr": {"codec": None}}


def _clips(b=2, t=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


def _static_clips(b=3, t=4, h=32, w=32):
    # One textured frame repeated over time, and the same clip in every batch slot.
    frame = _clips(1, 1, h, w, seed=7)[:, :, :1]
    return frame.expand(b, 3, t, h, w).contiguous()


def _run(deg, hq, seed):
    return deg(hq, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("preset", PRESETS)
def test_shape_range_dtype_and_8bit_levels(preset, scale):
    deg = build_degradation(preset, scale, **NO_CODEC.get(preset, {}))
    lq = _run(deg, _clips(), 0)
    assert deg.scale == scale
    assert lq.shape == (2, 3, 3, 32 // scale, 32 // scale) and lq.dtype == torch.float32
    assert lq.min() >= -1.0 and lq.max() <= 1.0
    levels = (lq + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)  # quantised to 8 bits


@pytest.mark.parametrize("preset", ["simple", "realesrgan", "realbasicvsr"])
def test_same_seed_same_output_other_seed_other_output(preset):
    deg = build_degradation(preset, 2, **NO_CODEC.get(preset, {}))
    hq = _clips()
    first, again, other = _run(deg, hq, 3), _run(deg, hq, 3), _run(deg, hq, 4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_realbasicvsr_with_codec_is_reproducible():
    deg = build_degradation("realbasicvsr", 4)
    hq = _clips(b=2, t=3, h=64, w=64)
    assert torch.equal(_run(deg, hq, 5), _run(deg, hq, 5))


def test_static_clip_stays_static_without_noise_drift_or_codec():
    # Every frame of a clip shares the blur kernel, resize factor and mode, and JPEG quality.
    deg = build_degradation("realbasicvsr", 2, codec=None, drift=None, **{"first.noise": None, "second.noise": None})
    lq = _run(deg, _static_clips(), 11)
    assert torch.equal(lq, lq[:, :, :1].expand_as(lq))


def test_drift_makes_a_static_clip_change_over_time():
    deg = build_degradation(
        "realbasicvsr",
        2,
        codec=None,
        drift={"sigma": 0.5, "jpeg_quality": 10.0},
        **{"first.noise": None, "second.noise": None},
    )
    lq = _run(deg, _static_clips(t=6), 11)
    assert not torch.equal(lq[:, :, 0], lq[:, :, -1])


def test_identical_clips_in_a_batch_get_different_degradations():
    lq = _run(build_degradation("realesrgan", 2), _static_clips(b=4), 2)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    assert all(not torch.equal(lq[i], lq[j]) for i, j in pairs)


def test_bicubic_preset_is_antialiased_bicubic_downscale_quantised():
    hq = _clips(b=1, t=2, h=16, w=24)
    lq = _run(build_degradation("bicubic", 4), hq, 0)
    frames = ((hq + 1) / 2)[0].transpose(0, 1)
    expected = F.interpolate(frames, size=(4, 6), mode="bicubic", antialias=True, align_corners=False)
    expected = (expected * 255).round().clamp(0, 255) / 255 * 2 - 1
    torch.testing.assert_close(lq[0].transpose(0, 1), expected, atol=1e-5, rtol=0)


def test_none_preset_is_identity_at_scale_one_and_refuses_other_scales():
    hq = _clips()
    assert torch.equal(build_degradation("none", 1)(hq), hq)
    with pytest.raises(ConfigError, match="needs scale 1"):
        build_degradation("none", 4)


def test_uint8_input_and_default_generator_are_accepted():
    hq = torch.randint(0, 256, (1, 3, 2, 16, 16), dtype=torch.uint8)
    lq = build_degradation("simple", 2)(hq)
    assert lq.shape == (1, 3, 2, 8, 8) and lq.dtype == torch.float32


def test_size_not_divisible_by_scale_is_a_config_error_naming_the_sizes():
    with pytest.raises(ConfigError, match=r"30x32 is not divisible by scale 4.*28x32"):
        build_degradation("bicubic", 4)(_clips(h=30, w=32))


def test_invalid_scale_is_a_config_error():
    with pytest.raises(ConfigError, match="positive integer"):
        build_degradation("bicubic", 0)


def test_module_is_device_free_and_prints_its_preset():
    deg = build_degradation("realesrgan", 4)
    assert isinstance(deg, VideoDegradation) and not list(deg.parameters()) and not list(deg.buffers())
    assert "realesrgan" in repr(deg) and "scale=4" in repr(deg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_data_with_cpu_or_cuda_generator():
    deg = build_degradation("realesrgan", 4)
    hq = _clips(h=64, w=64).cuda()
    for make in (lambda: torch.Generator(), lambda: torch.Generator(device="cuda")):
        a = deg(hq, make().manual_seed(0))
        b = deg(hq, make().manual_seed(0))
        assert a.device.type == "cuda" and a.shape == (2, 3, 3, 16, 16) and torch.equal(a, b)
