"""Video codec stage: PyAV round trips in memory, CPU thread pool, determinism, pipeline wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsr_core.data.degradations import CodecParams, build_degradation
from vsr_core.data.degradations.codec import CodecPlan, compress_clip, compress_clips, sample_codec
from vsr_core.data.degradations.random_draws import RandomDraws


def _smooth_clip(t=4, h=24, w=32, seed=0):
    # Smooth gradients plus a little texture: realistic enough for an encoder to keep its structure.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    frames = [np.roll(base, k, axis=1) + rng.normal(0, 8, base.shape) for k in range(t)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_round_trip_keeps_shape_changes_values_and_stays_close(codec):
    clip = _smooth_clip()
    out = compress_clip(clip, codec, bitrate=20_000)
    assert out.shape == clip.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - clip.astype(int))
    assert diff.max() > 0  # lossy
    assert diff.mean() < 40  # but the picture survives


def test_odd_and_tiny_sizes_are_padded_and_cropped_back():
    clip = _smooth_clip(t=3, h=5, w=7)
    assert compress_clip(clip, "libx264", 10_000).shape == (3, 5, 7, 3)


def test_lower_bitrate_loses_more():
    clip = _smooth_clip(t=4, h=32, w=32, seed=1)
    err = {b: np.abs(compress_clip(clip, "libx264", b).astype(int) - clip).mean() for b in (5_000, 400_000)}
    assert err[5_000] > err[400_000]


def test_compress_clips_codes_only_planned_clips_deterministically():
    clips = torch.from_numpy(np.stack([_smooth_clip(seed=s) for s in range(3)])).permute(0, 1, 4, 2, 3).float() / 255
    plan = CodecPlan([("libx264", 20_000), None, ("mpeg4", 20_000)])
    out = compress_clips(clips, plan, workers=2)
    assert out.shape == clips.shape and out.dtype == clips.dtype
    assert torch.equal(out[1], clips[1])
    assert not torch.equal(out[0], clips[0]) and not torch.equal(out[2], clips[2])
    assert torch.equal(out, compress_clips(clips, plan, workers=1))


def test_codec_stage_in_a_preset_changes_the_low_quality_clip():
    g = torch.Generator().manual_seed(0)
    hq = torch.from_numpy(_smooth_clip(t=3, h=64, w=64)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    plain = build_degradation("bicubic", 2)(hq, torch.Generator().manual_seed(0))
    coded = build_degradation("bicubic", 2, codec={"bitrate": (5e3, 6e3)})(hq, g)
    assert coded.shape == plain.shape == (1, 3, 3, 32, 32)
    assert not torch.equal(coded, plain) and (coded - plain).abs().mean() < 0.2


def test_bitrate_range_scales_with_frame_area_and_never_drops_below_one_kbit():
    params = CodecParams(bitrate=(1e4, 2e4))
    big = sample_codec(RandomDraws(torch.Generator().manual_seed(0), "cpu"), 16, params, 128, 128)
    tiny = sample_codec(RandomDraws(torch.Generator().manual_seed(0), "cpu"), 16, params, 8, 8)
    assert all(4 * 1e4 <= b <= 4 * 2e4 for _, b in big.settings)  # 128x128 = 4 x 64x64
    assert all(b == 1000 for _, b in tiny.settings)
