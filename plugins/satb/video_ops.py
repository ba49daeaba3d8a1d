"""CogVideoX1.5 latent-frame padding of SATB-VR (pixel frames are padded by ``vsr_core.video_ops.pad_temporal``)."""

from __future__ import annotations

import torch


def pad_latent_frames(latents: torch.Tensor, multiple: int | None) -> tuple[torch.Tensor, int]:
    """Prepend copies of the first latent frame of ``[B,F,C,H,W]`` so ``F`` divides by ``multiple``.

    CogVideoX1.5 patches 2 latent frames per token; the release prepends the first latent frame to
    reach an even count. Returns the padded latents and the number of prepended frames.
    """
    if not multiple or latents.shape[1] % multiple == 0:
        return latents, 0
    extra = multiple - latents.shape[1] % multiple
    return torch.cat([latents[:, :1].expand(-1, extra, -1, -1, -1), latents], dim=1), extra
