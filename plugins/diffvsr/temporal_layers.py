"""DiffVSR's 3D layers (release ``UNet3DVSRModel`` lineage) and clip-wide group normalisation.

* :class:`TemporalResnet` -- the release's ``ResnetBlock3DCNN``: ``x + Conv_(3,1,1)(SiLU(GN(Conv_(k,1,1)(SiLU(GN(x)))
+ W_t temb)))``,
  a residual block that mixes neighbouring frames at each pixel.
* :class:`TemporalModule` -- the release's ``TemporalModule3D`` after every down block, the mid block and every up
  block: ``x + Conv_1x1(R_s(R_t(x, temb), temb))`` with ``R_t`` a :class:`TemporalResnet` (kernel 5), ``R_s`` a
  per-frame 3x3 residual block (diffusers ``ResnetBlock2D``) and the 1x1 convolution zero-initialised, so the module
  starts as the identity. The release config asks for no attention in it (``attention_block_types ["", ""]``); its
  ``temporal_shift_fold_div: 2`` is read only by that (absent) attention. ``shift_attention=True`` adds one, a
  spatial attention whose keys and values take half of their channels from the previous frame (Upscale-A-Video's
  shifted attention, :class:`ShiftedAttention`), zero-initialised.
* :class:`ClipGroupNorm` -- group normalisation over the whole clip. The release applies ``nn.GroupNorm`` to 5D video
  tensors in its resnets, so statistics are taken over all ``T`` frames of a clip, not per frame as in the image
  model; :func:`use_clip_group_norm` switches a module's group norms to that (``group_norm="clip"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from diffvsr.video_context import VideoContext
from vsr_core.nn import frames_to_video, temporal_shift, video_to_frames, zero_module

__all__ = [
    "GROUP_NORMS",
    "ClipGroupNorm",
    "ShiftedAttention",
    "TemporalModule",
    "TemporalResnet",
    "use_clip_group_norm",
]

GROUP_NORMS = ("frame", "clip")
GroupNormMode = Literal["frame", "clip"]


class ClipGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose statistics cover every frame of a clip.

    Frames ``[B*T, C, H, W]`` (``T`` from the :class:`VideoContext`) are normalised as the video ``[B, C, T, H, W]``;
    a video input is normalised as it is. Same parameters (and ``state_dict`` keys) as the group norm it replaces.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float, affine: bool, context: VideoContext) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        t = self.context.num_frames
        if t is None:
            raise ValueError("clip-wide group norm needs the clip length: call the inflated UNet with num_frames=T")
        video = frames_to_video(x, t)
        return video_to_frames(F.group_norm(video, self.num_groups, self.weight, self.bias, self.eps))


def use_clip_group_norm(root: nn.Module, context: VideoContext) -> int:
    """Replace every plain ``nn.GroupNorm`` inside ``root`` (not ``root`` itself) by a :class:`ClipGroupNorm`.

    The parameters are shared, not copied, so weights and names stay. Returns how many were replaced.
    """
    count = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.GroupNorm:
                clip = ClipGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine, context)
                if child.affine:
                    clip.weight, clip.bias = child.weight, child.bias
                setattr(parent, name, clip)
                count += 1
    return count


def _norm_act(norm: nn.Module, video: torch.Tensor) -> torch.Tensor:
    # Norms run on the frames layout: a plain GroupNorm is then per frame, a ClipGroupNorm per clip.
    return frames_to_video(F.silu(norm(video_to_frames(video))), video.shape[2])


class TemporalResnet(nn.Module):
    """The release's ``ResnetBlock3DCNN``: video ``[B, C, T, H, W] (+ temb [B, D]) -> [B, C, T, H, W]``.

    ``conv1`` has kernel ``(kernel_size, 1, 1)``, ``conv2`` always ``(3, 1, 1)`` (as in the release); both pad in time
    with
    zeros. ``temb_channels=None`` leaves out the time-embedding projection.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 5,
        temb_channels: int | None = None,
        groups: int = 32,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0))
        self.time_emb_proj = nn.Linear(temb_channels, channels) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, video: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.conv1(_norm_act(self.norm1, video))
        if self.time_emb_proj is not None:
            if temb is None:
                raise ValueError("this TemporalResnet projects a time embedding; pass temb [B, D]")
            hidden = hidden + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        return video + self.conv2(_norm_act(self.norm2, hidden))


class ShiftedAttention(nn.Module):
    """Spatial self-attention with temporally shifted keys/values: video ``[B, C, T, H, W] -> same`` (residual).

    Per frame, ``q = W_q LN(x_t)`` attends to keys and values whose first ``C // 2`` channels come from frame ``t-1``
    (:func:`vsr_core.nn.temporal_shift`, fold_div 2, direction right; zeros for frame 0). ``W_o`` starts at zero.
    """

    def __init__(self, channels: int, heads: int = 1, fold_div: int = 2) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"heads={heads} does not divide channels={channels}")
        self.heads, self.fold_div = heads, fold_div
        self.norm = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(channels, channels, bias=False)
        self.to_v = nn.Linear(channels, channels, bias=False)
        self.to_out = zero_module(nn.Linear(channels, channels))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = video.shape
        tokens = video_to_frames(video).flatten(2).transpose(1, 2)  # [B*T, H*W, C]
        x = self.norm(tokens)

        def shifted(y: torch.Tensor) -> torch.Tensor:
            return temporal_shift(y, fold_div=self.fold_div, direction="right", num_frames=t, channel_dim=-1)

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b * t, h * w, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.to_q(x)), heads(shifted(self.to_k(x))), heads(shifted(self.to_v(x)))
        )
        out = self.to_out(out.transpose(1, 2).reshape(b * t, h * w, c)) + tokens
        return frames_to_video(out.transpose(1, 2).reshape(b * t, c, h, w), t)


class TemporalModule(nn.Module):
    """The release's ``TemporalModule3D``: video ``[B, C, T, H, W] -> [B, C, T, H, W]`` (identity at initialisation).

    ``x + shift_conv(R_s(R_t(x, temb), temb))`` (module docstring); ``temb`` ``[B, D]`` is the UNet's time +
    noise-level
    embedding of the clip, read from the :class:`VideoContext` when the module runs as a site of the inflated UNet.
    ``groups``: the group count of its norms (the release's 32; the UNet's ``norm_num_groups``).
    """

    def __init__(
        self,
        channels: int,
        temb_channels: int,
        context: VideoContext,
        *,
        groups: int = 32,
        shift_attention: bool = False,
    ) -> None:
        super().__init__()
        self.context = context
        self.temporal_resnet = TemporalResnet(channels, kernel_size=5, temb_channels=temb_channels, groups=groups)
        self.spatial_resnet = ResnetBlock2D(
            in_channels=channels, out_channels=channels, temb_channels=temb_channels, groups=groups, eps=1e-6
        )
        self.shift_attention = ShiftedAttention(channels) if shift_attention else None
        self.shift_conv = zero_module(nn.Conv2d(channels, channels, kernel_size=1))

    def forward(self, video: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.context.clip_time_embedding if temb is None else temb
        if temb is None:
            raise ValueError("TemporalModule needs the UNet's time embedding (run it inside the inflated UNet)")
        t = video.shape[2]
        hidden = self.temporal_resnet(video, temb)
        frames = self.spatial_resnet(video_to_frames(hidden), temb.repeat_interleave(t, dim=0))
        hidden = frames_to_video(frames, t)
        if self.shift_attention is not None:
            hidden = self.shift_attention(hidden)
        return video + frames_to_video(self.shift_conv(video_to_frames(hidden)), t)
