"""The Recurrent Temporal Shift (RTS) module (UltraVSR Sec. 3.3, Eq. 5-8), in the release's layout.

An RTS module is an RTS-convolution unit followed by an RTS-attention unit, both residual with a zeroed
output projection, so a network with RTS modules inserted computes exactly the image network at
initialisation. Parameter names are the release's (``RTSConv.conv1`` / ``conv_blocks.0`` / ``conv3``,
``RTSAtten.temperature`` / ``qkv`` / ``qkv_dwconv`` / ``project_out``), so ``model_vsr.pkl`` loads unchanged.

Every unit is written as *stages* for :class:`vsr_core.nn.BlockwiseRunner` (temporally asynchronous
inference, Sec. 3.5): a per-frame projection, the step that mixes frames (the shift of Eq. 5, the
attention over shifted keys/values of Eq. 7) on the whole clip, and a per-frame output projection with the
residual. The stages read and write one entry (``key``) of a dict state of frames tensors ``[B*T, ...]``
(row ``b*T + t``) and pass every other entry through, so they slot into a staged UNet or VAE decoder.
For inference without autograd, :meth:`RTSModule.inplace_stage` computes the same module as ONE stage that
adds both residuals into its input in place: the block-wise runner's spatial groups write their output
into a new buffer while the input still exists, so the staged form holds the feature map twice for the
whole clip (the VAE decoder's last one is at full output resolution); in place, only the feature map and
the unit's reduced features (``conv1(x)``, then ``q, k, v``) exist for all frames.

Release vs paper (see docs/methods/ultravsr.md):

* Eq. 6 writes ReLU; the release uses SiLU (``activation``).
* Eq. 5 keeps the middle third ``F_i^0``; the release writes the shifted thirds into ``zeros_like`` and so
  zeroes it (``middle="zero"``, the default, as the released weights were trained with it).
* Eq. 7 is "MutualSA" ``softmax(Q K^T / sqrt(r)) V`` over spatial tokens; the release computes Restormer-style
  *channel* attention (``c x c`` maps per head over the ``h*w`` positions, L2-normalised ``q``/``k``, a learnable
  per-head temperature) -- ``attention="channel"``, the default; ``"spatial"`` is the paper's reading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.nn import Stage, clip_count, shift_frames, spatial, temporal, temporal_shift

__all__ = ["RTSAttentionUnit", "RTSConvUnit", "RTSModule", "attention_width", "conv_width", "rts_factory"]

Activation = Literal["silu", "relu"]
Middle = Literal["zero", "keep"]
AttentionKind = Literal["channel", "spatial"]
State = dict[str, Any]  # frames tensors [B*T, ...] (and tuples of them) by name


def conv_width(channels: int, reduction: int) -> int:
    """Channels of the RTS-convolution unit: ``channels // (3 reduction) * 3`` (a multiple of 3, release rule)."""
    return channels // (reduction * 3) * 3


def attention_width(channels: int, reduction: int, heads: int) -> int:
    """Channels of ``q, k, v`` together: ``channels // (3 reduction heads) * 3 heads`` (release rule)."""
    return channels // (reduction * heads * 3) * (heads * 3)


def _replace(state: State, **entries: Any) -> State:
    return {**state, **entries}


def _project_rows(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: int) -> torch.Tensor:
    """``module`` (per frame) on ``x [N, ...]`` ``step`` rows at a time, written into one buffer ``[N, ...]``."""
    out: torch.Tensor | None = None
    for start in range(0, x.shape[0], step):
        part = module(x[start : start + step])
        out = part.new_empty((x.shape[0], *part.shape[1:])) if out is None else out
        out[start : start + step] = part
    return out


def _clip_windows(rows: int, num_frames: int, step: int) -> list[tuple[slice, slice, slice]]:
    """Mini-batches of at most ``step`` frames of one clip each, with one neighbouring frame on either side.

    ``[(window, inner, rows), ...]``: ``window`` the frames-first rows ``b*T + [s-1, e+1)`` (cut at the clip
    ends), ``inner`` the mini-batch's rows ``b*T + [s, e)`` inside the window, ``rows`` the same in the clip.
    A shift by one frame within the window then gives every inner row its true neighbours (zeros at the clip
    ends), as on the whole clip.
    """
    windows = []
    for base in range(0, rows, num_frames):
        for s in range(0, num_frames, step):
            e = min(s + step, num_frames)
            lo, hi = max(s - 1, 0), min(e + 1, num_frames)
            windows.append((slice(base + lo, base + hi), slice(s - lo, e - lo), slice(base + s, base + e)))
    return windows


