"""The bicubic baseline of the validation clips, logged beside the method's scores.

``val/psnr`` alone says little about a short run: is 25 dB good on these clips? This callback
upsamples each validation batch's LQ input with bicubic interpolation (what a method must beat)
and logs ``val/psnr_bicubic`` and ``val/ssim_bicubic`` with the same reduction as the method's
``val/psnr`` / ``val/ssim`` (mean over clips, weighted by batch size, synced over ranks), so the two
curves sit side by side in TensorBoard. The validation clips and their degradation are the same at
every validation, so the baseline is a flat line; ``test/..._bicubic`` likewise for ``vsr test``.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from vsr_core.metrics.fidelity import psnr, ssim
from vsr_core.video_ops import upsample_frames

__all__ = ["BicubicBaseline", "bicubic_scores"]


@torch.no_grad()
def bicubic_scores(lq: torch.Tensor, hq: torch.Tensor) -> dict[str, torch.Tensor]:
    """``lq [B,3,T,h,w]``, ``hq [B,3,T,s*h,s*w]`` in [-1,1] -> ``{"psnr_bicubic", "ssim_bicubic"}``, each ``[B]``."""
    scale = hq.shape[-1] // lq.shape[-1]
    baseline = upsample_frames(lq.float(), scale).clamp(-1, 1) if scale > 1 else lq.float()
    return {"psnr_bicubic": psnr(baseline, hq), "ssim_bicubic": ssim(baseline, hq)}


class BicubicBaseline(Callback):
    """Log ``<stage>/psnr_bicubic`` and ``<stage>/ssim_bicubic`` of the clips that ``validation_step`` / ``test_step`` scored.

    Reads the ``{"lq", "restored", "hq"}`` dict :class:`~vsr_core.method.VSRMethod` returns; does nothing
    for other outputs or when the LQ clip is not an integer downscale of the HQ one.
    """

    def _log(self, stage: str, pl_module: LightningModule, outputs: Any) -> None:
        if not isinstance(outputs, dict) or not {"lq", "hq"} <= outputs.keys():
            return
        lq, hq = outputs["lq"], outputs["hq"]
        if lq.ndim != 5 or hq.ndim != 5 or hq.shape[-1] % lq.shape[-1] or hq.shape[-2] % lq.shape[-2]:
            return
        for name, value in bicubic_scores(lq, hq).items():
            pl_module.log(
                f"{stage}/{name}", value.mean(), batch_size=hq.shape[0], sync_dist=True, on_step=False, on_epoch=True
            )

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._log("val", pl_module, outputs)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._log("test", pl_module, outputs)
