"""Warping error is ~0 for a static or smoothly moving clip and large for flicker; flicker score likewise."""

import torch
import torch.nn.functional as F

from vsr_core.metrics import HornSchunckFlow, flicker, validation_scores, warping_error


def _texture(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bicubic", align_corners=False) * 2 - 1


def test_static_clip_has_zero_warp_error_and_flicker():
    clip = _texture(40, 48).unsqueeze(2).repeat(1, 1, 6, 1, 1)
    assert warping_error(clip).item() < 1e-6
    assert flicker(clip).item() == 0.0


def test_flicker_raises_both_scores():
    clip = _texture(40, 48).unsqueeze(2).repeat(1, 1, 6, 1, 1)
    flick = clip.clone()
    flick[:, :, 1::2] = (flick[:, :, 1::2] + 0.3).clamp(-1, 1)
    assert warping_error(flick).item() > 10
    assert flicker(flick).item() > 20


def test_flow_compensates_motion():
    big = _texture(40, 64)
    moving = torch.stack([big[..., i : i + 48] for i in range(6)], dim=2)  # 1 px/frame pan
    naive = ((moving[:, :, 1:] - moving[:, :, :-1]) ** 2 / 4).mean().item() * 1e3
    assert warping_error(moving, HornSchunckFlow()).item() < naive / 5


def test_validation_scores_shapes():
    gt = _texture(32, 32).unsqueeze(2).repeat(2, 1, 5, 1, 1)
    scores = validation_scores(gt, gt)
    assert set(scores) == {"psnr", "ssim", "warp_error", "flicker"}
    assert all(v.shape == (2,) for v in scores.values())
    assert scores["ssim"].min().item() > 0.999
