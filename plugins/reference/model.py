"""ReferenceVSR: the smallest real method, used to prove every core path end to end.

It is deliberately not a diffusion model: bicubic-upsample the LQ window, move it into the latent
space of a :class:`~vsr_core.latent.LatentCodec`, add a residual predicted by a small stack of 3D
convolutions (so neighbouring frames help), decode. The last layer is zero-initialised, so an
untrained model returns exactly the bicubic upsampling and training can only improve on it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.checkpoint import loading_checkpoint
from vsr_core.errors import ConfigError
from vsr_core.export import load_exported_weights
from vsr_core.latent import PixelUnshuffleCodec
from vsr_core.method import VSRMethod
from vsr_core.video_ops import upsample_frames


class ResidualBlock3D(nn.Module):
    """``[B,C,T,H,W] -> [B,C,T,H,W]``: two 3x3x3 convolutions with a skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class LatentResidualNet(nn.Module):
    """Predicts a latent residual ``[B,c,t,h,w] -> [B,c,t,h,w]`` (zero at initialisation)."""

    def __init__(self, latent_channels: int, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.stem = nn.Conv3d(latent_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ResidualBlock3D(channels) for _ in range(num_blocks))
        self.head = nn.Conv3d(channels, latent_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(z)
        for block in self.blocks:
            h = block(h)
        return self.head(F.silu(h))


class ReferenceVSR(VSRMethod):
    """Minimal latent residual video restorer (reference plugin for the core's contracts).

    ``restore``: ``lq [B,3,T,h,w] -> [B,3,T,h*scale,w*scale]``, all in ``[-1, 1]``.

    Args:
        scale: upscaling factor.
        channels: width of the residual network.
        num_blocks: number of 3D residual blocks.
        latent_factor: spatial factor of the weight-free pixel-unshuffle codec.
        pretrained: a ``vsr export`` folder of a ReferenceVSR with the same sizes; its weights are
            loaded at construction (fine-tuning starts from them). When a checkpoint is loaded
            (``load_method``) the checkpoint's weights are used and the folder is not read.
    """

    fsdp_block_classes = (ResidualBlock3D,)
    temporal_window = 16
    export_init_arg = "pretrained"
    tiny_init_args: ClassVar[dict[str, Any]] = {"scale": 4, "channels": 8, "num_blocks": 1}

    def __init__(
        self,
        scale: int = 4,
        channels: int = 32,
        num_blocks: int = 2,
        latent_factor: int = 2,
        pretrained: str | None = None,
        learning_rate: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        # The core's arguments (optimizer, lr_scheduler, ...) pass through **kwargs; jsonargparse
        # still lists them under --model.help. learning_rate is repeated for its own default.
        super().__init__(scale=scale, learning_rate=learning_rate, **kwargs)
        self.codec = PixelUnshuffleCodec(factor=latent_factor)
        self.net = LatentResidualNet(self.codec.latent_channels, channels, num_blocks)
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
        """``[B,3,T,h,w] -> [B,3,T,h*s,w*s]`` in one deterministic pass (no steps, no guidance, no noise)."""
        if num_inference_steps not in (None, 1):
            raise ConfigError(
                f"ReferenceVSR restores in one pass; num_inference_steps={num_inference_steps} does not apply"
            )
        upsampled = upsample_frames(lq, self.scale)
        z = self.codec.encode(upsampled)
        return self.codec.decode(z + self.net(z))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        restored = self.restore(batch["lq"])
        loss = F.l1_loss(restored, batch["hq"])
        self.log_losses({"l1": loss}, total=loss)
        return loss
