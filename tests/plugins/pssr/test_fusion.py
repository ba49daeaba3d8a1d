"""Temporal position-aware averaging of overlapping windows (the release's linear_blend_overlap)."""

from __future__ import annotations

import numpy as np
import torch

from pssr.fusion import TemporalPositionAveraging
from vsr_core.inference.windows import plan_windows


def _release_blend(prev: np.ndarray, curr: np.ndarray, overlap: int) -> np.ndarray:
    """``inference_step_2.linear_blend_overlap`` on per-frame values (written out)."""
    alpha = np.linspace(0.0, 1.0, overlap)
    return prev[-overlap:] * (1 - alpha) + curr[:overlap] * alpha


def test_weights_reproduce_the_release_blend_on_every_overlap():
    plan = plan_windows(70, 33, 8, (4, 1))
    fusion = TemporalPositionAveraging()
    rng = np.random.default_rng(0)
    outputs = [rng.normal(size=w.length) for w in plan.windows]  # one value per restored frame
    total, weight = np.zeros(70), np.zeros(70)
    for window, out in zip(plan.windows, outputs):
        w = fusion.weights(window, plan).numpy()
        total[window.start : window.end] += w * out
        weight[window.start : window.end] += w
    fused = total / weight  # what the engine computes
    for prev, nxt, a, b in zip(plan.windows, plan.windows[1:], outputs, outputs[1:]):
        o = prev.overlap_after
        np.testing.assert_allclose(fused[nxt.start : nxt.start + o], _release_blend(a, b, o), atol=1e-6)
    first = plan.windows[0]
    np.testing.assert_allclose(
        fused[: plan.windows[1].start], outputs[0][: plan.windows[1].start]
    )  # no overlap: as is
    assert first.length == 33 and plan.windows[1].overlap_before == 8


def test_weights_of_a_window_by_value():
    plan = plan_windows(60, 33, 6, (4, 1))
    w = TemporalPositionAveraging().weights(plan.windows[1], plan)
    o = plan.windows[1].overlap_before
    torch.testing.assert_close(w[:o], torch.linspace(0, 1, o))
    assert torch.all(w[o:] == 1)
