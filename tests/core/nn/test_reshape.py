"""Layout reshapes, checked element by element against the index formulas in the module docstring."""

from __future__ import annotations

import pytest
import torch

from vsr_core.nn.reshape import (
    frames_to_sequence,
    frames_to_video,
    repeat_per_frame,
    sequence_to_frames,
    sequence_to_video,
    video_to_frames,
    video_to_sequence,
)

B, C, T, H, W = 2, 3, 4, 2, 5


def _video() -> torch.Tensor:
    # Every element distinct, so a wrong permutation cannot go unnoticed.
    return torch.randperm(B * C * T * H * W).float().reshape(B, C, T, H, W)


def test_frames_layout_is_clip_major() -> None:
    video = _video()
    frames = video_to_frames(video)
    assert frames.shape == (B * T, C, H, W)
    for b in range(B):
        for t in range(T):
            assert torch.equal(frames[b * T + t], video[b, :, t])
    assert torch.equal(frames_to_video(frames, T), video)


def test_sequence_layout_is_one_sequence_per_pixel() -> None:
    video = _video()
    sequence = video_to_sequence(video)
    assert sequence.shape == (B * H * W, T, C)
    for b in range(B):
        for h in range(H):
            for w in range(W):
                # sequence[row][t, c] == video[b, c, t, h, w]
                assert torch.equal(sequence[(b * H + h) * W + w], video[b, :, :, h, w].T)
    assert torch.equal(sequence_to_video(sequence, H, W), video)


def test_frames_and_sequence_round_trip() -> None:
    video = _video()
    frames = video_to_frames(video)
    sequence = frames_to_sequence(frames, T)
    assert torch.equal(sequence, video_to_sequence(video))
    assert torch.equal(sequence_to_frames(sequence, H, W), frames)


def test_repeat_per_frame_matches_frame_rows() -> None:
    timesteps = torch.tensor([7, 11])
    assert repeat_per_frame(timesteps, 3).tolist() == [7, 7, 7, 11, 11, 11]
    text = torch.arange(2 * 2 * 1.0).reshape(2, 2, 1)
    per_frame = repeat_per_frame(text, 3)
    assert per_frame.shape == (6, 2, 1) and torch.equal(per_frame[4], text[1])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="does not split into clips of num_frames=4"):
        frames_to_video(torch.zeros(6, 3, 2, 2), 4)
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        video_to_frames(torch.zeros(6, 3, 2, 2))
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        frames_to_video(torch.zeros(6, 3, 2, 2), 0)
