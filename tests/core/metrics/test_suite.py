"""MetricSuite: SKIPPED entries with the exact missing file, NIQE offline, CSV/JSON reports."""

import json

import torch

from vsr_core.metrics import MetricSuite


def test_missing_weights_are_skipped_with_the_file(tmp_path):
    suite = MetricSuite(["psnr", "musiq", "niqe"], weights_dir=tmp_path)
    assert suite.report.skipped["musiq"] == f"weights not found: {tmp_path}/musiq_koniq_ckpt-e95806b9.pth"
    assert "niqe" in suite.metrics  # shipped parameters: no weights needed


def test_no_gt_skips_full_reference(tmp_path):
    suite = MetricSuite(["psnr", "flicker"], has_gt=False, weights_dir=tmp_path)
    assert suite.metrics == ["flicker"]
    assert "ground truth" in suite.report.skipped["psnr"]


def test_scores_and_reports(tmp_path):
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 3, 2, 192, 192, generator=g) * 2 - 1
    suite = MetricSuite(["psnr", "niqe", "flicker"], weights_dir=tmp_path)
    suite.score("a", gt, gt)
    suite.score("b", (gt + 0.1).clamp(-1, 1), gt)
    rows = suite.report.rows
    assert rows["a"]["psnr"] > 90 and 20 < rows["b"]["psnr"] < 30
    assert rows["a"]["niqe"] > 0
    csv_path, json_path = suite.report.write(tmp_path / "out")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "clip,psnr,niqe,flicker" and lines[-1].startswith("mean,")
    data = json.loads(json_path.read_text())
    assert data["mean"]["psnr"] == (rows["a"]["psnr"] + rows["b"]["psnr"]) / 2


def test_niqe_on_small_frames_is_skipped_with_reason(tmp_path):
    clip = torch.zeros(1, 3, 2, 64, 80)
    suite = MetricSuite(["psnr", "niqe"], weights_dir=tmp_path)
    assert suite.score("small", clip, clip) == {"psnr": 100.0}
    assert suite.report.skipped["niqe"] == "frames of small are 80x64; NIQE needs at least 192x192"
