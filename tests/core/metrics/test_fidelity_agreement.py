"""Our PSNR/SSIM agree with pyiqa and with scikit-image on the same frames."""

import numpy as np
import pyiqa
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vsr_core.metrics import psnr, ssim


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 3, 3, 48, 56, generator=g) * 2 - 1
    noisy = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(-1, 1)
    return noisy, gt


def _frames(video):  # [1,3,T,H,W] -> [T,3,H,W] in [0,1]
    return video[0].permute(1, 0, 2, 3).add(1).div(2)


def test_psnr_matches_skimage_and_pyiqa(pair):
    out, gt = pair
    ours = psnr(out, gt).item()
    sk = np.mean(
        [
            peak_signal_noise_ratio(g.numpy().astype(np.float64), o.numpy().astype(np.float64), data_range=1.0)
            for o, g in zip(_frames(out), _frames(gt), strict=True)
        ]
    )
    iqa = pyiqa.create_metric("psnr", test_y_channel=False, device="cpu")(_frames(out), _frames(gt)).mean().item()
    assert ours == pytest.approx(sk, abs=1e-3)
    assert ours == pytest.approx(iqa, abs=1e-3)


def test_psnr_y_channel_and_crop_match_pyiqa(pair):
    out, gt = pair
    ours = psnr(out, gt, y_channel=True, crop_border=4).item()
    iqa = (
        pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", crop_border=4, device="cpu")(
            _frames(out), _frames(gt)
        )
        .mean()
        .item()
    )
    assert ours == pytest.approx(iqa, abs=1e-2)


def test_ssim_matches_skimage_and_pyiqa(pair):
    out, gt = pair
    ours = ssim(out, gt).item()
    sk = np.mean(
        [
            structural_similarity(
                g.permute(1, 2, 0).double().numpy(),
                o.permute(1, 2, 0).double().numpy(),
                data_range=1.0,
                channel_axis=2,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for o, g in zip(_frames(out), _frames(gt), strict=True)
        ]
    )
    iqa = pyiqa.create_metric("ssim", test_y_channel=False, device="cpu")(_frames(out), _frames(gt)).mean().item()
    assert ours == pytest.approx(sk, abs=2e-3)
    assert ours == pytest.approx(iqa, abs=5e-3)
