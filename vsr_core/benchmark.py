"""Paper benchmark settings a method declares, and the GPU peak table speed comparisons use.

A method lists, in its class attribute ``paper_benchmarks``, the settings its paper reports a speed
for (``vsr bench`` and ``benchmarks/gpu_suite.py`` measure exactly those). A time measured on
another GPU is compared through the ratio of the two GPUs' dense fp16/bf16 tensor peaks:
``scaled = paper_seconds * paper_peak / our_peak``; our time divided by it is the table's ratio
(below 1: faster than the paper's hardware-normalised time; the target is <= 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vsr_core.errors import ConfigError

__all__ = ["BF16_PEAK_TFLOPS", "PaperBenchmark", "device_peak_tflops", "scaled_paper_seconds"]

#: Dense bf16/fp16 tensor-core peaks (TFLOP/s) by a substring of the device name (longest match wins).
BF16_PEAK_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "H20": 148.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A6000": 155.0,
    "RTX 8000": 130.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
}


def device_peak_tflops(device_name: str) -> float | None:
    """Known dense bf16 peak for a device name (longest matching key wins), else ``None``."""
    matches = [key for key in BF16_PEAK_TFLOPS if key in device_name]
    return BF16_PEAK_TFLOPS[max(matches, key=len)] if matches else None


@dataclass(frozen=True)
class PaperBenchmark:
    """One setting a paper reports a speed for.

    Args:
        label: short name shown in tables, e.g. ``"1 step, 17x1024^2"``.
        mode: ``infer`` (one window through ``restore``) or ``train`` (one training step).
        frames, height, width: the window/clip, in output (HQ) pixels; ``frames`` obeys the method's
            frame rule.
        num_inference_steps: for ``infer``; ``None`` takes the method's default.
        paper_seconds: the paper's time, ``None`` when it reports none for this setting.
        per: what ``paper_seconds`` counts: one ``frame``, one ``clip`` (the window) or one ``step``.
        paper_gpu: the GPU the paper measured on (a key of :data:`BF16_PEAK_TFLOPS`).
        init_args: init arguments of the benchmarked configuration (e.g. ``{"preset": "real"}``).
        source: where the number comes from (paper table / section).
    """

    label: str
    mode: Literal["infer", "train"] = "infer"
    frames: int = 17
    height: int = 1024
    width: int = 1024
    num_inference_steps: int | None = None
    paper_seconds: float | None = None
    per: Literal["frame", "clip", "step"] = "frame"
    paper_gpu: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.paper_seconds is not None and device_peak_tflops(self.paper_gpu or "") is None:
            raise ConfigError(
                f"benchmark '{self.label}': unknown paper GPU {self.paper_gpu!r}; add its peak to BF16_PEAK_TFLOPS"
            )


def scaled_paper_seconds(benchmark: PaperBenchmark, our_peak_tflops: float | None) -> float | None:
    """The paper's time moved to our GPU by the ratio of dense peaks, in the benchmark's ``per`` unit."""
    if benchmark.paper_seconds is None or not our_peak_tflops:
        return None
    paper_peak = device_peak_tflops(benchmark.paper_gpu or "")
    return benchmark.paper_seconds * paper_peak / our_peak_tflops if paper_peak else None
