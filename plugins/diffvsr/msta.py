"""Multi-scale temporal attention (MSTA, paper v2 Sec. 3.4, Eq. 3-4) and where it sits in the image UNet.

For the tokens ``h`` ``[B*T, H*W, C]`` of a spatial transformer block (the release applies it inside every
``BasicTransformerBlock``, after cross-attention and before the feed-forward layer):

* Eq. 3 (full resolution): ``h_ori = TA(N(h)) + h``;
* Eq. 3 (half resolution): ``h_down = TA_s(N_s(h_dn)) + h_dn`` with ``h_dn = DConv(h)``, a 3x3 stride-2 convolution;
* Eq. 4 as the release computes it: ``h' = h_ori + alpha * UPConv(h_down)``, ``UPConv`` a 4x4 stride-2 transposed
  convolution (bilinearly resized to ``H x W`` when ``H`` or ``W`` is odd), ``alpha = 0.5``.

The paper prints Eq. 4 as ``h' = h_down + alpha * UPConv(h_down)``, which adds a half-resolution tensor to a
full-resolution one; the release's reading (``h_ori`` in place of the first ``h_down``) is the only one that
type-checks
and the one implemented (docs/methods/diffvsr.md).

``TA`` is :class:`~diffvsr.temporal_attention.TemporalAttention`. ``N`` is ``LayerNorm`` in the release (its blocks are
built without ``num_embeds_ada_norm``), the paper writes AdaLN: ``norm="ada"`` uses :class:`TimestepAdaLayerNorm`.

**Identity at initialisation.** Both attention output projections (weight and bias) and ``UPConv`` (weight and
bias) start at zero, so ``h' = h`` exactly and the image model is reproduced. The release zeroes only the attention
output *weights*, so its MSTA adds ``b_o + 0.5 * UPConv(...)`` (random) from the first step.

:func:`attach_msta` places the module with two hooks on a diffusers ``BasicTransformerBlock`` without changing its
code or its weight names: a pre-hook on ``norm2`` records the residual stream ``r`` (the block's hidden states after
self-attention), a hook on ``attn2`` turns its output ``a`` into ``a + delta(a + r)``, so the block continues with
``a + r + delta(a + r) = h'`` for ``h = a + r``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from diffvsr.temporal_attention import TemporalAttention
from diffvsr.video_context import VideoContext
from vsr_core.nn import zero_module

__all__ = ["MSTA_NORMS", "MultiScaleTemporalAttention", "TimestepAdaLayerNorm", "attach_msta"]

MSTA_NORMS = ("layer", "ada")
MSTANorm = Literal["layer", "ada"]


class TimestepAdaLayerNorm(nn.Module):
    """AdaLN on the diffusion timestep: ``LN(x) * (1 + scale_t) + shift_t`` for sequences ``[N, T, C]``.

    ``(scale_t, shift_t) = Linear(SiLU(E[t]))`` with a timestep table ``E`` of ``num_timesteps`` rows, the form of the
    AdaLayerNorm in the release's code base. The linear layer starts at zero, so it starts as ``LN`` without affine.
    """

    def __init__(self, channels: int, num_timesteps: int = 1000) -> None:
        super().__init__()
        self.emb = nn.Embedding(num_timesteps, channels)
        self.linear = zero_module(nn.Linear(channels, 2 * channels))
        self.norm = nn.LayerNorm(channels, elementwise_affine=False)

    def forward(self, sequence: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """``sequence [N, T, C]``, ``timestep [B]`` long with ``N`` a multiple of ``B`` (clip-major rows)."""
        scale, shift = self.linear(F.silu(self.emb(timestep))).chunk(2, dim=-1)  # [B, C] each
        repeat = sequence.shape[0] // timestep.shape[0]
        scale = scale.repeat_interleave(repeat, dim=0)[:, None]
        shift = shift.repeat_interleave(repeat, dim=0)[:, None]
        return self.norm(sequence) * (1 + scale) + shift


class MultiScaleTemporalAttention(nn.Module):
    """MSTA: ``delta(tokens [B*T, H*W, C], T, H, W) -> [B*T, H*W, C]`` with ``h' = h + delta`` (Eq. 3-4, module doc).

    Args:
        channels: ``C``.
        heads: attention heads of both temporal attentions (the spatial transformer's head count in the release).
        alpha: fusion weight of the half-resolution branch (0.5).
        norm: ``"layer"`` (release) or ``"ada"`` (the paper's AdaLN on the timestep).
        zero_init: start as the identity (attention outputs and ``UPConv`` zero).
    """

    def __init__(
        self, channels: int, heads: int, *, alpha: float = 0.5, norm: MSTANorm = "layer", zero_init: bool = True
    ) -> None:
        super().__init__()
        if norm not in MSTA_NORMS:
            raise ValueError(f"MSTA norm must be one of {', '.join(MSTA_NORMS)}, got {norm!r}")
        self.channels, self.alpha, self.norm_kind = channels, alpha, norm

        def make_norm() -> nn.Module:
            return TimestepAdaLayerNorm(channels) if norm == "ada" else nn.LayerNorm(channels)

        self.norm = make_norm()
        self.attention = TemporalAttention(channels, heads, zero_init=zero_init)
        self.down_conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        self.norm_small = make_norm()
        self.attention_small = TemporalAttention(channels, heads, zero_init=zero_init)
        self.up_conv = nn.ConvTranspose2d(channels, channels, kernel_size=4, stride=2, padding=1)
        if zero_init:
            zero_module(self.up_conv)

    def _normed(self, norm: nn.Module, sequence: torch.Tensor, timestep: torch.Tensor | None) -> torch.Tensor:
        if self.norm_kind == "ada":
            if timestep is None:
                raise ValueError("MSTA with AdaLN needs the timestep of the clip")
            return norm(sequence, timestep)
        return norm(sequence)

    def forward(
        self, tokens: torch.Tensor, num_frames: int, height: int, width: int, timestep: torch.Tensor | None = None
    ) -> torch.Tensor:
        bt, hw, c = tokens.shape
        b = bt // num_frames

        def to_sequence(x: torch.Tensor) -> torch.Tensor:  # [B*T, h*w, C] -> [B*h*w, T, C]
            return x.reshape(b, num_frames, -1, c).transpose(1, 2).reshape(-1, num_frames, c)

        def to_tokens(x: torch.Tensor, positions: int) -> torch.Tensor:  # inverse of to_sequence
            return x.reshape(b, positions, num_frames, c).transpose(1, 2).reshape(bt, positions, c)

        # Eq. 3, full resolution: TA(N(h)) (its residual h is added by the caller).
        full = to_tokens(self.attention(self._normed(self.norm, to_sequence(tokens), timestep)), hw)

        # Eq. 3, half resolution: h_down = TA_s(N_s(DConv(h))) + DConv(h).
        grid = tokens.transpose(1, 2).reshape(bt, c, height, width)
        small = self.down_conv(grid)  # [B*T, C, h', w']
        sh, sw = small.shape[-2:]
        small_tokens = small.flatten(2).transpose(1, 2)  # [B*T, h'*w', C]
        small_seq = to_sequence(small_tokens)
        small_tokens = to_tokens(self.attention_small(self._normed(self.norm_small, small_seq, timestep)), sh * sw)
        h_down = small_tokens + small.flatten(2).transpose(1, 2)

        # Eq. 4 (release reading): h' = h_ori + alpha * UPConv(h_down).
        up = self.up_conv(h_down.transpose(1, 2).reshape(bt, c, sh, sw))
        if up.shape[-2:] != (height, width):
            up = F.interpolate(up, size=(height, width), mode="bilinear", align_corners=False)
        return full + self.alpha * up.flatten(2).transpose(1, 2)


class _Residual:
    """Forward pre-hook on ``norm2``: records the residual stream entering cross-attention."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.holder["residual"] = args[0]


class _AddDelta:
    """Forward hook on ``attn2``: output ``a`` becomes ``a + delta(a + residual)``."""

    def __init__(self, msta: MultiScaleTemporalAttention, holder: dict[str, Any], context: VideoContext) -> None:
        self.msta, self.holder, self.context = msta, holder, context

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        residual = self.holder.pop("residual", None)
        if residual is None or self.context.num_frames is None or self.context.spatial_size is None:
            raise ValueError("the inflated UNet must be called with num_frames=T (MSTA needs the clip length)")
        height, width = self.context.spatial_size
        hidden = output + residual
        return output + self.msta(hidden, self.context.num_frames, height, width, self.context.clip_timestep)


def attach_msta(block: nn.Module, msta: MultiScaleTemporalAttention, context: VideoContext) -> None:
    """Add ``msta`` to a diffusers ``BasicTransformerBlock`` as its child ``msta`` (hooks, module docstring)."""
    if getattr(block, "attn2", None) is None or getattr(block, "norm2", None) is None:
        raise ValueError(f"MSTA goes after cross-attention; {type(block).__name__} has no attn2/norm2")
    holder: dict[str, Any] = {}
    block.add_module("msta", msta)
    block.norm2.register_forward_pre_hook(_Residual(holder))
    block.attn2.register_forward_hook(_AddDelta(msta, holder, context))
