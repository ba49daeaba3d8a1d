"""Per-frame resizing of [B,C,T,H,W] videos."""

import torch
import torch.nn.functional as F

from vsr_core.video_ops import resize_frames, upsample_frames


def test_upsample_is_per_frame_bicubic_and_clamped():
    video = torch.rand(2, 3, 4, 6, 5) * 2 - 1
    out = upsample_frames(video, 2)
    assert out.shape == (2, 3, 4, 12, 10)
    frame = F.interpolate(video[:, :, 1], scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    torch.testing.assert_close(out[:, :, 1], frame)
    assert out.min() >= -1 and out.max() <= 1


def test_area_downscale_averages_blocks_and_scale_one_is_identity():
    video = torch.arange(16.0).view(1, 1, 1, 4, 4).repeat(1, 3, 2, 1, 1)
    out = resize_frames(video, 0.5, "area")
    assert out.shape == (1, 3, 2, 2, 2)
    assert out[0, 0, 0, 0, 0].item() == (0 + 1 + 4 + 5) / 4
    assert resize_frames(video, 1) is video


def test_padded_size_rounds_up_after_the_minimum():
    from vsr_core.video_ops import padded_size

    assert [padded_size(n, 8) for n in (1, 8, 9, 17)] == [8, 8, 16, 24]
    assert padded_size(3, 4, minimum=10) == 12


def test_pad_spatial_repeats_the_bottom_and_right_edges():
    from vsr_core.video_ops import pad_spatial

    video = torch.arange(6.0).view(1, 1, 1, 2, 3).repeat(1, 2, 3, 1, 1)  # rows [0 1 2], [3 4 5]
    out = pad_spatial(video, 4, 5)
    assert out.shape == (1, 2, 3, 4, 5)
    expected = torch.tensor([[0, 1, 2, 2, 2], [3, 4, 5, 5, 5], [3, 4, 5, 5, 5], [3, 4, 5, 5, 5]], dtype=torch.float)
    assert torch.equal(out[0, 1, 2], expected)
    assert pad_spatial(video, 2, 3) is video


def test_pad_temporal_repeats_the_last_frame():
    from vsr_core.video_ops import pad_temporal

    video = torch.arange(3.0).view(1, 1, 3, 1, 1)  # frames 0, 1, 2
    out = pad_temporal(video, 5)
    assert out.flatten().tolist() == [0, 1, 2, 2, 2]
    assert pad_temporal(video, 2) is video
