"""How overlapping temporal windows are restored and blended: the long-video hook of a method.

The engine asks the method for a :class:`WindowFusion` (``method.make_window_fusion()`` if the
method defines it, else :class:`LinearCrossfade`). A fusion object sees every window in order,
so a method with its own long-video scheme overrides it without copying the engine:

* :meth:`WindowFusion.restore_window` runs the method on one window (override to carry state from
  window to window, e.g. DiffVSR's interweaved latents and rescheduled noise, or UltraVSR's
  asynchronous timesteps); it receives the spatial ``tile`` too (keyword; one call per tile of a
  tiled frame), so state kept per window stays per ``(window.index, tile.index)`` under tiling;
* :meth:`WindowFusion.weights` gives each restored frame's blend weight (override for e.g.
  PS-SR's position-aware averaging). Weights of all windows covering a frame are normalised
  by the engine, so they only need to be positive and relative.

Methods implementing the latent window protocol fuse in latent space instead (their per-step hook
is :class:`~vsr_core.inference.latent.LatentFusion`); ``weights`` still blends their decoded windows.
"""

from __future__ import annotations

from typing import Any

import torch

from vsr_core.inference.windows import Window, WindowPlan

__all__ = ["LinearCrossfade", "window_fusion_for", "WindowFusion"]


class WindowFusion:
    """Default per-window behaviour: plain ``method.restore`` and uniform weights.

    ``restore_window(method, lq [B,3,L,h,w], window, plan, prompt, *, tile, **sampling) -> [B,3,L,h*s,w*s]``
    (``lq`` is one tile of the window when the frame is tiled; ``tile`` the
    :class:`~vsr_core.inference.tiles.Tile`); ``weights(window, plan) -> float [L]``.
    """

    def start(self, plan: WindowPlan) -> None:
        """Called once per video before its first window (reset per-video state here)."""

    def restore_window(
        self,
        method: Any,
        lq: torch.Tensor,
        window: Window,
        plan: WindowPlan,
        prompt: list[str] | None,
        *,
        tile: Any = None,
        **sampling: Any,
    ) -> torch.Tensor:
        return method.restore(lq, prompt=prompt, **sampling)

    def weights(self, window: Window, plan: WindowPlan) -> torch.Tensor:
        return torch.ones(window.length)


class LinearCrossfade(WindowFusion):
    """Linear cross-fade over each overlap: weights ramp ``1/(o+1) .. o/(o+1)`` so the two windows sum to 1."""

    def weights(self, window: Window, plan: WindowPlan) -> torch.Tensor:
        w = torch.ones(window.length)
        o = window.overlap_before
        if o:
            w[:o] = torch.arange(1, o + 1, dtype=torch.float32) / (o + 1)
        o = window.overlap_after
        if o:
            w[window.length - o :] = torch.minimum(
                w[window.length - o :],
                torch.arange(o, 0, -1, dtype=torch.float32) / (o + 1),
            )
        return w


def window_fusion_for(method: Any) -> WindowFusion:
    """The method's fusion (``method.make_window_fusion()``) or the default :class:`LinearCrossfade`."""
    factory = getattr(method, "make_window_fusion", None)
    fusion = factory() if callable(factory) else None
    return fusion if fusion is not None else LinearCrossfade()
