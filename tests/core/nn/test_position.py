"""Frame position encodings against the formula of Vaswani et al. (2017, sec. 3.5)."""

from __future__ import annotations

import math

import pytest
import torch

from vsr_core.nn.position import FramePositionEncoding, sinusoidal_frame_encoding


@pytest.mark.parametrize("dim", [6, 5])
def test_sinusoidal_values(dim: int) -> None:
    pe = sinusoidal_frame_encoding(4, dim)
    assert pe.shape == (4, dim)
    for t in range(4):
        for j in range(dim):
            i = j // 2
            angle = t / 10000 ** (2 * i / dim)
            assert pe[t, j].item() == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)


def test_encoding_is_added_per_frame() -> None:
    sequence = torch.randn(3, 4, 6)
    out = FramePositionEncoding(6)(sequence)
    assert torch.allclose(out - sequence, sinusoidal_frame_encoding(4, 6).expand(3, 4, 6), atol=1e-6)


def test_learned_table_starts_at_zero_and_is_bounded() -> None:
    encoding = FramePositionEncoding(6, "learned", max_frames=4)
    sequence = torch.randn(2, 3, 6)
    assert torch.equal(encoding(sequence), sequence)
    with torch.no_grad():
        encoding.table[1] = 1.0
    assert torch.equal(encoding(sequence)[:, 1], sequence[:, 1] + 1) and torch.equal(
        encoding(sequence)[:, 0], sequence[:, 0]
    )
    with pytest.raises(ValueError, match="5 frames exceed the learned position table of 4"):
        encoding(torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match="'sinusoidal' or 'learned'"):
        FramePositionEncoding(6, "rope")
