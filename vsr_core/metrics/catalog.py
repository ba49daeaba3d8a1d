"""The metric names ``vsr evaluate`` knows, their kinds, and which run by default (no heavy imports here).

The default set is the one that scores a 120-frame 704x576 clip in about a minute on two CPU
cores (see benchmarks/RESULTS.md, ``benchmarks/evaluate_timing.py``); the others are opt-in by name
(``--metrics default musiq dover``) or all together (``--metrics all``).
"""

from __future__ import annotations

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "FULL_REFERENCE",
    "LOWER_IS_BETTER",
    "NEEDS_GT",
    "NO_REFERENCE",
    "OPT_IN_METRICS",
    "TEMPORAL",
    "VIDEO_NO_REFERENCE",
    "expand_metric_names",
]

# pyiqa metrics: full reference (restored vs GT) and no reference (restored only), frame by frame.
FULL_REFERENCE = ("lpips", "dists")
NO_REFERENCE = ("niqe", "musiq", "clipiqa", "maniqa")
# No-reference metrics that score a whole clip at once.
VIDEO_NO_REFERENCE = ("dover",)
TEMPORAL = ("warp_error", "flicker")
ALL_METRICS = ("psnr", "ssim", *FULL_REFERENCE, *NO_REFERENCE, *VIDEO_NO_REFERENCE, *TEMPORAL)
# Fast on a CPU: no network-sized backbones beyond AlexNet, flow at a bounded working size.
DEFAULT_METRICS = ("psnr", "ssim", "lpips", "warp_error", "flicker")
# Minutes per clip on a CPU each (VGG16 at full resolution, ViTs, DOVER's 3D Swin, NIQE's patch fits).
OPT_IN_METRICS = tuple(m for m in ALL_METRICS if m not in DEFAULT_METRICS)
NEEDS_GT = frozenset({"psnr", "ssim", *FULL_REFERENCE})
# Lower is better for these; used for the arrows in printed tables.
LOWER_IS_BETTER = frozenset({"lpips", "dists", "niqe", "warp_error", "flicker"})


def expand_metric_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """``default`` and ``all`` expand to their sets; order kept, duplicates dropped (``["default", "musiq"]``)."""
    out: list[str] = []
    for name in names:
        group = {"default": DEFAULT_METRICS, "all": ALL_METRICS}.get(name, (name,))
        out += [m for m in group if m not in out]
    return out
