"""The frequency-domain update rule (Eq. 13-14), checked by construction and against numpy's FFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pssr.frequency import butterworth_lowpass, frequency_update, rgb_to_yuv, split_luminance, yuv_to_rgb


def _video(seed: int, smooth: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 2, 16, 20, generator=g, dtype=torch.float64) * 1.6 - 0.8
    if smooth:  # only very low frequencies
        x = torch.nn.functional.avg_pool2d(x.flatten(0, 2).unsqueeze(1), 9, 1, 4, count_include_pad=False).reshape(
            x.shape
        )
    return x


def _numpy_lowpass(y: np.ndarray, cutoff: float, order: int) -> np.ndarray:
    """The Butterworth low-pass written independently: radial frequency from numpy's fftfreq."""
    h, w = y.shape[-2:]
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    gain = 1.0 / (1.0 + (np.sqrt(fy**2 + fx**2) / cutoff) ** (2 * order))
    return np.real(np.fft.ifft2(np.fft.fft2(y) * gain))


def _luma01(video: torch.Tensor) -> np.ndarray:  # BT.601 luminance of [0, 1] pixels, written out
    v = ((video + 1) / 2).numpy()
    return 0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]


def test_yuv_is_bt601_and_its_inverse_is_exact():
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1)
    torch.testing.assert_close(rgb_to_yuv(red).flatten(), torch.tensor([0.299, -0.14713, 0.615], dtype=torch.float64))
    x = _video(0)
    torch.testing.assert_close(yuv_to_rgb(rgb_to_yuv(x)), x, rtol=0, atol=1e-12)


def test_butterworth_gains_by_hand():
    gain = butterworth_lowpass(8, 10, cutoff=0.2, order=2)
    assert gain[0, 0] == 1.0  # DC passes
    # fftfreq(10)[2] = 0.2 cycles/pixel, exactly the cut-off: 1 / (1 + 1)
    torch.testing.assert_close(gain[0, 2], torch.tensor(0.5, dtype=torch.float64))
    # (f_y, f_x) = (0.125, 0.3): r^2 = 0.105625; (r / 0.2)^4 = (0.105625 / 0.04)^2
    torch.testing.assert_close(gain[1, 3], torch.tensor(1 / (1 + (0.105625 / 0.04) ** 2), dtype=torch.float64))
    assert gain[4, 5] < 0.01  # Nyquist is removed
    low, high = split_luminance(torch.ones(3, 8, 10, dtype=torch.float64), gain)
    torch.testing.assert_close(low, torch.ones(3, 8, 10, dtype=torch.float64))  # a constant is all low frequency
    assert high.abs().max() < 1e-12


@pytest.mark.parametrize("alpha", [0.6, 0.25, 1.0])
def test_output_luminance_is_lowpass_of_x_t_plus_alpha_times_the_eq13_blend(alpha):
    x_t, x_new = _video(1), _video(2)
    out = frequency_update(x_t, x_new, alpha, cutoff=0.2, order=2, border=0, eps=1e-6)
    y, y_new, y_out = _luma01(x_t), _luma01(x_new), _luma01(out)
    low = _numpy_lowpass(y, 0.2, 2)
    high, high_new = y - low, y_new - _numpy_lowpass(y_new, 0.2, 2)
    w = np.abs(high_new) / (np.abs(high) + np.abs(high_new) + 1e-6)  # Eq. 13
    blend = w * high_new + (1 - w) * high
    np.testing.assert_allclose(y_out - alpha * blend, low, atol=1e-9)  # what remains is x_t's low-pass
    # chrominance untouched: U and V of the output are those of x_t
    torch.testing.assert_close(rgb_to_yuv(out)[:, 1:], rgb_to_yuv(x_t)[:, 1:], rtol=0, atol=1e-9)


