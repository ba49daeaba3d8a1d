"""DiffVSR's video UNet: the SD x4 upscaler's ``UNet2DConditionModel`` inflated to video with its temporal layers.

The image UNet keeps running per frame (``[B*T, 7, h, w]``: 4 latent + 3 noised LR channels) and keeps every weight
name, so the SD x4 upscaler's ``unet/`` loads unchanged. :func:`inflate_unet` adds, in place (the release's
``UNet3DVSRModel`` layout, :class:`~diffvsr.options.TemporalLayers`):

* before every spatial transformer a (3,1,1) 3D residual block (``vsr_core.nn.TemporalConvBlock``, attached after
  the ResNet that feeds the transformer: ``<block>.resnets.<j>.temporal``);
* inside every transformer block, after cross-attention, multi-scale temporal attention (Eq. 3-4,
  ``<...>.transformer_blocks.0.msta``);
* after every down block, the mid block and every up block a :class:`~diffvsr.temporal_layers.TemporalModule`
  (``down_blocks.<i>.temporal``, ``mid_block.temporal``, ``up_blocks.<i>.temporal``); the skip connections a down
  block hands to the up path are taken before it, as in the release.

Every temporal layer starts as the identity, so the inflated UNet computes exactly what the image UNet computes on
each frame (``group_norm="frame"``). Call it as ``unet(frames, t, encoder_hidden_states=..., class_labels=...,
num_frames=T)`` or through :func:`video_unet_forward` with video tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from diffvsr.msta import MultiScaleTemporalAttention, attach_msta
from diffvsr.options import TemporalLayers
from diffvsr.temporal_layers import ClipGroupNorm, TemporalModule, use_clip_group_norm
from diffvsr.video_context import VideoContext
from vsr_core.errors import ConfigError
from vsr_core.nn import (
    TemporalConvBlock,
    frames_to_video,
    inflate_to_video,
    repeat_per_frame,
    temporal_modules,
    video_to_frames,
)

__all__ = [
    "RESNET_3D_EPS",
    "inflate_unet",
    "msta_modules",
    "resnet_3d_sites",
    "temporal_module_sites",
    "temporal_parameter_names",
    "video_context",
    "video_unet_forward",
]

#: The release's ``ResnetBlock3DCNN`` normalises with eps 1e-6 (the core block's default is 1e-5).
RESNET_3D_EPS = 1e-6
_CONTEXT_ATTR = "_diffvsr_context"


def resnet_3d_sites(unet: UNet2DConditionModel) -> list[str]:
    """Names of the ResNets whose output enters a spatial transformer (``<block>.resnets.<j>``)."""
    sites = []
    blocks = [(f"down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
    blocks += [("mid_block", unet.mid_block)] + [(f"up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)]
    for name, block in blocks:
        attentions = getattr(block, "attentions", None) or []
        sites += [f"{name}.resnets.{j}" for j in range(len(attentions))]
    return sites


def temporal_module_sites(unet: UNet2DConditionModel) -> list[str]:
    """``down_blocks.<i>``, ``mid_block``, ``up_blocks.<i>``: where the temporal modules follow."""
    return (
        [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
        + ["mid_block"]
        + [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    )


def video_context(unet: nn.Module) -> VideoContext:
    """The :class:`VideoContext` of an inflated UNet."""
    context = getattr(unet, _CONTEXT_ATTR, None)
    if context is None:
        raise ConfigError(f"{type(unet).__name__} is not a DiffVSR-inflated UNet")
    return context


class _CallHook:
    """Root pre-hook (registered before the core's): record ``T`` and the timesteps of this call."""

    def __init__(self, context: VideoContext) -> None:
        self.context = context

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        self.context.num_frames = kwargs.get("num_frames")
        timestep = kwargs["timestep"] if "timestep" in kwargs else (args[1] if len(args) > 1 else None)
        self.context.timestep = torch.as_tensor(timestep) if timestep is not None else None
        if self.context.timestep is not None and self.context.timestep.ndim == 0:
            self.context.timestep = self.context.timestep.reshape(1)
        self.context.time_embedding = None
        self.context.spatial_size = None


def _drop_video_arguments(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Without core temporal sites nothing removes ``num_frames`` from the call: do it here (after ``_CallHook``)."""
    kwargs.pop("num_frames", None)
    kwargs.pop("temporal_kwargs", None)
    return args, kwargs


class _TimeEmbeddingHook:
    """Pre-hook of the first down block: its ``temb`` is the UNet's time + noise-level embedding."""

    def __init__(self, context: VideoContext) -> None:
        self.context = context

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if "temb" in kwargs:
            self.context.time_embedding = kwargs["temb"]
        else:
            self.context.time_embedding = args[1] if len(args) > 1 else None


class _SpatialSizeHook:
    """Pre-hook of a spatial transformer: the ``(H, W)`` of the tokens its blocks (and their MSTA) see."""

    def __init__(self, context: VideoContext) -> None:
        self.context = context

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        self.context.spatial_size = (int(hidden.shape[-2]), int(hidden.shape[-1]))


def _resnet_3d(channels: int, groups: int) -> nn.Module:
    block = TemporalConvBlock(channels, kernel_size=3, spatial_kernel_size=1, norm_groups=groups)
    for norm in (block.norm1, block.norm2):
        norm.eps = RESNET_3D_EPS
    return block


def inflate_unet(unet: UNet2DConditionModel, layers: TemporalLayers | None = None) -> UNet2DConditionModel:
    """Add DiffVSR's temporal layers to ``unet`` in place (module docstring) and return it.

    ``layers`` selects them (default: all, release layout). Image weights and their names are unchanged.
    """
    layers = TemporalLayers.coerce(layers)
    if getattr(unet, _CONTEXT_ATTR, None) is not None:
        raise ConfigError("this UNet is already inflated")
    context = VideoContext()
    setattr(unet, _CONTEXT_ATTR, context)
    # Registered before inflate_to_video's own pre-hook, which removes num_frames from the call.
    unet.register_forward_pre_hook(_CallHook(context), with_kwargs=True)
    unet.down_blocks[0].register_forward_pre_hook(_TimeEmbeddingHook(context), with_kwargs=True)
    temb_channels = unet.time_embedding.linear_2.out_features
    groups = unet.config.norm_num_groups  # 32 at full size, as every group norm of the release

    transformers = [m for m in unet.modules() if isinstance(m, Transformer2DModel)]
    for transformer in transformers:
        transformer.register_forward_pre_hook(_SpatialSizeHook(context), with_kwargs=True)
        if layers.msta:
            for block in transformer.transformer_blocks:
                if not isinstance(block, BasicTransformerBlock):
                    continue
                channels = block.norm3.normalized_shape[0]
                msta = MultiScaleTemporalAttention(
                    channels, block.attn1.heads, alpha=layers.msta_alpha, norm=layers.msta_norm
                )
                attach_msta(block, msta, context)
    if layers.resnet_3d:
        inflate_to_video(unet, lambda site: _resnet_3d(site.channels, groups), after=resnet_3d_sites(unet))
    if layers.temporal_modules:
        inflate_to_video(
            unet,
            lambda site: TemporalModule(
                site.channels, temb_channels, context, groups=groups, shift_attention=layers.shift_attention
            ),
            after=temporal_module_sites(unet),
        )
    if not (layers.resnet_3d or layers.temporal_modules):
        unet.register_forward_pre_hook(_drop_video_arguments, with_kwargs=True)
    if layers.group_norm == "clip":
        for module in list(unet.modules()):
            if isinstance(module, ResnetBlock2D):
                use_clip_group_norm(module, context)
        for module in temporal_modules(unet).values():
            use_clip_group_norm(module, context)
        out = unet.conv_norm_out
        clip = ClipGroupNorm(out.num_groups, out.num_channels, out.eps, out.affine, context)
        clip.weight, clip.bias = out.weight, out.bias
        unet.conv_norm_out = clip
    return unet


def msta_modules(unet: nn.Module) -> dict[str, MultiScaleTemporalAttention]:
    """``{name: module}`` of the MSTA layers of an inflated UNet."""
    return {n: m for n, m in unet.named_modules() if isinstance(m, MultiScaleTemporalAttention)}


def temporal_parameter_names(unet: nn.Module) -> set[str]:
    """Names (in ``unet.named_parameters()``) of every parameter of the temporal layers (what PLS stage 1 trains)."""
    prefixes = tuple(f"{name}.temporal." for name in temporal_modules(unet)) + tuple(
        f"{n}." for n in msta_modules(unet)
    )
    return {name for name, _ in unet.named_parameters() if name.startswith(prefixes)}


def video_unet_forward(
    unet: nn.Module,
    latents: torch.Tensor,
    low_res: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    noise_level: torch.Tensor,
) -> torch.Tensor:
    """The inflated UNet on video tensors (Eq. 1's ``f_theta(z_t, x_tau; c, t)``).

    Args:
        latents: ``z_t`` ``[B, c, T, h, w]``.
        low_res: the noised LR video ``x_tau`` ``[B, 3, T, h, w]`` (same size as the latents).
        timestep: ``[B]`` long diffusion timesteps.
        text: ``[B, L, D]`` text embeddings.
        noise_level: ``[B]`` long LR noise levels (the UNet's ``class_labels``).

    Returns:
        The model output (``v``) ``[B, c, T, h, w]``.
    """
    t = latents.shape[2]
    frames = video_to_frames(torch.cat([latents, low_res.to(latents.dtype)], dim=1))
    out = unet(
        frames,
        repeat_per_frame(timestep, t),
        encoder_hidden_states=repeat_per_frame(text, t),
        class_labels=repeat_per_frame(noise_level, t),
        num_frames=t,
    ).sample
    return frames_to_video(out, t)
