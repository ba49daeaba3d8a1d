"""DOVER: view sampling values, fusion, strict DOVER.pth loading, SKIPPED/bad-file handling, suite wiring.

The architecture is fixed (Swin-T + ConvNeXt-T, ~56M parameters), so forward passes use a small
view setting (2x2 fragments of 32 px, 4-frame clips) and one random-weight ``DOVER.pth`` shared by
the module. Equivalence with the released DOVER code is checked outside the test suite (see
docs/metrics.md): it needs their repository.
"""

import math

import pytest
import torch
from torch import nn

from vsr_core.errors import PretrainedError
from vsr_core.metrics import MetricSuite
from vsr_core.metrics import suite as suite_module
from vsr_core.metrics.dover import (
    DoverModel,
    ViewConfig,
    create_dover_metric,
    fuse_scores,
    load_dover_state,
    sample_views,
    segment_frame_indices,
    technical_view,
)

SMALL = ViewConfig(grid=2, patch=32, clip_len=4, interval=2, num_clips=2, size=64)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A directory holding a random-weight DOVER.pth of our model (every table and scale non-trivial)."""
    torch.manual_seed(0)
    model = DoverModel()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias_table" in name or name.endswith("gamma"):
                p.normal_(0, 0.05)
    directory = tmp_path_factory.mktemp("weights")
    torch.save(model.state_dict(), directory / "DOVER.pth")
    return directory


@pytest.fixture(scope="module")
def metric(weights_dir):
    return create_dover_metric(weights_dir, views=SMALL)


def _clip(seed, t=6, h=48, w=64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, h, w, generator=g) * 2 - 1


def test_state_dict_has_the_released_names_and_shapes():
    sd = DoverModel().state_dict()
    assert len(sd) == 381  # as the released DOVER model built from dover.yml
    assert tuple(sd["technical_backbone.patch_embed.proj.weight"].shape) == (96, 3, 2, 4, 4)
    # 8x7x7 windows: (2*8-1)*(2*7-1)^2 = 2535 bias rows per head; gated tables in stages 1-3 only.
    assert tuple(sd["technical_backbone.layers.0.blocks.1.attn.fragment_position_bias_table"].shape) == (2535, 3)
    assert "technical_backbone.layers.3.blocks.0.attn.fragment_position_bias_table" not in sd
    assert tuple(sd["technical_backbone.layers.2.downsample.reduction.weight"].shape) == (768, 1536)
    # Inflated ConvNeXt: temporal kernel lengths cycle 1,3,1.
    assert tuple(sd["aesthetic_backbone.stages.2.0.dwconv.weight"].shape) == (384, 1, 1, 7, 7)
    assert tuple(sd["aesthetic_backbone.stages.2.4.dwconv.weight"].shape) == (384, 1, 3, 7, 7)
    assert tuple(sd["technical_head.fc_hid.weight"].shape) == (64, 768, 1, 1, 1)
    assert tuple(sd["aesthetic_head.fc_last.weight"].shape) == (1, 64, 1, 1, 1)
    index = sd["technical_backbone.layers.0.blocks.0.attn.relative_position_index"]
    assert index.shape == (392, 392) and index.min() == 0 and index.max() == 2534 and index[0, 0] == 1267


def test_frame_indices_follow_dovers_sampler():
    g = torch.Generator().manual_seed(0)
    # 20 frames, 3 clips of 32 frames 2 apart: segments start at 0, 6, 12 and wrap around the clip.
    idx = segment_frame_indices(20, 3, 32, 2, g)
    assert idx[:12].tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 0, 2]
    assert idx[32:35].tolist() == [6, 8, 10] and idx[64:67].tolist() == [12, 14, 16]
    # 300 frames: segments of 100 > 64, so each clip starts at a random offset in [0, 36).
    idx = segment_frame_indices(300, 3, 32, 2, g).view(3, 32)
    assert (idx.diff(dim=1) == 2).all()
    for i, start in enumerate(idx[:, 0].tolist()):
        assert 100 * i <= start < 100 * i + 36
    # Aesthetic: 32 single frames, one per segment; 64 frames -> every other frame, no jitter.
    assert segment_frame_indices(64, 32, 1, 2, g).tolist() == list(range(0, 64, 2))


def _coordinate_frames(t, h, w):
    """[3,T,H,W] frames whose channels hold the row, the column and the frame number."""
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(t, h, w)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand(t, h, w)
    ts = torch.arange(t, dtype=torch.float32).view(t, 1, 1).expand(t, h, w)
    return torch.stack([ys, xs, ts])


def test_fragments_on_a_224_frame_are_the_exact_7x7_grid():
    cfg = ViewConfig(clip_len=2, num_clips=1)
    out = technical_view(_coordinate_frames(2, 224, 224), cfg, torch.Generator().manual_seed(0))
    assert out.shape == (3, 2, 224, 224)
    # Cells are exactly 32 px: no room for jitter, the view is the frame itself.
    assert torch.equal(out, _coordinate_frames(2, 224, 224))


def test_fragments_jitter_inside_their_cells_per_clip():
    cfg = ViewConfig(clip_len=2, num_clips=2)
    frames = _coordinate_frames(4, 300, 250)
    out = technical_view(frames, cfg, torch.Generator().manual_seed(0))
    starts = set()
    for t in range(4):
        for i in range(7):
            for j in range(7):
                patch = out[:, t, 32 * i : 32 * i + 32, 32 * j : 32 * j + 32]
                y0, x0 = int(patch[0, 0, 0]), int(patch[1, 0, 0])
                # A contiguous 32x32 crop of frame t ...
                assert torch.equal(patch[0], (y0 + torch.arange(32.0)).view(32, 1).expand(32, 32))
                assert torch.equal(patch[1], (x0 + torch.arange(32.0)).view(1, 32).expand(32, 32))
                assert (patch[2] == t).all()
                # ... starting in cell (i, j): 300 // 7 = 42 px rows (jitter < 10), 250 // 7 = 35 px columns (< 3).
                assert 0 <= y0 - 42 * i < 10 and 0 <= x0 - 35 * j < 3
                starts.add((t // 2, i, j, y0, x0))
    # Same positions within a clip (frames 0-1, 2-3), fresh ones for the next clip.
    assert len({s for s in starts if s[0] == 0}) == 49 and len(starts) > 49


def test_small_frames_are_upscaled_with_the_grid_of_the_original_size():
    frames = _coordinate_frames(2, 112, 150)
    out = technical_view(frames, ViewConfig(clip_len=2, num_clips=1), torch.Generator().manual_seed(0))
    assert out.shape == (3, 2, 224, 224)
    # 112/224 = 0.5: frames are upscaled x2 (bilinear, truncated to levels) ...
    up = (torch.nn.functional.interpolate(frames / 255.0, scale_factor=2.0, mode="bilinear") * 255.0).floor()
    assert up.shape[-2:] == (224, 300)
    # ... but cells stay 112 // 7 = 16 and 150 // 7 = 21 px from the top left, capped at size - 32, without jitter.
    rows, cols = [0, 16, 32, 48, 64, 80, 80], [0, 21, 42, 63, 84, 105, 118]
    for i, y0 in enumerate(rows):
        for j, x0 in enumerate(cols):
            assert torch.equal(
                out[:, :, 32 * i : 32 * i + 32, 32 * j : 32 * j + 32], up[:, :, y0 : y0 + 32, x0 : x0 + 32]
            )


def test_views_are_normalised_and_seeded():
    video = _clip(1, t=8)[0]
    technical, aesthetic = sample_views(video, SMALL, seed=0)
    assert technical.shape == (2, 3, 4, 64, 64) and aesthetic.shape == (1, 3, 4, 64, 64)
    again = sample_views(video, SMALL, seed=0)
    assert torch.equal(technical, again[0]) and torch.equal(aesthetic, again[1])
    # A black clip maps to -mean/std of ImageNet (0-255 constants).
    black, _ = sample_views(torch.full((3, 4, 64, 64), -1.0), SMALL)
    assert black[0, :, 0, 0, 0].tolist() == pytest.approx([-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375])


def test_fusion_matches_dovers_constants():
    assert fuse_scores(0.1107, -0.08285) == pytest.approx(0.5)  # both branches at their training mean
    # One technical std above the mean: sigmoid(0.6104); one aesthetic std below: sigmoid(-0.3896).
    assert fuse_scores(0.1107 + 0.07355, -0.08285) == pytest.approx(1 / (1 + math.exp(-0.6104)))
    assert fuse_scores(0.1107, -0.08285 - 0.03774) == pytest.approx(1 / (1 + math.exp(0.3896)))


def test_score_is_finite_deterministic_and_fused(metric):
    clip = _clip(2)
    first, second = metric(clip), metric(clip)
    assert first == second
    assert set(first) == {"dover", "dover_technical", "dover_aesthetic"}
    assert all(math.isfinite(v) for v in first.values())
    assert 0 < first["dover"] < 1
    assert first["dover"] == pytest.approx(fuse_scores(first["dover_technical"], first["dover_aesthetic"]))
    assert metric(_clip(3))["dover_technical"] != first["dover_technical"]


def test_missing_weights_are_skipped_with_the_path(tmp_path):
    suite = MetricSuite(["flicker", "dover"], weights_dir=tmp_path)
    assert suite.metrics == ["flicker"]
    assert suite.report.skipped["dover"] == f"weights not found: {tmp_path}/DOVER.pth"


def test_wrong_file_names_the_first_key(tmp_path):
    torch.save({"head.weight": torch.zeros(1)}, tmp_path / "DOVER.pth")
    with pytest.raises(PretrainedError) as err:
        MetricSuite(["dover"], weights_dir=tmp_path)
    message = str(err.value)
    assert (
        message
        == f"{tmp_path}/DOVER.pth is not DOVER.pth: missing key technical_backbone.patch_embed.proj.weight (381 missing, 1 unexpected)"
    )
    (tmp_path / "DOVER.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match=r"DOVER.pth: cannot read DOVER weights \(") as err:
        MetricSuite(["dover"], weights_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_unexpected_and_misshaped_keys_are_named(tmp_path):
    model = nn.Linear(2, 2)
    torch.save({**model.state_dict(), "extra": torch.zeros(1)}, tmp_path / "a.pth")
    with pytest.raises(PretrainedError, match=r"unexpected key extra \(0 missing, 1 unexpected\)$"):
        load_dover_state(model, tmp_path / "a.pth")
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.zeros(3)}, tmp_path / "b.pth")
    with pytest.raises(PretrainedError, match=r"bias has shape \(3,\), expected \(2,\)$"):
        load_dover_state(model, tmp_path / "b.pth")


def test_suite_reports_overall_and_branch_scores(weights_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(suite_module, "create_dover_metric", lambda d, dev: create_dover_metric(d, dev, views=SMALL))
    suite = MetricSuite(["flicker", "dover"], weights_dir=weights_dir)
    row = suite.score("a", _clip(2))
    assert list(row) == ["flicker", "dover", "dover_technical", "dover_aesthetic"]
    assert row["dover"] == pytest.approx(fuse_scores(row["dover_technical"], row["dover_aesthetic"]))
    csv_path, _ = suite.report.write(tmp_path)
    assert csv_path.read_text().splitlines()[0] == "clip,flicker,dover,dover_technical,dover_aesthetic"
