"""BicubicBaseline: val/psnr_bicubic and val/ssim_bicubic of the clips the method scored, by value."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim
from test_video_samples import SCALE, Clips, Upsampler, collate
from torch.utils.data import DataLoader

from vsr_core.callbacks import BicubicBaseline


def by_hand(clip: dict) -> tuple[float, float]:
    """PSNR (mean over frames of 10 log10(1/MSE) on [0,1]) and SSIM of the bicubic x2 upsampling of one clip."""
    lq, hq = clip["lq"].transpose(0, 1), clip["hq"].transpose(0, 1)  # [T,3,h,w], [T,3,H,W]
    up = F.interpolate(lq, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp(-1, 1)
    a, b = (up + 1) / 2, (hq + 1) / 2
    mse = ((a - b) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    window = min(11, a.shape[-1], a.shape[-2])
    window -= 1 - window % 2
    ssim = kornia_ssim(a, b, window_size=window, max_val=1.0, padding="valid").flatten(1).mean(1).mean().item()
    return psnr, ssim


def test_logs_the_mean_bicubic_scores_over_the_validation_clips(tmp_path):
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[BicubicBaseline()],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    # 5 clips in batches of 2, 2, 1: Lightning's batch-size-weighted epoch mean is the mean over clips.
    (metrics,) = trainer.validate(Upsampler(), DataLoader(Clips(), batch_size=2, collate_fn=collate), verbose=False)
    expected = [by_hand(Clips()[i]) for i in range(5)]
    assert set(metrics) == {"val/psnr_bicubic", "val/ssim_bicubic"}
    torch.testing.assert_close(metrics["val/psnr_bicubic"], sum(p for p, _ in expected) / 5, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(metrics["val/ssim_bicubic"], sum(s for _, s in expected) / 5, rtol=1e-5, atol=1e-5)
    assert 10 < metrics["val/psnr_bicubic"] < 60
