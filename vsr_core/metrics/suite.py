"""MetricSuite: score restored clips with named metrics; per-clip rows, means, SKIPPED entries.

Clips are ``[1,3,T,H,W]`` tensors in ``[-1,1]`` (restored, and ground truth for full-reference
metrics). A metric that cannot run (weights missing, or no ground truth for a full-reference
metric) is listed in :attr:`MetricSuite.skipped` with the reason and never produces a number.
Video metrics (``dover``) score the whole clip at once and may add sub-scores to the row
(``dover_technical``, ``dover_aesthetic``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vsr_core.errors import ConfigError
from vsr_core.metrics.dover import create_dover_metric
from vsr_core.metrics.fidelity import psnr, ssim
from vsr_core.metrics.iqa import FULL_REFERENCE, LOWER_IS_BETTER, NO_REFERENCE, MissingWeights, create_iqa_metric
from vsr_core.metrics.temporal import default_flow_estimator, flicker, warping_error

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "MetricSuite", "NEEDS_GT", "Report", "TEMPORAL", "VIDEO_NO_REFERENCE"]

TEMPORAL = ("warp_error", "flicker")
# No-reference metrics that score a whole clip (not frame by frame).
VIDEO_NO_REFERENCE = ("dover",)
ALL_METRICS = ("psnr", "ssim", *FULL_REFERENCE, *NO_REFERENCE, *VIDEO_NO_REFERENCE, *TEMPORAL)
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "dists", "niqe", "musiq", "clipiqa", "maniqa", "dover", "warp_error", "flicker")
NEEDS_GT = {"psnr", "ssim", *FULL_REFERENCE}


@dataclass
class Report:
    """Per-clip scores ``{clip: {metric: value}}``, skipped metrics ``{metric: reason}`` and notes (e.g. flow estimator)."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        names: list[str] = []
        for row in self.rows.values():
            names += [n for n in row if n not in names]
        return names

    def mean(self) -> dict[str, float]:
        """Mean over clips of each metric (clips where it ran)."""
        out = {}
        for name in self.metrics:
            values = [row[name] for row in self.rows.values() if name in row]
            out[name] = sum(values) / len(values)
        return out

    def write(self, directory: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``metrics.csv`` (per clip + a ``mean`` row) and ``metrics.json``; each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        names = self.metrics
        csv_path, json_path = directory / "metrics.csv", directory / "metrics.json"
        tmp = csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["clip", *names])
            for clip, row in [*self.rows.items(), ("mean", self.mean())]:
                writer.writerow([clip, *(f"{row[n]:.6g}" if n in row else "" for n in names)])
        os.replace(tmp, csv_path)
        payload = {"clips": self.rows, "mean": self.mean(), "skipped": self.skipped, "notes": self.notes}
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, json_path)
        return csv_path, json_path

    def print(self, console=None) -> None:
        """Rich table: one row per clip, a mean row, then SKIPPED lines with reasons."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(title="metrics")
        table.add_column("clip")
        for name in self.metrics:
            table.add_column(f"{name} {'↓' if name in LOWER_IS_BETTER else '↑'}", justify="right")
        for clip, row in self.rows.items():
            table.add_row(clip, *(f"{row[n]:.4f}" if n in row else "-" for n in self.metrics))
        mean = self.mean()
        table.add_row("[bold]mean[/bold]", *(f"[bold]{mean[n]:.4f}[/bold]" for n in self.metrics))
        console.print(table)
        for key, note in self.notes.items():
            console.print(f"{key}: {note}")
        for name, reason in self.skipped.items():
            console.print(f"SKIPPED {name}: {reason}")


class MetricSuite:
    """Scores clips with the named metrics.

    Args:
        metrics: names from :data:`ALL_METRICS`.
        y_channel / crop_border: PSNR/SSIM protocol (BT.601 Y on [16,235], pixels cropped per side).
        weights_dir: local directory with pyiqa weights and ``DOVER.pth`` (default pyiqa's cache); nothing is downloaded.
        device: where learned metrics run.
        has_gt: False for no-reference evaluation; full-reference metrics are then skipped.
    """

    def __init__(
        self,
        metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
        y_channel: bool = False,
        crop_border: int = 0,
        weights_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        has_gt: bool = True,
    ) -> None:
        unknown = [m for m in metrics if m not in ALL_METRICS]
        if unknown:
            raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(ALL_METRICS)}")
        self.y_channel, self.crop_border, self.device = y_channel, crop_border, device
        self.report = Report()
        self._iqa: dict = {}
        self._dover = None
        self.metrics: list[str] = []
        for name in metrics:
            if name in NEEDS_GT and not has_gt:
                self.report.skipped[name] = "needs ground truth (no GT_DIR given)"
                continue
            if name in (*FULL_REFERENCE, *NO_REFERENCE):
                try:
                    self._iqa[name] = create_iqa_metric(name, weights_dir, device)
                except MissingWeights as missing:
                    self.report.skipped[name] = f"weights not found: {missing.path}"
                    continue
            if name == "dover":
                try:  # a file that is there but is not DOVER.pth raises PretrainedError: stop, don't skip
                    self._dover = create_dover_metric(weights_dir, device)
                except MissingWeights as missing:
                    self.report.skipped[name] = f"weights not found: {missing.path}"
                    continue
            self.metrics.append(name)
        self._flow = None
        if "warp_error" in self.metrics:
            self._flow = default_flow_estimator()
            self.report.notes["warp_error"] = f"E*warp x1e-3, flow: {self._flow.name}"

    def _iqa_score(self, name: str, restored: torch.Tensor, gt: torch.Tensor | None) -> float:
        # Frame-wise in small chunks ([T,3,H,W] in [0,1]); the clip score is the mean over frames.
        frames = restored[0].permute(1, 0, 2, 3).float().clamp(-1, 1).add(1).div(2)
        ref = gt[0].permute(1, 0, 2, 3).float().clamp(-1, 1).add(1).div(2) if gt is not None else None
        metric, scores = self._iqa[name], []
        with torch.no_grad():
            for i in range(0, frames.shape[0], 4):
                chunk = frames[i : i + 4].to(self.device)
                out = metric(chunk, ref[i : i + 4].to(self.device)) if name in FULL_REFERENCE else metric(chunk)
                scores.append(out.detach().float().flatten().cpu())
        return torch.cat(scores).mean().item()

    def _skip(self, name: str, reason: str) -> None:
        # A metric that cannot score every clip is dropped from all rows: a mean over a subset would mislead.
        self.report.skipped[name] = reason
        for row in self.report.rows.values():
            row.pop(name, None)

    def score(self, clip: str, restored: torch.Tensor, gt: torch.Tensor | None = None) -> dict[str, float]:
        """Score one clip ``[1,3,T,H,W]`` (and its GT of the same shape); returns and records its row."""
        row: dict[str, float] = {}
        for name in self.metrics:
            if name in self.report.skipped:
                continue
            if name == "psnr":
                value = psnr(restored, gt, self.y_channel, self.crop_border).item()
            elif name == "ssim":
                value = ssim(restored, gt, self.y_channel, self.crop_border).item()
            elif name == "warp_error":
                value = warping_error(restored, self._flow, flow_video=gt).item()
            elif name == "flicker":
                value = flicker(restored).item()
            elif name == "dover":
                scores = self._dover(restored)  # {"dover", "dover_technical", "dover_aesthetic"}
                bad = {k: v for k, v in scores.items() if not math.isfinite(v)}
                if bad:
                    raise ValueError(f"metric dover returned {bad} on {clip}")
                row.update(scores)
                continue
            elif name == "niqe" and min(restored.shape[-2:]) < 192:
                # NIQE fits 96x96 patches at two scales; smaller frames have no patch to score.
                self._skip(name, f"frames of {clip} are {restored.shape[-1]}x{restored.shape[-2]}; NIQE needs at least 192x192")
                continue
            else:
                try:
                    value = self._iqa_score(name, restored, gt)
                except RuntimeError as err:  # e.g. NIQE on frames below its 96-px patch grid
                    self._skip(name, f"failed on {clip}: {str(err).splitlines()[0]}")
                    continue
            if not math.isfinite(value):
                raise ValueError(f"metric {name} returned {value} on {clip}")
            row[name] = value
        self.report.rows[clip] = row
        return row