class RTSConvUnit(nn.Module):
    """RTS-convolution unit (Eq. 5-6): ``F = conv1(x)``; shift thirds by +1/0/-1 frames; ``conv3(act(conv(F))) + x``.

    Frames ``[B*T, C, H, W] -> [B*T, C, H, W]``. ``conv1`` reduces ``C`` to ``conv_width(C, reduction)``
    channels; the shift gives frame ``i`` the first third of frame ``i-1`` and the last third of frame
    ``i+1``, zeros at the clip ends (Eq. 5); ``conv3`` (zero-initialised) restores ``C``.
    """

    def __init__(
        self, channels: int, reduction: int = 10, activation: Activation = "silu", middle: Middle = "zero"
    ) -> None:
        super().__init__()
        hidden = conv_width(channels, reduction)
        if hidden < 3:
            raise ConfigError(
                f"an RTS convolution unit on {channels} channels with reduction {reduction} has no channels"
            )
        if activation not in ("silu", "relu") or middle not in ("zero", "keep"):
            raise ConfigError(
                f"RTS activation must be silu or relu and middle zero or keep; got {activation}, {middle}"
            )
        self.activation, self.middle = activation, middle
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.conv_blocks = nn.ModuleList(
            [nn.Conv2d(hidden, hidden, 3, 1, 1, bias=True), nn.SiLU() if activation == "silu" else nn.ReLU()]
        )
        self.conv3 = nn.Conv2d(hidden, channels, 1, bias=False)
        nn.init.zeros_(self.conv3.weight)  # residual output starts at 0: the unit is the identity

    def stages(self, key: str) -> list[Stage]:
        """``reduce`` (per frame) -> ``shift`` (whole clip, Eq. 5) -> ``fuse`` (per frame, Eq. 6) on ``state[key]``."""

        def reduce(state: State) -> State:
            # The input moves to _rts_in (not copied next to itself when the runner assembles the clip).
            rest = {k: v for k, v in state.items() if k != key}
            return _replace(rest, _rts_in=state[key], _rts_f=self.conv1(state[key]))

        def shift(state: State, num_frames: int) -> State:
            shifted = temporal_shift(
                state["_rts_f"], fold_div=3, direction="both", num_frames=num_frames, unshifted=self.middle
            )
            return _replace(state, _rts_f=shifted)

        def fuse(state: State) -> State:
            f = state["_rts_f"]
            for layer in self.conv_blocks:
                f = layer(f)
            out = {k: v for k, v in state.items() if k not in ("_rts_in", "_rts_f")}
            out[key] = self.conv3(f) + state["_rts_in"]  # Eq. 6
            return out

        return [spatial(reduce), temporal(shift, layout="frames"), spatial(fuse)]

    @torch.no_grad()
    def apply_(self, x: torch.Tensor, num_frames: int, step: int) -> torch.Tensor:
        """Eq. 5-6 in place on frames ``x [B*T, C, H, W]``: ``x += conv3(act(conv(shift(conv1(x)))))``; returns ``x``.

        Inference only. The per-frame layers see at most ``step`` frames; only ``x`` and ``conv1(x)`` exist for
        the whole clip (each mini-batch shifts its own window of ``conv1(x)``).
        """
        f = _project_rows(self.conv1, x, step)
        for window, inner, rows in _clip_windows(x.shape[0], num_frames, step):
            part = f[window]
            g = temporal_shift(part, fold_div=3, direction="both", num_frames=part.shape[0], unshifted=self.middle)
            g = g[inner]
            for layer in self.conv_blocks:
                g = layer(g)
            x[rows] += self.conv3(g)  # Eq. 6 (x + r and r + x are the same float sum)
        return x


