"""The DEM (Eq. 2): the release's frame sampling, the stand-ins, CLIP-IQA's missing file, never in checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ultravsr import UltraVSR
from ultravsr.dem import DegradationEstimator, TinyQualityNet, scored_frames
from ultravsr.options import DEMOptions
from vsr_core.errors import PretrainedError


def test_scored_frames_follow_the_release():
    # torch.linspace(0, tn - 1, steps=tn // 10).long()[:5]
    assert scored_frames(100).tolist() == [0, 11, 22, 33, 44]
    assert scored_frames(25).tolist() == [0, 24]
    assert scored_frames(5).tolist() == [0]  # the release averages no frame here (NaN); one frame is scored
    assert scored_frames(60, frame_step=10, max_frames=3).tolist() == [0, 11, 23]


def test_constant_dem():
    estimator = DegradationEstimator(DEMOptions(kind="constant", constant=0.37))
    assert torch.equal(estimator(torch.zeros(3, 3, 4, 8, 8)), torch.full((3,), 0.37))


def test_tiny_dem_averages_the_scored_frames_in_0_1_pixels():
    estimator = DegradationEstimator(DEMOptions(kind="tiny", frame_step=2, max_frames=2))
    video = torch.rand(2, 3, 6, 16, 16) * 2 - 1
    d = estimator(video)
    net = TinyQualityNet()
    frames = [0, 2]  # linspace(0, 5, 3).long()[:2]
    expected = torch.stack([net((video[b, :, frames].transpose(0, 1) + 1) / 2).mean() for b in range(2)])
    torch.testing.assert_close(d, expected)
    assert ((d > 0) & (d < 1)).all() and d[0] != d[1]  # content-dependent
    torch.testing.assert_close(DegradationEstimator(DEMOptions(kind="tiny", frame_step=2, max_frames=2))(video), d)


def test_missing_clipiqa_weights_name_the_file_and_the_fallback(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    estimator = DegradationEstimator(DEMOptions(kind="clipiqa"))
    with pytest.raises(PretrainedError) as error:
        estimator(torch.zeros(1, 3, 2, 8, 8))
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "hub" / "clip" / "RN50.pt") in message
    assert "dem=constant" in message
    # Restoring with the documented fallback works on the same method.
    method = UltraVSR(dem={"kind": "clipiqa"}).eval()
    with pytest.raises(PretrainedError, match="RN50.pt"):
        method.restore(torch.zeros(1, 3, 2, 8, 8))
    assert method.restore(torch.zeros(1, 3, 2, 8, 8), dem="constant").shape == (1, 3, 2, 32, 32)


def test_clipiqa_dem_is_clip_rn50_sized():
    # Table 3: 1906M (row B, with DRS) - 1804M (row A) = the DEM, CLIP RN50 (102.0M).
    count = DegradationEstimator(DEMOptions(kind="clipiqa")).parameter_count()
    assert abs(count / 1e6 - 102.0) < 0.1


def test_the_dem_never_lands_in_the_state_dict():
    method = UltraVSR().eval()
    before = set(method.state_dict())
    method.restore(torch.rand(1, 3, 2, 8, 8) * 2 - 1)  # builds the tiny DEM
    network = method.estimator()._network[0]
    assert isinstance(network, TinyQualityNet)
    assert set(method.state_dict()) == before
    assert not {id(p) for p in network.parameters()} & {id(p) for p in method.parameters()}
