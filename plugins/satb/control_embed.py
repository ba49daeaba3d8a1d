"""LQ-latent patch embedding of the ControlNet branch (``control_patch_embed`` in the release).

The LQ latent goes through three small spatio-temporal residual blocks (spatial 3x3 conv block +
temporal 3x1x1 conv block, mixed by a learned factor), is patchified exactly like CogVideoX's own
patch embedding and projected to the transformer width by a zero-initialized linear layer. The
text tokens get a zero-initialized projection too. The result is *added* to the tokens of the
regular patch embedding, so at initialization the embedding is the base model's.

Parameter names follow the release (``text_proj``, ``res_block.<i>.{spatial_res_block,
temporal_res_block,time_mixer}``, ``proj``) so ``control_patch_embed.pt`` loads without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from vsr_core.nn import zero_module

__all__ = ["ControlPatchEmbed", "LearnedMix", "SpatioTemporalResBlock", "TemporalResBlock", "patchify"]


class TemporalResBlock(nn.Module):
    """Residual block of two temporal ``(3,1,1)`` convolutions with a time embedding.

    ``x`` ``[B, C, F, H, W]``, ``temb`` ``[B, F, temb_channels]`` → ``[B, C_out, F, H, W]``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))
        self.conv_shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb)).permute(0, 2, 1)[..., None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class LearnedMix(nn.Module):
    """``σ(m)·spatial + (1 − σ(m))·temporal`` with one learned scalar ``mix_factor`` (init 0.5)."""

    def __init__(self, initial: float = 0.5) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([initial]))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor).to(spatial.dtype)
        return alpha * spatial + (1.0 - alpha) * temporal


class SpatioTemporalResBlock(nn.Module):
    """Per-frame 2D residual block, then a temporal residual block, blended by :class:`LearnedMix`.

    ``x`` ``[B*F, C, H, W]``, ``temb`` ``[B*F, temb_channels]`` → ``[B*F, C_out, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int) -> None:
        super().__init__()
        self.spatial_res_block = ResnetBlock2D(
            in_channels=in_channels, out_channels=out_channels, temb_channels=temb_channels, groups=groups, eps=1e-6
        )
        self.temporal_res_block = TemporalResBlock(out_channels, out_channels, temb_channels, groups)
        self.time_mixer = LearnedMix()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, num_frames: int) -> torch.Tensor:
        spatial = self.spatial_res_block(x, temb)
        bf, c, h, w = spatial.shape
        video = spatial.view(bf // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)
        temporal = self.temporal_res_block(video, temb.view(bf // num_frames, num_frames, -1))
        mixed = self.time_mixer(video, temporal)
        return mixed.permute(0, 2, 1, 3, 4).reshape(bf, c, h, w)


def patchify(latents: torch.Tensor, patch_size: int, patch_size_t: int | None) -> torch.Tensor:
    """``[B, F, C, H, W]`` → ``[B, N, C·p_t·p·p]`` in CogVideoX's token order (frames, rows, cols).

    The feature order ``(C, p_t, p, p)`` is the one CogVideoX1.5's patch embedding uses, so the
    release's ``proj`` weight applies unchanged.
    """
    b, f, c, h, w = latents.shape
    p, pt = patch_size, patch_size_t or 1
    x = latents.permute(0, 1, 3, 4, 2).reshape(b, f // pt, pt, h // p, p, w // p, p, c)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.flatten(4, 7).flatten(1, 3)


class ControlPatchEmbed(nn.Module):
    """Adds LQ-latent tokens (and projected text tokens) to the regular patch-embedding output.

    ``forward(control [B,F,C,H,W], text [B,L,text_dim], embeds [B,L+N,width], temb [B,time_dim])``
    → ``[B, L+N, width]``; ``N = (F/p_t)(H/p)(W/p)``.

    Args:
        in_channels: latent channels of the LQ latent (16 for CogVideoX).
        embed_dim: transformer width.
        text_embed_dim: width of the text embeddings (4096 for T5-XXL).
        time_embed_dim: width of the transformer's time embedding.
        patch_size, patch_size_t: the transformer's patch sizes.
        hidden_channels: width of the middle residual block (320 in the release).
        groups: GroupNorm groups ``(outer, inner)``; the release uses ``(16, 32)``.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        text_embed_dim: int,
        time_embed_dim: int,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        hidden_channels: int = 320,
        groups: tuple[int, int] = (16, 32),
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_size_t = patch_size_t
        outer, inner = groups
        self.text_proj = zero_module(nn.Linear(text_embed_dim, embed_dim))
        self.res_block = nn.ModuleList(
            [
                SpatioTemporalResBlock(in_channels, hidden_channels, time_embed_dim, outer),
                SpatioTemporalResBlock(hidden_channels, hidden_channels, time_embed_dim, inner),
                SpatioTemporalResBlock(hidden_channels, in_channels, time_embed_dim, outer),
            ]
        )
        self.proj = zero_module(nn.Linear(in_channels * patch_size * patch_size * (patch_size_t or 1), embed_dim))

    def forward(
        self, control: torch.Tensor, text: torch.Tensor, embeds: torch.Tensor, temb: torch.Tensor
    ) -> torch.Tensor:
        b, f, c, h, w = control.shape
        x = control.reshape(b * f, c, h, w)
        frame_temb = temb.repeat_interleave(f, dim=0)
        for block in self.res_block:
            x = block(x, frame_temb, f)
        tokens = self.proj(patchify(x.view(b, f, c, h, w), self.patch_size, self.patch_size_t))
        return embeds + torch.cat([self.text_proj(text), tokens], dim=1).to(embeds.dtype)
