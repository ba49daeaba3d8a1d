"""The two DOVER backbones, inference only, with parameter names that match the public ``DOVER.pth``.

DOVER (Wu et al., ICCV 2023, "Exploring Video Quality Assessment on User Generated Contents from
Aesthetic and Technical Perspectives"; github.com/VQAssessment/DOVER) scores a clip with two views:

* technical branch: a Video Swin-T (Liu et al. 2022; patch 2x4x4, C=96, depths 2-2-6-2, heads
  3-6-12-24, window 8x7x7) with FAST-VQA's *gated relative position bias* (Wu et al., ECCV 2022):
  in stages 1-3 every attention pair gets ``bias * g + fragment_bias * (1 - g)`` where ``g`` is the
  L1 distance between the 7x7 fragment-grid cells of the two tokens (0 inside one fragment). This
  is what the released code computes (``fgate = fmask.abs().sum(-1)``), so ``g`` is not clamped to
  {0, 1}; we keep that because the released weights were trained with it.
* aesthetic branch: ConvNeXt-T (Liu et al. 2022) inflated to 3D: stem 2x4x4, downsampling 1x2x2,
  depth-wise kernels of temporal length 1,3,1,1,3,1,... (their ``inflate_strategy='131'``).

Both map ``[N,3,32,224,224]`` to features ``[N,768,16,7,7]``; other sizes work too (windows shrink
to the feature map and maps are padded like the released code does), which the tests use to stay
fast. Dropout / stochastic depth are absent: this is an evaluator, it never trains.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AestheticConvNeXt3D",
    "ChannelsFirstLayerNorm",
    "CONVNEXT_DEPTHS",
    "CONVNEXT_DIMS",
    "CONVNEXT_TEMPORAL_KERNELS",
    "ConvNeXtBlock3D",
    "fragment_gate",
    "Mlp",
    "PatchEmbed3D",
    "PatchMerging",
    "relative_position_index",
    "shift_mask",
    "SWIN_DEPTHS",
    "SWIN_GATED",
    "SWIN_HEADS",
    "SWIN_WINDOW",
    "SwinBlock3D",
    "SwinStage",
    "TechnicalSwin3D",
    "WindowAttention3D",
]

# Video Swin-T as configured by DOVER's ``swin_tiny_grpb`` backbone (dover/models/swin_backbone.py defaults).
SWIN_DEPTHS = (2, 2, 6, 2)
SWIN_HEADS = (3, 6, 12, 24)
SWIN_WINDOW = (8, 7, 7)
SWIN_GATED = (True, True, True, False)  # their ``frag_biases``: no fragment table in the last stage
# ConvNeXt-T widths/depths, and the temporal kernel length cycle of the inflated depth-wise convs.
CONVNEXT_DEPTHS = (3, 3, 9, 3)
CONVNEXT_DIMS = (96, 192, 384, 768)
CONVNEXT_TEMPORAL_KERNELS = (1, 3, 1)


def _fit_window(size: tuple[int, int, int], window: tuple[int, ...], shift: tuple[int, ...]):
    """Window and shift for a feature map ``size`` (D,H,W): a window not smaller than the map covers it, unshifted."""
    window, shift = list(window), list(shift)
    for i, s in enumerate(size):
        if s <= window[i]:
            window[i], shift[i] = s, 0
    return tuple(window), tuple(shift)


def _partition(x: torch.Tensor, window: tuple[int, int, int]) -> torch.Tensor:
    """``[B,D,H,W,C]`` -> windows ``[B*nW, wd*wh*ww, C]`` (window-major order, as Video Swin)."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def _merge(windows: torch.Tensor, window: tuple[int, int, int], b: int, d: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_partition`: ``[B*nW, N, C]`` -> ``[B,D,H,W,C]``."""
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def relative_position_index(window: tuple[int, int, int]) -> torch.Tensor:
    """``[N,N]`` index into the ``(2wd-1)(2wh-1)(2ww-1)``-row bias table for every token pair of a window."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in window), indexing="ij")).flatten(1)  # [3,N]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [N,N,3], i minus j
    rel = rel + torch.tensor([n - 1 for n in window])  # offsets start at 0
    strides = torch.tensor([(2 * window[1] - 1) * (2 * window[2] - 1), 2 * window[2] - 1, 1])
    return (rel * strides).sum(-1)


def fragment_gate(
    size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int], device
) -> torch.Tensor:
    """``[nW,N,N]`` float: L1 distance between the fragment cells of each token pair in each window.

    The map ``size`` (padded D,H,W) is split into a 1 x wh x ww grid of "fragments" by nearest
    resampling of the cell coordinates (at stage 1 of a 224 px fragment view each 32 px fragment
    is 8x8 tokens), rolled by the window shift and windowed like the features themselves.
    """
    grid = torch.stack(
        torch.meshgrid(torch.arange(1), torch.arange(window[1]), torch.arange(window[2]), indexing="ij")
    )
    cells = F.interpolate(grid[None].float().to(device), size=size, mode="nearest").long().permute(0, 2, 3, 4, 1)
    cells = torch.roll(cells, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    cells = _partition(cells, window)  # [nW,N,3]
    return (cells[:, None, :] - cells[:, :, None]).abs().sum(-1).float()


def shift_mask(
    size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int], device
) -> torch.Tensor:
    """``[nW,N,N]`` additive mask (0 / -100) keeping shifted windows from mixing regions that the roll wrapped around.

    Along each axis the padded map has three regions ``[0, P-w)``, ``[P-w, P-s)``, ``[P-s, P)``;
    an axis with no shift is one region (what the reference slicing yields for ``s = 0``).
    """
    labels = torch.zeros(size, dtype=torch.long)
    for axis, (p, w, s) in enumerate(zip(size, window, shift)):
        i = torch.arange(p)
        region = torch.zeros(p, dtype=torch.long) if s == 0 else (i >= p - w).long() + (i >= p - s).long()
        labels = labels * 3 + region.view([-1 if a == axis else 1 for a in range(3)])
    win = _partition(labels[None, ..., None].to(device), window).squeeze(-1)  # [nW,N]
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros(diff.shape, device=device).masked_fill(diff != 0, -100.0)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with (gated) relative position bias.

    Args:
        dim: channels C. heads: attention heads. window: (wd, wh, ww).
        gated: add the fragment bias table (FAST-VQA's gated relative position bias).
    """

    def __init__(self, dim: int, heads: int, window: tuple[int, int, int], gated: bool) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        rows = math.prod(2 * n - 1 for n in window)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, heads))
        if gated:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros(rows, heads))
        # Persistent: the released state dict carries it, and strict loading must see it.
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, gate: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B*nW,N,C]``, ``gate``/``mask [nW,N,N]`` -> ``[B*nW,N,C]``."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B*nW,h,N,N]
        # A window clipped to a small map uses the top-left N x N block of the full index (as released).
        index = self.relative_position_index[:n, :n].reshape(-1)
        bias = self.relative_position_bias_table[index].reshape(n, n, -1).permute(2, 0, 1)  # [h,N,N]
        if hasattr(self, "fragment_position_bias_table"):
            frag = self.fragment_position_bias_table[index].reshape(n, n, -1).permute(2, 0, 1)
            g = gate.unsqueeze(1)  # [nW,1,N,N]
            bias = bias * g + frag * (1 - g)  # [nW,h,N,N]
        nw = gate.shape[0]
        attn = attn.view(bw // nw, nw, self.heads, n, n) + bias
        if mask is not None:
            attn = attn + mask[None, :, None]
        attn = attn.view(bw, self.heads, n, n).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    """``Linear(C, 4C) -> GELU -> Linear(4C, C)`` on ``[..., C]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock3D(nn.Module):
    """Pre-norm (shifted-)window attention + MLP block on ``[B,D,H,W,C]``."""

    def __init__(
        self, dim: int, heads: int, window: tuple[int, int, int], shift: tuple[int, int, int], gated: bool
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, heads, window, gated)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,D,H,W,C]`` -> same shape."""
        b, d, h, w = x.shape[:4]
        window, shift = _fit_window((d, h, w), self.window, self.shift)
        y = self.norm1(x)
        # Zero-pad after the norm to whole windows; padded tokens take part in attention (as released).
        pads = [(window[i] - s % window[i]) % window[i] for i, s in enumerate((d, h, w))]
        y = F.pad(y, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        size = tuple(y.shape[1:4])
        shifted = any(s > 0 for s in shift)
        if shifted:
            y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        gate = fragment_gate(size, window, shift, x.device)
        mask = shift_mask(size, window, shift, x.device) if shifted else None
        y = self.attn(_partition(y, window), gate, mask)
        y = _merge(y, window, b, *size)
        if shifted:
            y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
        x = x + y[:, :d, :h, :w]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 spatial token merging ``[B,D,H,W,C]`` -> ``[B,D,H/2,W/2,2C]`` (odd sizes zero-padded)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:4]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order (even,even), (odd,even), (even,odd), (odd,odd) in (H,W): the released weights depend on it.
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating unshifted / shifted-by-half windows, then optional patch merging."""

    def __init__(
        self, dim: int, depth: int, heads: int, window: tuple[int, int, int], gated: bool, merge: bool
    ) -> None:
        super().__init__()
        half = tuple(n // 2 for n in window)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, heads, window, (0, 0, 0) if i % 2 == 0 else half, gated) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed3D(nn.Module):
    """``[B,3,T,H,W]`` -> ``[B,T/2,H/4,W/4,C]`` tokens (zero-padded to whole 2x4x4 patches), layer-normed."""

    def __init__(self, dim: int = 96, patch: tuple[int, int, int] = (2, 4, 4)) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [(-s) % p for s, p in zip(x.shape[2:], self.patch)]
        x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
        return self.norm(self.proj(x).permute(0, 2, 3, 4, 1))


class TechnicalSwin3D(nn.Module):
    """DOVER's technical backbone: Video Swin-T with gated relative position bias.

    ``[B,3,T,H,W]`` normalised fragments -> ``[B,768,T/2,H/32,W/32]`` (``[B,768,16,7,7]`` for 32x224x224).
    """

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed3D(96)
        self.layers = nn.ModuleList(
            SwinStage(96 * 2**i, SWIN_DEPTHS[i], SWIN_HEADS[i], SWIN_WINDOW, SWIN_GATED[i], merge=i < 3)
            for i in range(4)
        )
        self.norm = nn.LayerNorm(768)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).permute(0, 4, 1, 2, 3)


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of ``[B,C,...]`` (ConvNeXt's stem/downsampling norm), eps 1e-6."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        shape = (-1,) + (1,) * (x.ndim - 2)
        return self.weight.view(shape) * ((x - mean) / torch.sqrt(var + self.eps)) + self.bias.view(shape)


class ConvNeXtBlock3D(nn.Module):
    """Depth-wise ``(k,7,7)`` conv -> LayerNorm -> MLP (4x) -> layer scale ``gamma``, residual; on ``[B,C,T,H,W]``."""

    def __init__(self, dim: int, temporal_kernel: int) -> None:
        super().__init__()
        k = temporal_kernel
        self.dwconv = nn.Conv3d(dim, dim, kernel_size=(k, 7, 7), padding=(k // 2, 3, 3), groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 4, 1))
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 4, 1, 2, 3)


class AestheticConvNeXt3D(nn.Module):
    """DOVER's aesthetic backbone: ConvNeXt-T inflated to 3D.

    ``[B,3,T,H,W]`` normalised resized view -> ``[B,768,T/2,H/32,W/32]`` (``[B,768,16,7,7]`` for 32x224x224).
    """

    def __init__(self) -> None:
        super().__init__()
        dims = CONVNEXT_DIMS
        stem = nn.Sequential(
            nn.Conv3d(3, dims[0], kernel_size=(2, 4, 4), stride=(2, 4, 4)), ChannelsFirstLayerNorm(dims[0])
        )
        downs = [
            nn.Sequential(
                ChannelsFirstLayerNorm(dims[i]),
                nn.Conv3d(dims[i], dims[i + 1], kernel_size=(1, 2, 2), stride=(1, 2, 2)),
            )
            for i in range(3)
        ]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        cycle = CONVNEXT_TEMPORAL_KERNELS
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock3D(dims[i], cycle[j % len(cycle)]) for j in range(CONVNEXT_DEPTHS[i])))
            for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
