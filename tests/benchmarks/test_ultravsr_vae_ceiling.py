"""``benchmarks/ultravsr_vae_ceiling.py``: the rows it prints, by value on a hand-made clip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F


class OneClip:
    """The little of a data module the ceiling reads: one validation batch, x4."""

    scale = 4

    def __init__(self, hq: torch.Tensor) -> None:
        b, c, t, h, w = hq.shape
        lq = F.avg_pool2d(hq.transpose(1, 2).reshape(b * t, c, h, w), 4).reshape(b, t, c, h // 4, w // 4)
        self.batch = {"hq": hq, "lq": lq.transpose(1, 2)}

    def val_dataloader(self):
        return [self.batch]

    def on_after_batch_transfer(self, batch, index):
        return batch


def test_rows_are_bicubic_the_raw_reconstruction_and_its_low_band_from_bicubic(benchmark_script):
    ceiling = benchmark_script("ultravsr_vae_ceiling")
    torch.manual_seed(0)
    hq = torch.rand(1, 3, 2, 32, 32) - 0.5  # inside [-1, 1] after a 0.1 shift: the clamp does not bite
    data = OneClip(hq)

    shifted = ceiling.reconstruction_ceiling(lambda x: x + 0.1, data)
    # A shift of 0.1 in [-1, 1] is 0.05 in [0, 1]: PSNR = 10 log10(1 / 0.05^2) = 26.02 dB, by hand.
    assert shifted["D(E(x))"] == pytest.approx([10 * math.log10(1 / 0.05**2)], abs=1e-3)
    exact = ceiling.reconstruction_ceiling(lambda x: x, data)
    assert exact["D(E(x))"] == pytest.approx([100.0])  # the metric's floor on the MSE (1e-10)
    # The colour fix takes the low band from bicubic: a constant colour error of the decoder is gone entirely,
    # and a perfect decoder is no longer perfect (bicubic's low band is not the truth's).
    assert shifted["D(E(x)) + wavelet colour fix"] == pytest.approx(exact["D(E(x)) + wavelet colour fix"], abs=1e-3)
    assert exact["D(E(x)) + wavelet colour fix"][0] < 60.0
    assert shifted["bicubic"] == exact["bicubic"] and shifted["bicubic"][0] < exact["D(E(x)) + wavelet colour fix"][0]
