"""The frequency-domain update rule (PS-SR Sec. 3.5, Eq. 13-14).

Given the current video ``x_t`` and the draft's new prediction ``x~_{t-1}`` (both ``[B, 3, T, H, W]``
in ``[-1, 1]``), only the luminance changes, and only in its high frequencies:

    Y_H = H(Y),  H = 1 - Butterworth low-pass (per frame, 2D FFT)
    w = |Y~_H| / (|Y_H| + |Y~_H| + eps)                                   (Eq. 13)
    Y_H <- alpha (w Y~_H + (1 - w) Y_H)                                    (Eq. 14)
    x_{t-1} = RGB(low-pass(Y of x_t) + Y_H, U and V of x_t)

``alpha_scales="blend"`` is Eq. 14 as printed and as the release's ``fuse_patch`` computes it
(``lc + alpha * (w * hs + (1 - w) * hc)``): alpha < 1 also damps ``x_t``'s own high band, by alpha at
every draft step. ``alpha_scales="draft"`` is the other reading of "alpha controls the refinement
strength": alpha scales only the draft's share, ``Y_H <- alpha w Y~_H + (1 - alpha w) Y_H``
(``= Y_H + alpha (blend - Y_H)``): alpha = 0 keeps ``x_t``, alpha = 1 is the printed equation at alpha = 1.
The paper's Tables 5 and 7 behave like this reading (alpha 0.2 stays next to T = 1; see docs/methods/pssr.md).

Release facts kept: BT.601 YUV on ``[0, 1]`` pixels, Butterworth ``1 / (1 + (r / f_c)^(2n))`` with
cut-off ``f_c = 0.20`` cycles/pixel and order ``n = 2``, ``eps = 1e-6``, and a 2-pixel border that
keeps ``x_t``'s luminance. Differences from ``inference_step_2.py`` (documented in docs/methods/pssr.md):
the frequency radius comes from ``torch.fft.fftfreq`` (DC exactly at 0; the release's
``linspace(-0.5, 0.5, W)`` grid is off by up to half a bin) and YUV -> RGB is the exact inverse matrix
(the release's rounded coefficients do not invert its forward transform exactly).
"""

from __future__ import annotations

import torch

__all__ = [
    "ALPHA_SCALES",
    "RGB_TO_YUV",
    "butterworth_lowpass",
    "frequency_update",
    "rgb_to_yuv",
    "split_luminance",
    "yuv_to_rgb",
]

#: What alpha multiplies in Eq. 14: the whole blend (as printed, the release) or only the draft's share.
ALPHA_SCALES = ("blend", "draft")

#: BT.601 analogue YUV (the release's ``rgb_to_yuv`` coefficients); rows: Y, U, V.
RGB_TO_YUV = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.14713, -0.28886, 0.436],
        [0.615, -0.51499, -0.10001],
    ],
    dtype=torch.float64,
)


def _apply(matrix: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bc...->bo...", matrix.to(device=video.device, dtype=video.dtype), video)


def rgb_to_yuv(video: torch.Tensor) -> torch.Tensor:
    """``[B, 3, ...]`` RGB -> YUV with :data:`RGB_TO_YUV` (any value range; the map is linear)."""
    return _apply(RGB_TO_YUV, video)


def yuv_to_rgb(video: torch.Tensor) -> torch.Tensor:
    """The exact inverse of :func:`rgb_to_yuv`."""
    return _apply(torch.linalg.inv(RGB_TO_YUV), video)


def butterworth_lowpass(
    height: int, width: int, cutoff: float, order: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[height, width]`` gains ``1 / (1 + (r / cutoff)^(2 order))`` in ``torch.fft.fft2``'s layout.

    ``r = sqrt(f_y^2 + f_x^2)`` in cycles per pixel (``torch.fft.fftfreq``: 0 at DC, Nyquist 0.5).
    """
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64).view(height, 1)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64).view(1, width)
    radius = torch.sqrt(fy**2 + fx**2)
    return 1.0 / (1.0 + (radius / cutoff) ** (2 * order))


def split_luminance(y: torch.Tensor, lowpass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y [..., H, W]`` -> ``(low, high)`` with ``low = ifft2(fft2(y) * lowpass)`` and ``high = y - low``."""
    spectrum = torch.fft.fft2(y.to(torch.float64))
    low = torch.fft.ifft2(spectrum * lowpass).real.to(y.dtype)
    return low, y - low


def frequency_update(
    current: torch.Tensor,
    prediction: torch.Tensor,
    alpha: float,
    cutoff: float = 0.20,
    order: int = 2,
    border: int = 2,
    eps: float = 1e-6,
    alpha_scales: str = "blend",
) -> torch.Tensor:
    """Eq. 13-14: ``x_t`` (``current``) updated with the high frequencies of ``x~_{t-1}`` (``prediction``).

    Both ``[B, 3, T, H, W]`` in ``[-1, 1]``; returns ``x_{t-1}`` ``[B, 3, T, H, W]`` (not clamped, so the
    identities below hold exactly). By construction: U and V are ``current``'s; the luminance is
    ``low-pass(Y_t) + alpha * blend``; ``alpha = 1`` with ``prediction == current`` returns ``current``.
    ``border`` pixels at each frame edge keep ``current``'s luminance (the release's hard border).
    ``alpha_scales``: ``blend`` (Eq. 14 as printed) or ``draft`` (alpha scales only ``w``; see the module doc).
    """
    if alpha_scales not in ALPHA_SCALES:
        raise ValueError(f"alpha_scales must be one of {', '.join(ALPHA_SCALES)}, got {alpha_scales!r}")
    if current.shape != prediction.shape or current.ndim != 5 or current.shape[1] != 3:
        raise ValueError(
            f"expected two videos [B, 3, T, H, W] of one shape, got {list(current.shape)}, {list(prediction.shape)}"
        )
    h, w = current.shape[-2:]
    dtype = torch.promote_types(current.dtype, torch.float32)  # bf16 videos are updated in float32
    yuv = rgb_to_yuv((current.to(dtype) + 1) / 2)  # the release works on [0, 1] pixels (eps is on that scale)
    y_new = rgb_to_yuv((prediction.to(dtype) + 1) / 2)[:, :1]
    y = yuv[:, :1]
    lowpass = butterworth_lowpass(h, w, cutoff, order, current.device)
    low, high = split_luminance(y, lowpass)
    _, high_new = split_luminance(y_new, lowpass)
    weight = high_new.abs() / (high.abs() + high_new.abs() + eps)  # Eq. 13
    if alpha_scales == "blend":
        fused = low + alpha * (weight * high_new + (1 - weight) * high)  # Eq. 14, with the low frequencies of x_t
    else:  # alpha on the draft's share only: x_t's high band is kept where the draft adds nothing
        fused = low + alpha * weight * high_new + (1 - alpha * weight) * high
    if border > 0:
        keep = torch.ones_like(fused, dtype=torch.bool)
        keep[..., border : h - border, border : w - border] = False
        fused = torch.where(keep, y, fused)
    out = yuv_to_rgb(torch.cat([fused, yuv[:, 1:]], dim=1)) * 2 - 1
    return out.to(current.dtype)
