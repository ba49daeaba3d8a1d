"""``LatentBoringMethod``: a latent-diffusion-shaped test method whose solver step is a known linear map.

It implements the latent window protocol (:mod:`vsr_core.inference.latent`) with nothing but
arithmetic, so the engine's latent fusion can be checked by value:

* ``prepare_window``: ``z = E(up(lq))`` with the weight-free pixel-unshuffle codec ``E`` and
  upsampling ``up`` (bicubic, or nearest: then every map is per pixel); initial latent
  ``x_0 = z + sigma * noise``;
* ``denoise_step(state, i, x) = z + c * (x - z)`` (``c = contraction``, a trainable scalar);
* ``finish_window``: ``D(x)`` clamped to [-1, 1].

So ``restore(lq)`` with ``N`` steps is ``up(lq) + sigma * c^N * D(noise)`` (before clamping). With
``upsample="nearest"`` every map is per pixel and per frame, so overlapping windows or tiles that
share noise agree exactly and the fused result equals restoring the whole video at once.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.inference.latent import LatentState, sample_window
from vsr_core.latent import PixelUnshuffleCodec
from vsr_core.method import VSRMethod
from vsr_core.video_ops import resize_frames

__all__ = ["LatentBoringMethod"]


class LatentBoringMethod(VSRMethod):
    """``lq [B,3,T,h,w] -> [B,3,T,h*s,w*s]`` through ``num_inference_steps`` linear "denoising" steps in latent space.

    Args:
        scale: upscaling factor.
        factor: spatial factor of the pixel-unshuffle codec (latents ``[B, 3*tf*f*f, T/tf, h*s/f, w*s/f]``).
        temporal_factor: pixel frames per latent frame (window lengths are multiples of it).
        sigma: scale of the initial noise.
        contraction: ``c`` of the step ``x <- z + c (x - z)``.
        num_inference_steps: default step count of :meth:`restore`.
        native_tile: LQ tile side the engine tiles larger frames into (``None``: never).
        upsample: ``bicubic`` or ``nearest`` (per pixel) upsampling of the LQ before encoding.
        **kwargs: the core's arguments.
    """

    tiny_init_args: ClassVar[dict[str, Any]] = {"scale": 2}
    temporal_window = 8

    def __init__(
        self,
        scale: int = 2,
        factor: int = 2,
        temporal_factor: int = 1,
        sigma: float = 0.5,
        contraction: float = 0.5,
        num_inference_steps: int = 3,
        native_tile: int | None = None,
        upsample: Literal["bicubic", "nearest"] = "bicubic",
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, **kwargs)
        self.codec = PixelUnshuffleCodec(factor=factor, temporal_factor=temporal_factor)
        self.sigma = float(sigma)
        self.contraction = nn.Parameter(torch.tensor(float(contraction)))
        self.num_inference_steps = int(num_inference_steps)
        self.native_tile = native_tile
        if upsample not in ("bicubic", "nearest"):
            raise ConfigError(f"upsample must be bicubic or nearest, got {upsample!r}")
        self.upsample = upsample
        self.temporal_window = 8 * temporal_factor

    def prepare_window(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        noise: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> LatentState:
        """Encode ``lq [B,3,T,h,w]`` and start from ``z + sigma * noise`` (``noise [B,c,t,h',w']``, drawn if ``None``)."""
        steps = self.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
        if steps < 0:
            raise ConfigError(f"num_inference_steps must be >= 0, got {steps}")
        z = self.codec.encode(resize_frames(lq, self.scale, self.upsample))
        if noise is None:
            device = generator.device if generator is not None else z.device
            noise = torch.randn(z.shape, generator=generator, device=device).to(z.device)
        return LatentState(latents=z + self.sigma * noise.to(z), num_steps=steps, context={"z": z})

    def denoise_step(self, state: LatentState, i: int, latents: torch.Tensor) -> torch.Tensor:
        """``x <- z + c (x - z)``: the same contraction towards the LQ latent at every step ``i``."""
        z = state.context["z"]
        return z + self.contraction * (latents - z)

    def finish_window(self, state: LatentState, latents: torch.Tensor) -> torch.Tensor:
        """Decode ``[B,c,t,h',w']`` -> ``[B,3,T,h*s,w*s]`` in [-1, 1]."""
        return self.codec.decode(latents)

    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One window: prepare -> ``num_inference_steps`` steps -> finish."""
        return sample_window(self, lq, prompt, num_inference_steps=num_inference_steps, generator=generator)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = F.l1_loss(self.restore(batch["lq"], generator=self.step_generator()), batch["hq"])
        self.log_losses({"l1": loss}, total=loss)
        return loss
