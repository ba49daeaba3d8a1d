"""MetricSuite: score restored clips with named metrics; per-clip rows, means, SKIPPED entries, timings.

Clips are ``[1,3,T,H,W]`` tensors in ``[-1,1]`` (restored, and ground truth for full-reference
metrics). A metric that cannot run (weights missing, or no ground truth for a full-reference
metric) is listed in :attr:`Report.skipped` with the reason and never produces a number.
Video metrics (``dover``) score the whole clip at once and may add sub-scores to the row
(``dover_technical``, ``dover_aesthetic``). Nothing is downloaded unless ``allow_download``.
The wall time each metric took (building it included) is kept in :attr:`Report.seconds`, and a
``progress(metric, done, total)`` callback hears how far the current clip is.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vsr_core.errors import ConfigError
from vsr_core.metrics.catalog import (
    ALL_METRICS,
    DEFAULT_METRICS,
    FULL_REFERENCE,
    LOWER_IS_BETTER,
    NEEDS_GT,
    NO_REFERENCE,
    TEMPORAL,
    VIDEO_NO_REFERENCE,
)
from vsr_core.metrics.dover import create_dover_metric
from vsr_core.metrics.fidelity import psnr, ssim
from vsr_core.metrics.iqa import MissingWeights, create_iqa_metric
from vsr_core.metrics.temporal import default_flow_estimator, flicker, warping_error

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "MetricSuite",
    "NEEDS_GT",
    "Progress",
    "Report",
    "TEMPORAL",
    "VIDEO_NO_REFERENCE",
]

# progress(metric, done, total): how far the current clip is for that metric (frames, frame pairs or 1).
Progress = Callable[[str, int, int], None]


@dataclass
class Report:
    """Per-clip scores ``{clip: {metric: value}}``, skipped metrics ``{metric: reason}``, notes (e.g. flow
    estimator) and the wall seconds each metric took over all clips (building it included)."""

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

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
        payload = {
            "clips": self.rows,
            "mean": self.mean(),
            "skipped": self.skipped,
            "notes": self.notes,
            "seconds": self.seconds,
        }
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, json_path)
        return csv_path, json_path

    def print(self, console=None) -> None:
        """Rich table: one row per clip, a mean row, then notes, seconds per metric and SKIPPED lines with reasons."""
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
            console.print(f"{key}: {note}", highlight=False)
        if self.seconds:
            timing = ", ".join(f"{name} {value:.1f}" for name, value in self.seconds.items())
            console.print(f"seconds per metric: {timing}", highlight=False)
        for name, reason in self.skipped.items():
            console.print(f"SKIPPED {name}: {reason}", highlight=False, soft_wrap=True)


class MetricSuite:
    """Scores clips with the named metrics.

    Args:
        metrics: names from :data:`ALL_METRICS`.
        y_channel / crop_border: PSNR/SSIM protocol (BT.601 Y on [16,235], pixels cropped per side).
        weights_dir: local directory with pyiqa weights and ``DOVER.pth`` (default pyiqa's cache).
        device: where learned metrics run.
        has_gt: False for no-reference evaluation; full-reference metrics are then skipped.
        allow_download: let pyiqa/torchvision download missing weights (default: never; the metric is skipped
            with the file it needs).
        progress: called as ``progress(metric, done, total)`` while a clip is scored (and while a metric is built).
    """

    def __init__(
        self,
        metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS,
        y_channel: bool = False,
        crop_border: int = 0,
        weights_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        has_gt: bool = True,
        allow_download: bool = False,
        progress: Progress | None = None,
    ) -> None:
        unknown = [m for m in metrics if m not in ALL_METRICS]
        if unknown:
            raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(ALL_METRICS)}")
        self.y_channel, self.crop_border, self.device = y_channel, crop_border, device
        self.report = Report()
        self._progress = progress
        self._iqa: dict = {}
        self._dover = None
        self.metrics: list[str] = []
        for name in metrics:
            if name in NEEDS_GT and not has_gt:
                self.report.skipped[name] = "needs ground truth (no GT_DIR given)"
                continue
            started = time.perf_counter()
            self._report_progress(name, 0, 1)
            try:
                if name in (*FULL_REFERENCE, *NO_REFERENCE):
                    self._iqa[name] = create_iqa_metric(name, weights_dir, device, allow_download=allow_download)
                elif (
                    name == "dover"
                ):  # a file that is there but is not DOVER.pth raises PretrainedError: stop, don't skip
                    self._dover = create_dover_metric(weights_dir, device)
            except MissingWeights as missing:
                self.report.skipped[name] = f"weights not found: {missing.path}"
                continue
            self.report.seconds[name] = time.perf_counter() - started
            self.metrics.append(name)
        self._flow = None
        if "warp_error" in self.metrics:
            self._flow = default_flow_estimator(weights_dir)
            self.report.notes["warp_error"] = f"E*warp x1e-3, flow: {self._flow.name}"

    def _report_progress(self, name: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress(name, done, total)

    def _iqa_score(self, name: str, restored: torch.Tensor, gt: torch.Tensor | None) -> float:
        # Frame-wise in small chunks ([T,3,H,W] in [0,1]); the clip score is the mean over frames.
        frames = restored[0].permute(1, 0, 2, 3).float().clamp(-1, 1).add(1).div(2)
        ref = gt[0].permute(1, 0, 2, 3).float().clamp(-1, 1).add(1).div(2) if gt is not None else None
        metric, scores, total = self._iqa[name], [], frames.shape[0]
        with torch.no_grad():
            for i in range(0, total, 4):
                chunk = frames[i : i + 4].to(self.device)
                out = metric(chunk, ref[i : i + 4].to(self.device)) if name in FULL_REFERENCE else metric(chunk)
                scores.append(out.detach().float().flatten().cpu())
                self._report_progress(name, min(i + 4, total), total)
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
            started = time.perf_counter()
            self._score_one(name, clip, restored, gt, row)
            self._report_progress(name, restored.shape[2], restored.shape[2])
            self.report.seconds[name] = self.report.seconds.get(name, 0.0) + time.perf_counter() - started
        self.report.rows[clip] = row
        return row

    def _score_one(
        self, name: str, clip: str, restored: torch.Tensor, gt: torch.Tensor | None, row: dict[str, float]
    ) -> None:
        """Add metric ``name``'s score(s) for ``clip`` to ``row`` (or skip the metric with its reason)."""
        frames = restored.shape[2]
        self._report_progress(name, 0, frames)
        if name == "psnr":
            value = psnr(restored, gt, self.y_channel, self.crop_border).item()
        elif name == "ssim":
            value = ssim(restored, gt, self.y_channel, self.crop_border).item()
        elif name == "warp_error":
            pairs = max(frames - 1, 1)
            value = warping_error(
                restored, self._flow, flow_video=gt, progress=lambda done: self._report_progress(name, done, pairs)
            ).item()
        elif name == "flicker":
            value = flicker(restored).item()
        elif name == "dover":
            scores = self._dover(restored)  # {"dover", "dover_technical", "dover_aesthetic"}
            bad = {k: v for k, v in scores.items() if not math.isfinite(v)}
            if bad:
                raise ValueError(f"metric dover returned {bad} on {clip}")
            row.update(scores)
            return
        elif name == "niqe" and min(restored.shape[-2:]) < 192:
            # NIQE fits 96x96 patches at two scales; smaller frames have no patch to score.
            self._skip(
                name, f"frames of {clip} are {restored.shape[-1]}x{restored.shape[-2]}; NIQE needs at least 192x192"
            )
            return
        else:
            try:
                value = self._iqa_score(name, restored, gt)
            except RuntimeError as err:  # e.g. NIQE on frames below its 96-px patch grid
                self._skip(name, f"failed on {clip}: {str(err).splitlines()[0]}")
                return
        if not math.isfinite(value):
            raise ValueError(f"metric {name} returned {value} on {clip}")
        row[name] = value