class RTSAttentionUnit(nn.Module):
    """RTS-attention unit (Eq. 7-8): ``q, k, v`` per frame; frame ``i`` attends to ``k, v`` of ``i-1, i, i+1``.

    Frames ``[B*T, C, H, W] -> [B*T, C, H, W]``: ``qkv = qkv_dwconv(qkv(x))`` (1x1 then depthwise 3x3),
    ``out = sum_{j=-1..1} Attn(q_i, k_{i+j}, v_{i+j})`` (Eq. 7, zeros beyond the clip ends), then
    ``project_out(out) + x`` (Eq. 8, ``project_out`` zero-initialised). ``attention="channel"`` (release):
    per head ``softmax(temperature * q_hat k_hat^T) v`` over channels with ``q_hat, k_hat`` L2-normalised over
    the ``h*w`` positions; ``"spatial"`` (paper): ``softmax(q k^T / sqrt(r)) v`` over the positions.
    """

    def __init__(
        self, channels: int, reduction: int = 4, heads: int = 8, attention: AttentionKind = "channel"
    ) -> None:
        super().__init__()
        width = attention_width(channels, reduction, heads)
        if width < 3 * heads:
            raise ConfigError(
                f"an RTS attention unit on {channels} channels with reduction {reduction} and {heads} heads "
                "has no channels"
            )
        if attention not in ("channel", "spatial"):
            raise ConfigError(f"RTS attention must be channel or spatial, got {attention!r}")
        self.heads, self.attention = heads, attention
        if attention == "channel":
            self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, width, kernel_size=1, bias=False)
        self.qkv_dwconv = nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1, groups=width, bias=True)
        self.project_out = nn.Conv2d(width // 3, channels, kernel_size=1, bias=False)
        nn.init.zeros_(self.project_out.weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, self.heads, c // self.heads, h * w)  # [N, heads, c, h*w]

    def attend(self, qkv: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Eq. 7 on frames ``qkv [B*T, 3c', H, W] -> [B*T, c', H, W]`` (needs every frame of every clip)."""
        n, _, h, w = qkv.shape
        q, k, v = (self._heads(part) for part in qkv.chunk(3, dim=1))
        if self.attention == "channel":
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        b = clip_count(qkv, num_frames)

        def neighbours(x: torch.Tensor, offset: int) -> torch.Tensor:
            # Frame i receives frame i - offset of its own clip; zeros beyond the ends (the release's padding).
            clips = x.reshape(b, num_frames, *x.shape[1:])
            return shift_frames(clips, offset, time_dim=1).reshape(x.shape)

        out = torch.zeros_like(q)
        for offset in (1, 0, -1):  # K/V of frames i-1, i, i+1
            out = out + self._attention(q, neighbours(k, offset), neighbours(v, offset))
        return out.reshape(n, -1, h, w)

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One term of Eq. 7 on heads ``[N, heads, c, h*w]`` (``q``, ``k`` normalised already for channel attention)."""
        if self.attention == "channel":
            attn = (q @ k.transpose(-2, -1)) * self.temperature  # [N, heads, c, c]
            return attn.softmax(dim=-1) @ v
        # positions as tokens, embedding dimension r = c per head; SDPA scales by 1/sqrt(r)
        o = F.scaled_dot_product_attention(q.transpose(-2, -1), k.transpose(-2, -1), v.transpose(-2, -1))
        return o.transpose(-2, -1)

    def stages(self, key: str) -> list[Stage]:
        """``project_in`` (per frame) -> ``attend`` (whole clip, Eq. 7) -> ``project_out`` (per frame, Eq. 8)."""

        def project_in(state: State) -> State:
            rest = {k: v for k, v in state.items() if k != key}
            return _replace(rest, _rts_in=state[key], _rts_qkv=self.qkv_dwconv(self.qkv(state[key])))

        def attend(state: State, num_frames: int) -> State:
            out = {k: v for k, v in state.items() if k != "_rts_qkv"}
            out["_rts_a"] = self.attend(state["_rts_qkv"], num_frames)
            return out

        def project(state: State) -> State:
            out = {k: v for k, v in state.items() if k not in ("_rts_in", "_rts_a")}
            out[key] = self.project_out(state["_rts_a"]) + state["_rts_in"]  # Eq. 8
            return out

        return [spatial(project_in), temporal(attend, layout="frames"), spatial(project)]

    @torch.no_grad()
    def apply_(self, x: torch.Tensor, num_frames: int, step: int) -> torch.Tensor:
        """Eq. 7-8 in place on frames ``x [B*T, C, H, W]``: ``x += project_out(attend(qkv(x)))``; returns ``x``.

        Inference only. ``q, k, v`` of every frame are computed first (``step`` frames per call) and exist for
        the whole clip; each mini-batch then attends to its window's neighbours and adds its residual into ``x``.
        """
        qkv = _project_rows(lambda part: self.qkv_dwconv(self.qkv(part)), x, step)
        for window, inner, rows in _clip_windows(x.shape[0], num_frames, step):
            part = qkv[window]
            q, k, v = (self._heads(p) for p in part.chunk(3, dim=1))
            if self.attention == "channel":
                q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            q = q[inner]
            out = torch.zeros_like(q)
            for offset in (1, 0, -1):  # K/V of frames i-1, i, i+1 (zeros beyond the clip ends)
                k_j = shift_frames(k[None], offset, time_dim=1)[0][inner]
                v_j = shift_frames(v[None], offset, time_dim=1)[0][inner]
                out = out + self._attention(q, k_j, v_j)
            n, _, h, w = x[rows].shape
            x[rows] += self.project_out(out.reshape(n, -1, h, w))  # Eq. 8
        return x


class RTSModule(nn.Module):
    """An RTS-convolution unit then an RTS-attention unit (either may be absent: Table 3 rows B-D).

    ``forward(frames [B*T, C, H, W], num_frames=T) -> [B*T, C, H, W]`` runs the whole clip at once;
    :meth:`stages` gives the same computation as block-wise stages.

    Args:
        channels: ``C`` of the feature map the module sits on.
        conv, attention_unit: build the RTS-convolution / RTS-attention unit.
        conv_reduction: channel reduction of the convolution unit (release 10).
        attention_reduction, heads: channel reduction and heads of the attention unit (release 4, 8).
        activation, middle, attention: the release/paper choices (module docstring).
    """

    def __init__(
        self,
        channels: int,
        *,
        conv: bool = True,
        attention_unit: bool = True,
        conv_reduction: int = 10,
        attention_reduction: int = 4,
        heads: int = 8,
        activation: Activation = "silu",
        middle: Middle = "zero",
        attention: AttentionKind = "channel",
    ) -> None:
        super().__init__()
        if not (conv or attention_unit):
            raise ConfigError("an RTS module needs its convolution unit, its attention unit or both")
        self.channels = channels
        if conv:
            self.RTSConv = RTSConvUnit(channels, conv_reduction, activation, middle)
        if attention_unit:
            self.RTSAtten = RTSAttentionUnit(channels, attention_reduction, heads, attention)

    def units(self) -> list[nn.Module]:
        return [unit for unit in (getattr(self, "RTSConv", None), getattr(self, "RTSAtten", None)) if unit is not None]

    def stages(self, key: str) -> list[Stage]:
        """The block-wise stages of both units on ``state[key]``."""
        return [stage for unit in self.units() for stage in unit.stages(key)]

    def inplace_stage(self, key: str, frames_per_batch: int | None = None) -> Stage:
        """The module as one whole-clip stage that adds its residuals into ``state[key]`` in place (inference).

        The same computation as :meth:`stages` (per-frame layers on at most ``frames_per_batch`` frames,
        ``None``: a clip at a time), holding only ``state[key]`` and one unit's reduced features for the
        whole clip. It needs ``torch.no_grad()`` and overwrites ``state[key]``: only for a tensor that nothing
        else refers to (not the UNet's down-block outputs, which are also its skip connections).
        """

        def run(state: State, num_frames: int) -> State:
            if torch.is_grad_enabled():
                raise RuntimeError("RTSModule.inplace_stage is for inference; use stages() with autograd")
            step = num_frames if frames_per_batch is None else frames_per_batch
            x = state[key]
            for unit in self.units():
                x = unit.apply_(x, num_frames, step)
            return state

        return temporal(run, layout="frames")

    def forward(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        state: State = {"x": frames}
        for stage in self.stages("x"):
            state = stage.module(state, num_frames=num_frames) if stage.kind == "temporal" else stage.module(state)
        return state["x"]


def rts_factory(options: Any, reductions: dict[str, int]) -> Callable[[int], RTSModule]:
    """``channels -> RTSModule`` with the switches of an ``RTSOptions`` group and a preset's reductions."""

    def build(channels: int) -> RTSModule:
        return RTSModule(
            channels,
            conv=options.conv,
            attention_unit=options.attention_unit,
            conv_reduction=reductions["conv_reduction"],
            attention_reduction=reductions["attention_reduction"],
            heads=reductions["heads"],
            activation=options.activation,
            middle=options.middle,
            attention=options.attention,
        )

    return build
