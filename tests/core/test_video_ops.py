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
