"""Cheap per-clip scores for validation/test steps (no learned weights, no flow network)."""

from __future__ import annotations

import torch

from vsr_core.metrics.fidelity import psnr, ssim
from vsr_core.metrics.temporal import HornSchunckFlow, flicker, warping_error

__all__ = ["validation_scores"]

_FLOW = HornSchunckFlow(levels=3, iterations=20)


@torch.no_grad()
def validation_scores(restored: torch.Tensor, hq: torch.Tensor) -> dict[str, torch.Tensor]:
    """``restored, hq [B,3,T,H,W]`` in [-1,1] -> ``{"psnr", "ssim", "warp_error", "flicker"}`` each ``[B]`` on restored's device.

    ``warp_error`` (x1e-3) warps with Horn-Schunck flow estimated on ``hq``, so the restoration is
    judged against true motion; ``flicker`` is the global brightness flicker of ``restored``.
    """
    device = restored.device
    return {
        "psnr": psnr(restored, hq),
        "ssim": ssim(restored, hq),
        "warp_error": warping_error(restored, _FLOW, flow_video=hq).to(device),
        "flicker": flicker(restored).to(device),
    }