@pytest.mark.parametrize("alpha", [0.6, 0.25])
def test_alpha_on_the_drafts_share_only(alpha):
    """``alpha_scales="draft"``: ``Y_H <- alpha w Y~_H + (1 - alpha w) Y_H``; alpha 0 keeps x_t, alpha 1 is Eq. 14."""
    x_t, x_new = _video(8), _video(9)
    out = frequency_update(x_t, x_new, alpha, border=0, alpha_scales="draft")
    y, y_new = _luma01(x_t), _luma01(x_new)
    low = _numpy_lowpass(y, 0.2, 2)
    high, high_new = y - low, y_new - _numpy_lowpass(y_new, 0.2, 2)
    w = np.abs(high_new) / (np.abs(high) + np.abs(high_new) + 1e-6)
    np.testing.assert_allclose(_luma01(out) - low, alpha * w * high_new + (1 - alpha * w) * high, atol=1e-9)
    torch.testing.assert_close(rgb_to_yuv(out)[:, 1:], rgb_to_yuv(x_t)[:, 1:], rtol=0, atol=1e-9)
    torch.testing.assert_close(
        frequency_update(x_t, x_new, 0.0, border=0, alpha_scales="draft"), x_t, rtol=0, atol=1e-9
    )
    torch.testing.assert_close(
        frequency_update(x_t, x_new, 1.0, border=0, alpha_scales="draft"),
        frequency_update(x_t, x_new, 1.0, border=0, alpha_scales="blend"),
        rtol=0,
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="alpha_scales"):
        frequency_update(x_t, x_new, alpha, alpha_scales="both")


def test_alpha_one_with_the_same_prediction_returns_x_t():
    x_t = _video(3)
    torch.testing.assert_close(frequency_update(x_t, x_t.clone(), 1.0, border=0), x_t, rtol=0, atol=1e-9)
    # alpha < 1 damps x_t's own high frequencies by alpha (Eq. 14) and keeps its low ones
    damped = frequency_update(x_t, x_t.clone(), 0.5, border=0)
    y, y_d = _luma01(x_t), _luma01(damped)
    low = _numpy_lowpass(y, 0.2, 2)
    np.testing.assert_allclose(y_d - low, 0.5 * (y - low), atol=1e-9)


def test_high_frequencies_come_from_the_prediction_where_x_t_has_none():
    flat = torch.zeros(1, 3, 1, 16, 16, dtype=torch.float64) + 0.1
    detail = flat + 0.2 * (torch.arange(16, dtype=torch.float64) % 2).view(1, 1, 1, 1, 16)  # Nyquist stripes
    out = frequency_update(flat, detail, 0.6, border=0)
    y_new = _luma01(detail)
    high_new = y_new - _numpy_lowpass(y_new, 0.2, 2)
    w = np.abs(high_new) / (np.abs(high_new) + 1e-6)
    np.testing.assert_allclose(_luma01(out) - _luma01(flat), 0.6 * w * high_new, atol=1e-9)  # added, not subtracted
    assert np.abs(_luma01(out) - _luma01(flat)).max() > 0.02


def test_the_border_keeps_x_t_luminance():
    x_t, x_new = _video(4), _video(5)
    out = frequency_update(x_t, x_new, 0.6, border=2)
    inner = frequency_update(x_t, x_new, 0.6, border=0)
    y_t, y_out, y_inner = _luma01(x_t), _luma01(out), _luma01(inner)
    ring = np.ones(y_t.shape[-2:], dtype=bool)
    ring[2:-2, 2:-2] = False
    np.testing.assert_allclose(y_out[..., ring], y_t[..., ring], atol=1e-9)
    np.testing.assert_allclose(y_out[..., ~ring], y_inner[..., ~ring], atol=1e-9)


def test_low_frequencies_of_the_prediction_never_enter():
    x_t, x_smooth = _video(6), _video(7, smooth=True) + 0.3  # a prediction that differs only in low frequencies
    out = frequency_update(x_t, x_smooth, 1.0, border=0)
    low_out = _numpy_lowpass(_luma01(out), 0.2, 2)
    np.testing.assert_allclose(low_out, _numpy_lowpass(_luma01(x_t), 0.2, 2), atol=0.02)
