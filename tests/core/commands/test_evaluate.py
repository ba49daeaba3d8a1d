"""`vsr evaluate` on tiny generated videos: per-clip rows + mean in CSV/JSON, one-line errors."""

import json

import pytest
import torch

from vsr_core.cli import main as vsr_main
from vsr_core.data.video_io import VideoWriter


def _write(path, frames):
    with VideoWriter(path, fps=25, codec="libx264", crf=0, pix_fmt="yuv444p") as writer:
        writer.write(frames)


@pytest.fixture
def dirs(tmp_path):
    g = torch.Generator().manual_seed(0)
    gt, out = tmp_path / "gt", tmp_path / "out"
    gt.mkdir()
    out.mkdir()
    for name in ("a", "b"):
        frames = torch.randint(0, 256, (4, 32, 48, 3), generator=g, dtype=torch.uint8)
        _write(gt / f"{name}.mp4", frames)
        noisy = (frames.int() + torch.randint(-8, 9, frames.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        _write(out / f"{name}.mp4", noisy if name == "b" else frames)
    return out, gt


def test_evaluate_writes_per_clip_rows_and_mean(dirs, tmp_path, capsys):
    out, gt = dirs
    report = tmp_path / "report"
    rc = vsr_main(["evaluate", str(out), str(gt), "--metrics", "psnr", "ssim", "flicker", "-o", str(report)])
    assert rc == 0
    data = json.loads((report / "metrics.json").read_text())
    assert set(data["clips"]) == {"a", "b"}
    assert data["clips"]["a"]["psnr"] > 60 and 25 < data["clips"]["b"]["psnr"] < 40
    assert data["mean"]["ssim"] == pytest.approx((data["clips"]["a"]["ssim"] + data["clips"]["b"]["ssim"]) / 2)
    rows = (report / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["clip", "a", "b", "mean"]
    assert "mean" in capsys.readouterr().out


def test_no_reference_only_without_gt(dirs, capsys):
    out, _ = dirs
    assert vsr_main(["evaluate", str(out), "--metrics", "psnr", "flicker"]) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert "psnr" in data["skipped"] and "flicker" in data["mean"]


def test_unmatched_and_mismatched_clips_fail_with_one_line(dirs, tmp_path, capsys):
    out, gt = dirs
    (gt / "b.mp4").unlink()
    assert vsr_main(["evaluate", str(out), str(gt), "--metrics", "psnr"]) != 0
    err = capsys.readouterr().err.strip()
    assert "no ground truth" in err and "b" in err and len(err.splitlines()) == 1
    _write(gt / "b.mp4", torch.zeros(3, 32, 48, 3, dtype=torch.uint8))
    assert vsr_main(["evaluate", str(out), str(gt), "--metrics", "psnr"]) != 0
    assert "4 frames, ground truth 3" in capsys.readouterr().err
    assert vsr_main(["evaluate", str(tmp_path / "nope"), "--metrics", "psnr"]) != 0
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert vsr_main(["evaluate", str(tmp_path / "empty")]) != 0
    assert "no videos" in capsys.readouterr().err


def test_dover_without_weights_is_skipped_and_a_wrong_file_stops_with_one_line(dirs, tmp_path, capsys):
    out, _ = dirs
    weights = tmp_path / "weights"
    weights.mkdir()
    assert vsr_main(["evaluate", str(out), "--metrics", "flicker", "dover", "--weights-dir", str(weights)]) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["skipped"]["dover"] == f"weights not found: {weights}/DOVER.pth" and "dover" not in data["mean"]
    printed = "".join(capsys.readouterr().out.split())  # rich wraps long lines at the terminal width
    assert "".join(f"SKIPPED dover: weights not found: {weights}/DOVER.pth".split()) in printed
    torch.save({"x": torch.zeros(1)}, weights / "DOVER.pth")
    assert vsr_main(["evaluate", str(out), "--metrics", "dover", "--weights-dir", str(weights)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing key technical_backbone.patch_embed.proj.weight" in err


def test_default_metrics_are_the_fast_set_with_progress_per_clip(dirs, tmp_path, monkeypatch, capsys):
    out, gt = dirs
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no weights anywhere: lpips is skipped
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv("VSR_METRIC_WEIGHTS", raising=False)
    report = tmp_path / "report"
    assert vsr_main(["evaluate", str(out), str(gt), "-o", str(report)]) == 0
    data = json.loads((report / "metrics.json").read_text())
    assert set(data["mean"]) == {"psnr", "ssim", "warp_error", "flicker"}
    assert list(data["skipped"]) == ["lpips"] and "alexnet-owt-7be5be79.pth" in data["skipped"]["lpips"]
    assert set(data["seconds"]) == {"psnr", "ssim", "warp_error", "flicker"} and min(data["seconds"].values()) >= 0
    assert "horn-schunck" in data["notes"]["warp_error"]
    captured = capsys.readouterr()
    per_clip = [line for line in captured.err.splitlines() if line.startswith(("a: ", "b: "))]
    assert [line[:2] for line in per_clip] == ["a:", "b:"] and all(
        "psnr" in line and "flicker" in line for line in per_clip
    )
    assert "seconds per metric: psnr" in captured.out
    assert "dists" not in captured.out + captured.err  # opt-in metrics are not even built


def test_metric_groups_expand_in_order():
    from vsr_core.metrics.catalog import ALL_METRICS, DEFAULT_METRICS, expand_metric_names

    assert DEFAULT_METRICS == ("psnr", "ssim", "lpips", "warp_error", "flicker")
    assert expand_metric_names(["default", "musiq", "psnr"]) == [*DEFAULT_METRICS, "musiq"]
    assert expand_metric_names(["dover", "all"]) == ["dover", *[m for m in ALL_METRICS if m != "dover"]]


def test_a_restored_clip_at_4x_the_ground_truth_points_to_vsr_degrade(dirs, tmp_path, capsys):
    out, gt = dirs
    big = tmp_path / "big"
    big.mkdir()
    for name in ("a", "b"):
        _write(big / f"{name}.mp4", torch.zeros(4, 128, 192, 3, dtype=torch.uint8))
    assert vsr_main(["evaluate", str(big), str(gt), "--metrics", "psnr"]) != 0
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: a: restored frames are 192x128, ground truth 48x32; the restored clip is 4x the ground truth, as if the "
        "ground truth itself was restored: make LQ inputs from it with `vsr degrade GT_DIR -o LQ_DIR --scale 4` and restore those"
    )
