"""FrameAssembler: the temporal cross-fade of windows, band by band, into finished frames (by value)."""

import torch

from vsr_core.data.video_io import tensor_to_frames
from vsr_core.inference import FrameAssembler


def bands_of(video, splits):
    """``[3, L, H, W]`` cut into row bands at ``splits``."""
    edges = [0, *splits, video.shape[2]]
    return [(a, video[:, :, a:b]) for a, b in zip(edges, edges[1:])]


def test_overlapping_windows_are_cross_faded_and_frames_come_out_when_final():
    torch.manual_seed(0)
    first, second = torch.rand(3, 6, 10, 7) * 2 - 1, torch.rand(3, 5, 10, 7) * 2 - 1
    w1, w2 = torch.tensor([1.0, 1, 1, 1, 0.6, 0.3]), torch.tensor([0.4, 0.7, 1, 1, 1])
    # windows: frames 0-5 and 4-8 of a 9-frame video (frames 4 and 5 shared)
    assembler = FrameAssembler(9, 10, 6)  # output width 6: the 7th column is padding
    out1 = assembler.add_window(0, w1, 4, bands_of(first, [3, 8]))
    assert len(out1) == 4  # frames 0-3 are final, 4-5 wait for the second window
    out2 = assembler.add_window(4, w2, None, bands_of(second, [5]))
    assert len(out2) == 5
    # independent expectation: normalised weighted sums over the full frames
    expected = torch.zeros(3, 9, 10, 6)
    weight = torch.zeros(9)
    expected[:, 0:6] += first[..., :6] * w1[None, :, None, None]
    weight[0:6] += w1
    expected[:, 4:9] += second[..., :6] * w2[None, :, None, None]
    weight[4:9] += w2
    expected = expected / weight[None, :, None, None]
    assert torch.equal(torch.stack(out1 + out2), tensor_to_frames(expected))


def test_float_frames_are_not_rounded():
    video = torch.rand(3, 3, 4, 4) * 2 - 1
    assembler = FrameAssembler(2, 4, 4, as_uint8=False)  # the third frame is padding past the end
    out = assembler.add_window(0, torch.ones(3), None, bands_of(video, [1]))
    assert len(out) == 2 and torch.allclose(torch.stack(out, dim=1), video[:, :2], atol=1e-7)
