"""diffusers' ``WanTransformer3DModel`` forward, opened up: embed -> blocks -> head as separate calls.

PS-SR needs what the plain forward hides: the base model reads ``cat([z_L, z_L])`` through its own
widened patch embedding and writes through its own (trainable) head while sharing the frozen Wan
blocks (Sec. 3.3), and the draft model consumes the hidden states *entering* chosen base blocks
(Sec. 3.4). The three functions below are exactly ``WanTransformer3DModel.forward`` split at the
block loop (tested against it), with the patch embedding and the output projection replaceable.

Shapes: latents ``[B, C, T, H, W]``; tokens ``[B, N, D]`` with ``N = T/p_t * H/p_h * W/p_w``;
text ``[B, L, text_dim]``; timestep ``[B]`` float (the model timestep, ``sigma * 1000``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from torch import nn

__all__ = ["TokenContext", "embed", "run_blocks", "unembed", "widen_patch_embedding"]


@dataclass
class TokenContext:
    """What every block and the head of one forward pass share.

    Attributes:
        text: embedded text ``[B, L, D]``.
        temb: timestep embedding ``[B, D]`` (the head's modulation).
        timestep_proj: per-block modulation ``[B, 6, D]``.
        rotary: Wan's 3D RoPE ``(cos, sin)``, each ``[1, N, 1, head_dim]``.
        shape: ``(B, T, H, W)`` of the latents before patching.
    """

    text: torch.Tensor
    temb: torch.Tensor
    timestep_proj: torch.Tensor
    rotary: Any
    shape: tuple[int, int, int, int]


def embed(
    model: WanTransformer3DModel,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    text: torch.Tensor,
    patch_embedding: nn.Module | None = None,
) -> tuple[torch.Tensor, TokenContext]:
    """``latents [B, C, T, H, W]`` -> ``(tokens [B, N, D], context)`` as the start of ``model.forward``.

    ``patch_embedding`` replaces ``model.patch_embedding`` (PS-SR's base reads 2x the channels).
    """
    b, _, t, h, w = latents.shape
    rotary = model.rope(latents)
    tokens = (patch_embedding or model.patch_embedding)(latents)
    tokens = tokens.flatten(2).transpose(1, 2).contiguous()
    temb, timestep_proj, text_states, _ = model.condition_embedder(timestep, text, None, timestep_seq_len=None)
    context = TokenContext(text_states, temb, timestep_proj.unflatten(1, (6, -1)), rotary, (b, t, h, w))
    return tokens, context


def run_blocks(
    blocks: Sequence[nn.Module],
    tokens: torch.Tensor,
    context: TokenContext,
    capture: Sequence[int] = (),
    before_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``blocks`` on ``tokens [B, N, D]``; returns ``(tokens, captured)``.

    ``captured[j]`` is the hidden state *entering* block ``capture[j]`` (detached: the draft model
    reads the base's features as fixed inputs, Sec. 3.4). ``before_block(i, tokens)`` may replace
    the input of block ``i`` (the draft's feature fusion).
    """
    wanted = {index: slot for slot, index in enumerate(capture)}
    captured: list[torch.Tensor | None] = [None] * len(capture)
    for i, block in enumerate(blocks):
        if i in wanted:
            captured[wanted[i]] = tokens.detach()
        if before_block is not None:
            tokens = before_block(i, tokens)
        tokens = block(tokens, context.text, context.timestep_proj, context.rotary)
    missing = [capture[slot] for slot, value in enumerate(captured) if value is None]
    if missing:
        raise ValueError(f"blocks {missing} do not exist (the model has {len(blocks)})")
    return tokens, captured  # type: ignore[return-value]


def unembed(
    model: WanTransformer3DModel, tokens: torch.Tensor, context: TokenContext, proj_out: nn.Module | None = None
) -> torch.Tensor:
    """``tokens [B, N, D]`` -> output ``[B, C_out, T, H, W]`` as the end of ``model.forward``.

    ``proj_out`` replaces ``model.proj_out`` (PS-SR's base trains its own head).
    """
    b, t, h, w = context.shape
    p_t, p_h, p_w = model.config.patch_size
    shift, scale = (model.scale_shift_table.to(context.temb.device) + context.temb.unsqueeze(1)).chunk(2, dim=1)
    tokens = (model.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
    tokens = (proj_out or model.proj_out)(tokens)
    tokens = tokens.reshape(b, t // p_t, h // p_h, w // p_w, p_t, p_h, p_w, -1)
    return tokens.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def widen_patch_embedding(patch_embedding: nn.Conv3d, factor: int = 2) -> nn.Conv3d:
    """A copy of ``patch_embedding`` reading ``factor`` times the channels, the new ones zero-initialised.

    PS-SR's base input is ``cat([z_L, z_L])`` (the release's ``expand_patch_embedding``): at
    initialisation the widened layer computes exactly what the original computes on the first half.
    """
    old = patch_embedding
    new = nn.Conv3d(
        old.in_channels * factor,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    ).to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    return new
