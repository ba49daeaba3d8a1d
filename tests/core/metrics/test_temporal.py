"""Warping error is ~0 for a static or smoothly moving clip and large for flicker; flicker score likewise."""

import torch
import torch.nn.functional as F

from vsr_core.metrics import HornSchunckFlow, flicker, validation_scores, warping_error


def _texture(h, w, seed=0, cell=4):
    g = torch.Generator().manual_seed(seed)
    return (
        F.interpolate(
            torch.rand(1, 3, h // cell, w // cell, generator=g), size=(h, w), mode="bicubic", align_corners=False
        )
        * 2
        - 1
    )


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


def test_neighbour_average_is_the_horn_schunck_kernel_with_replicated_edges():
    import numpy as np
    from scipy.ndimage import correlate

    from vsr_core.metrics.temporal import neighbour_average

    flow = torch.randn(2, 2, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kernel = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]]) / 12.0
    expected = np.stack([[correlate(flow[n, c].numpy(), kernel, mode="nearest") for c in range(2)] for n in range(2)])
    torch.testing.assert_close(neighbour_average(flow), torch.from_numpy(expected))


def _translated(shift_x: int, shift_y: int, h: int = 96, w: int = 128):
    """Frames ``a(p) = big(p)`` and ``b(p) = big(p + shift)`` in [0, 1] of a smooth texture."""
    big = _texture(h + 16, w + 16, seed=3, cell=8)
    a = big[..., 8 : 8 + h, 8 : 8 + w]
    b = big[..., 8 - shift_y : 8 - shift_y + h, 8 - shift_x : 8 - shift_x + w]
    return a.add(1).div(2), b.add(1).div(2)


def test_bounded_working_size_recovers_the_same_motion():
    # b(p) = big(p - s): b sampled at p + s gives a(p), so the backward flow a -> b is +s everywhere.
    a, b = _translated(4, 2)
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    full = HornSchunckFlow()(a, b)[inner].mean(dim=(0, 2, 3))
    small = HornSchunckFlow(max_size=64)(a, b)  # 128 px wide -> averaged by 2 (64x48), flow scaled back x2
    assert small.shape == (1, 2, 96, 128)
    # Horn-Schunck's smoothness term shortens large displacements a little at either size (3.6 / 3.4 of 4 px).
    torch.testing.assert_close(full, torch.tensor([4.0, 2.0]), atol=0.5, rtol=0)
    torch.testing.assert_close(small[inner].mean(dim=(0, 2, 3)), full, atol=0.3, rtol=0)
    clip = torch.stack([a, b], dim=2) * 2 - 1  # [1,3,2,H,W]
    naive = ((b - a) ** 2).mean().item() * 1e3
    assert warping_error(clip, HornSchunckFlow(max_size=64)).item() < naive / 5


def test_default_estimator_bounds_the_working_size_and_says_so(tmp_path, monkeypatch):
    from vsr_core.metrics.temporal import DEFAULT_FLOW_SIZE, default_flow_estimator

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    flow = default_flow_estimator()
    assert isinstance(flow, HornSchunckFlow) and flow.max_size == DEFAULT_FLOW_SIZE == 384
    assert flow.name == "horn-schunck (estimated on frames of at most 384 px)"
    assert HornSchunckFlow().name == "horn-schunck"


def test_warping_error_reports_progress_per_chunk_of_pairs():
    clip = _texture(24, 24).unsqueeze(2).repeat(1, 1, 20, 1, 1)
    seen = []
    warping_error(clip, HornSchunckFlow(levels=1, iterations=2), progress=seen.append)
    assert seen == [8, 16, 19]
