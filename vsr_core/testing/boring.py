"""``BoringMethod``: the smallest complete :class:`~vsr_core.method.VSRMethod`, for tests.

Lightning's ``BoringModel`` is the example: core tests (and a plugin's own tests of core
behaviour) subclass it instead of depending on a real method. It is bicubic upsampling plus a
zero-initialised per-frame residual convolution, so an untrained one restores exactly the
bicubic upsampling and any training step changes its output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.checkpoint import loading_checkpoint
from vsr_core.errors import ConfigError
from vsr_core.export import load_exported_weights
from vsr_core.method import VSRMethod
from vsr_core.video_ops import upsample_frames

__all__ = ["BoringMethod"]


class BoringMethod(VSRMethod):
    """Bicubic upsampling + a learned per-frame residual: ``lq [B,3,T,h,w] -> [B,3,T,h*s,w*s]``.

    Args:
        scale: upscaling factor.
        width: channels of the hidden convolution.
        pretrained: a ``vsr export`` folder of a BoringMethod of the same sizes, read at construction
            (as the plugin guide teaches; skipped while a checkpoint, which carries the weights, loads).
        **kwargs: the core's arguments (optimizer, learning_rate, lr_scheduler, ...).
    """

    export_init_arg = "pretrained"

    def __init__(self, scale: int = 4, width: int = 4, pretrained: str | None = None, **kwargs: Any) -> None:
        super().__init__(scale=scale, **kwargs)
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        if pretrained is not None and not loading_checkpoint():
            load_exported_weights(self, pretrained)

    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if num_inference_steps not in (None, 1):
            raise ConfigError(f"BoringMethod restores in one pass; num_inference_steps={num_inference_steps}")
        up = upsample_frames(lq, self.scale)
        b, c, t, h, w = up.shape
        frames = up.transpose(1, 2).reshape(b * t, c, h, w)
        out = frames + self.net(frames)
        return out.reshape(b, t, c, h, w).transpose(1, 2).clamp(-1, 1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = F.l1_loss(self.restore(batch["lq"]), batch["hq"])
        self.log_losses({"l1": loss}, total=loss)
        return loss
