"""Temporal shift by value: frame i receives exactly the channels of frame i-1 / i+1, zeros at the ends."""

from __future__ import annotations

import pytest
import torch

from vsr_core.nn.reshape import frames_to_video, video_to_frames
from vsr_core.nn.shift import TemporalShift, shift_frames, temporal_shift

B, T, H, W = 2, 5, 2, 3


def _video(channels: int) -> torch.Tensor:
    # Value 1000*b + 100*t + c + 1 at every pixel, plus a pixel term: nonzero, so a zero can only come from padding.
    b = torch.arange(B).view(B, 1, 1, 1, 1)
    c = torch.arange(channels).view(1, channels, 1, 1, 1)
    t = torch.arange(T).view(1, 1, T, 1, 1)
    pixel = torch.arange(H * W).view(1, 1, 1, H, W) / 100
    return (1000 * b + 100 * t + c + 1 + pixel).float()


def _expected(video: torch.Tensor, source: dict[int, int], unshifted: str = "keep") -> torch.Tensor:
    """Loop reference: channel c of frame t comes from frame t + source[c] (0 if outside); others kept/zeroed."""
    out = torch.zeros_like(video)
    for t in range(T):
        for c in range(video.shape[1]):
            offset = source.get(c)
            if offset is None:
                if unshifted == "keep":
                    out[:, c, t] = video[:, c, t]
            elif 0 <= t + offset < T:
                out[:, c, t] = video[:, c, t + offset]
    return out


def test_ultravsr_thirds_both_directions() -> None:
    video = _video(6)
    out = temporal_shift(video, fold_div=3, direction="both")
    # Eq. 5: first third from frame i-1, last third from frame i+1, middle third unchanged.
    assert torch.equal(out, _expected(video, {0: -1, 1: -1, 4: +1, 5: +1}))
    assert not out[:, :2, 0].any() and not out[:, 4:, T - 1].any()
    assert torch.equal(out[:, :2, 3], video[:, :2, 2]) and torch.equal(out[:, 4:, 3], video[:, 4:, 4])


def test_ultravsr_release_zeroes_the_middle_third() -> None:
    video = _video(6)
    out = temporal_shift(video, fold_div=3, direction="both", unshifted="zero")
    # RTSConvBlock.shift of the release: zeros_like(x), then only the two shifted thirds are written.
    release = torch.zeros_like(video)
    release[:, :2, 1:] = video[:, :2, :-1]
    release[:, -2:, :-1] = video[:, -2:, 1:]
    assert torch.equal(out, release)


def test_diffvsr_fold_half_right() -> None:
    video = _video(4)
    out = temporal_shift(video, fold_div=2, direction="right")
    assert torch.equal(out, _expected(video, {0: -1, 1: -1}))
    # DiffVSR's VersatileSelfAttention.temporal_shift on keys/values [(b f), d, c]: channels last.
    tokens = video.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, 4)
    shifted = temporal_shift(tokens, fold_div=2, direction="right", num_frames=T, channel_dim=-1)
    release = torch.zeros_like(tokens).reshape(B, T, H * W, 4)
    clips = tokens.reshape(B, T, H * W, 4)
    release[:, 1:, :, :2] = clips[:, :-1, :, :2]
    release[:, :, :, 2:] = clips[:, :, :, 2:]
    assert torch.equal(shifted, release.reshape(B * T, H * W, 4))


def test_left_and_uneven_folds() -> None:
    video = _video(5)
    assert torch.equal(temporal_shift(video, fold_div=2, direction="left"), _expected(video, {0: 1, 1: 1}))
    # 7 channels, fold 7 // 3 = 2: channels 0-1 from t-1, 5-6 from t+1, 2-4 kept.
    video7 = _video(7)
    out = temporal_shift(video7, fold_div=3, direction="both")
    assert torch.equal(out, _expected(video7, {0: -1, 1: -1, 5: 1, 6: 1}))


def test_frames_layout_matches_video_layout() -> None:
    video = _video(6)
    frames = temporal_shift(video_to_frames(video), fold_div=3, direction="both", num_frames=T)
    assert torch.equal(frames_to_video(frames, T), temporal_shift(video, fold_div=3, direction="both"))


def test_shift_frames_whole_frames() -> None:
    video = _video(2)
    assert torch.equal(shift_frames(video, 1, time_dim=2)[:, :, 1:], video[:, :, :-1])
    assert not shift_frames(video, 1, time_dim=2)[:, :, 0].any()
    assert torch.equal(shift_frames(video, -2, time_dim=2)[:, :, :-2], video[:, :, 2:])
    assert not shift_frames(video, -2, time_dim=2)[:, :, -2:].any()
    assert not shift_frames(video, T, time_dim=2).any()


def test_gradient_flows_back_along_the_shift() -> None:
    video = _video(3).requires_grad_(True)
    out = temporal_shift(video, fold_div=3, direction="both")
    out[:, 0, 2].sum().backward()  # channel 0 of frame 2 is channel 0 of frame 1
    grad = video.grad
    assert grad[:, 0, 1].eq(1).all() and grad.sum() == B * H * W


def test_module_and_bad_options() -> None:
    video = _video(6)
    module = TemporalShift(fold_div=3, direction="both")
    assert torch.equal(module(video), temporal_shift(video, fold_div=3, direction="both"))
    assert not list(module.parameters())
    with pytest.raises(ValueError, match="does not fit 2 channels"):
        temporal_shift(_video(2), fold_div=3, direction="right")
    with pytest.raises(ValueError, match="direction must be"):
        temporal_shift(video, fold_div=2, direction="up")
    with pytest.raises(ValueError, match="num_frames is needed"):
        temporal_shift(video_to_frames(video), fold_div=2, direction="right")
