"""VideoDegradation: the second-order degradation pipeline as an ``nn.Module`` over video batches.

Order (each stage optional, see :class:`~vsr_core.data.degradations.params.DegradationParams`)::

    first order   blur -> random resize -> noise -> JPEG            (device)
    second order  blur -> random resize (relative to H/s) -> noise -> JPEG   (device)
    final         resize to H/s + sinc, and JPEG, in random order   (device)
    quantize      round to 8-bit levels                             (device)
    codec         libx264 / mpeg4 round trip with PyAV              (CPU threads)

All random parameters of a batch are drawn first, per clip (one kernel, resize factor, noise
level, JPEG quality, codec for all frames of a clip; optional smooth drift over frames); noise
samples are drawn while running. Clips that have the same size at a stage are processed together
in one batched call; random resizes make sizes differ between clips until the final resize.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vsr_core.data.degradations.codec import compress_clips, sample_codec
from vsr_core.data.degradations.jpeg import JPEGPlan, jpeg, sample_jpeg
from vsr_core.data.degradations.kernels import blur, sample_blur_kernels, sample_sinc_kernels
from vsr_core.data.degradations.noise import NoisePlan, gaussian_noise, poisson_noise, sample_noise
from vsr_core.data.degradations.params import DegradationParams, OrderParams
from vsr_core.data.degradations.random_draws import RandomDraws
from vsr_core.data.degradations.resize import ResizePlan, resize, sample_resize
from vsr_core.errors import ConfigError

__all__ = ["Clips", "VideoDegradation"]

Clips = list[torch.Tensor]  # one [T, 3, h, w] tensor per clip; h, w may differ between clips


@dataclass
class _OrderPlan:
    kernels: tuple[torch.Tensor, list[bool]] | None
    resize: ResizePlan | None
    relative_to_output: bool
    noise: NoisePlan | None
    jpeg: JPEGPlan | None


@dataclass
class _FinalPlan:
    modes: list[str]
    jpeg_first: list[bool]
    sinc: tuple[torch.Tensor, list[bool]]
    jpeg: JPEGPlan | None


def _map_clips(clips: Clips, active: list[bool], frames: int, fn: Callable, *frame_params: torch.Tensor) -> Clips:
    """Apply ``fn(frames [N,3,h,w], *params [N]) -> frames`` to the active clips, batching equal sizes.

    ``frame_params`` are per-frame tensors ``[B*T, ...]`` in clip-major order.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, on in enumerate(active):
        if on:
            groups.setdefault(tuple(clips[i].shape), []).append(i)
    out = list(clips)
    for members in groups.values():
        batch = torch.cat([clips[i] for i in members]) if len(members) > 1 else clips[members[0]]
        params = [p.unflatten(0, (len(clips), frames))[members].flatten(0, 1) for p in frame_params]
        result = fn(batch, *params)
        for k, i in enumerate(members):
            out[i] = result[k * frames : (k + 1) * frames]
    return out


class VideoDegradation(nn.Module):
    """Random, seeded degradation of high-quality clips into low-quality inputs.

    ``forward(hq [B, 3, T, H, W] float in [-1, 1], generator=None) -> lq [B, 3, T, H/scale,
    W/scale] float in [-1, 1]`` (a uint8 ``hq`` in ``[0, 255]`` is accepted too). Works on any
    device; the generator may live on the data device or on the CPU; the same generator state
    gives the same output. Random parameters are shared by all frames of a clip and independent
    across clips. The module holds no tensors, so ``.to(device)`` is free.

    Build it with :func:`~vsr_core.data.degradations.build_degradation` (a preset plus overrides)
    or directly from a :class:`DegradationParams`.
    """

    def __init__(self, params: DegradationParams, scale: int, name: str = "custom") -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ConfigError(f"degradation scale must be a positive integer, got {scale!r}")
        if params.final is None:
            resizes = [o for o in (params.first, params.second) if o is not None and o.resize is not None]
            if scale != 1 or resizes:
                raise ConfigError(
                    f"degradation {name!r} keeps the frame size (no final resize): it needs scale 1 and no resize "
                    f"stage (got scale {scale}); use preset 'bicubic' or another resizing preset for scale {scale}"
                )
        self.params = params
        self.scale = scale
        self.name = name

    def extra_repr(self) -> str:
        return f"preset={self.name!r}, scale={self.scale}"

    @property
    def is_identity(self) -> bool:
        p = self.params
        return p.first is None and p.second is None and p.final is None and p.codec is None and not p.quantize

    # -- forward -------------------------------------------------------------------------------
    def forward(self, hq: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if hq.ndim != 5 or hq.shape[1] != 3:
            raise ValueError(f"VideoDegradation expects hq of shape [B, 3, T, H, W], got {list(hq.shape)}")
        b, _, t, h, w = hq.shape
        s = self.scale
        if h % s or w % s:
            raise ConfigError(
                f"frame size {h}x{w} is not divisible by scale {s}; crop clips to a multiple of {s} "
                f"(e.g. {h // s * s}x{w // s * s})"
            )
        out_dtype = torch.float32 if hq.dtype == torch.uint8 else hq.dtype
        if self.is_identity:
            return hq.to(out_dtype) / 127.5 - 1.0 if hq.dtype == torch.uint8 else hq.clone()

        x = hq.float() / 255.0 if hq.dtype == torch.uint8 else (hq.float() + 1.0) * 0.5
        draws = RandomDraws(generator, hq.device)
        p = self.params
        orders = [self._sample_order(draws, o, b, t) for o in (p.first, p.second) if o is not None]
        final = self._sample_final(draws, b, t) if p.final is not None else None
        codec = sample_codec(draws, b, p.codec, h // s, w // s) if p.codec is not None else None

        clips: Clips = list(x.permute(0, 2, 1, 3, 4).unbind(0))  # B x [T, 3, H, W]
        for plan in orders:
            clips = self._run_order(clips, plan, t, (h // s, w // s), draws)
        if final is not None:
            clips = self._run_final(clips, final, t, (h // s, w // s))
        lq = torch.stack(clips)  # [B, T, 3, h, w]
        lq = (lq * 255.0).round().clamp(0, 255) / 255.0 if p.quantize else lq.clamp(0.0, 1.0)
        if codec is not None:
            lq = compress_clips(lq, codec, p.codec.workers)
        return (lq.permute(0, 2, 1, 3, 4) * 2.0 - 1.0).to(out_dtype).contiguous()

    # -- sampling ------------------------------------------------------------------------------
    def _sample_order(self, draws: RandomDraws, order: OrderParams, clips: int, frames: int) -> _OrderPlan:
        drift = self.params.drift
        return _OrderPlan(
            kernels=sample_blur_kernels(draws, clips, frames, order.blur, drift) if order.blur else None,
            resize=sample_resize(draws, clips, order.resize) if order.resize else None,
            relative_to_output=order.resize is not None and order.resize.relative_to == "output",
            noise=sample_noise(draws, clips, frames, order.noise, drift) if order.noise else None,
            jpeg=sample_jpeg(draws, clips, frames, order.jpeg, drift) if order.jpeg else None,
        )

    def _sample_final(self, draws: RandomDraws, clips: int, frames: int) -> _FinalPlan:
        f, drift = self.params.final, self.params.drift
        modes = draws.host_categorical(clips, [1.0] * len(f.modes))
        return _FinalPlan(
            modes=[f.modes[m] for m in modes],
            jpeg_first=draws.host_bernoulli(clips, f.jpeg_first_prob),
            sinc=sample_sinc_kernels(draws, clips, frames, f.sinc_prob, f.sinc_kernel_sizes, f.sinc_omega, drift),
            jpeg=sample_jpeg(draws, clips, frames, f.jpeg, drift) if f.jpeg else None,
        )

    # -- running -------------------------------------------------------------------------------
    def _run_order(
        self, clips: Clips, plan: _OrderPlan, frames: int, out_size: tuple[int, int], draws: RandomDraws
    ) -> Clips:
        if plan.kernels is not None:
            kernels, apply = plan.kernels
            clips = _map_clips(clips, apply, frames, blur, kernels)
        if plan.resize is not None:
            resized = []
            for clip, factor, mode in zip(clips, plan.resize.factors, plan.resize.modes):
                base = out_size if plan.relative_to_output else clip.shape[-2:]
                size = (max(1, int(base[0] * factor)), max(1, int(base[1] * factor)))
                resized.append(resize(clip, size, mode))
            clips = resized
        if plan.noise is not None:
            clips = self._add_noise(clips, plan.noise, frames, draws)
        if plan.jpeg is not None:
            clips = _map_clips(clips, plan.jpeg.apply, frames, jpeg, plan.jpeg.quality)
        return clips

    @staticmethod
    def _add_noise(clips: Clips, plan: NoisePlan, frames: int, draws: RandomDraws) -> Clips:
        # One batched call per (type, gray) combination: gray noise needs one channel, not three.
        for gaussian in (True, False):
            for gray in (False, True):
                active = [a and g == gaussian and c == gray for a, g, c in zip(plan.apply, plan.gaussian, plan.gray)]

                def add(
                    x: torch.Tensor, level: torch.Tensor, gaussian: bool = gaussian, gray: bool = gray
                ) -> torch.Tensor:
                    if gaussian:
                        return (x + gaussian_noise(x, level, gray, draws)).clamp(0, 1)
                    return (x + poisson_noise(x, level, gray, frames, draws)).clamp(0, 1)

                clips = _map_clips(clips, active, frames, add, plan.sigma if gaussian else plan.scale)
        return clips

    def _run_final(self, clips: Clips, plan: _FinalPlan, frames: int, out_size: tuple[int, int]) -> Clips:
        antialias = self.params.final.antialias
        if plan.jpeg is not None:
            before = [a and first for a, first in zip(plan.jpeg.apply, plan.jpeg_first)]
            clips = _map_clips(clips, before, frames, jpeg, plan.jpeg.quality)
        clips = [resize(clip, out_size, mode, antialias) for clip, mode in zip(clips, plan.modes)]
        kernels, apply = plan.sinc
        clips = _map_clips(clips, apply, frames, blur, kernels)
        if plan.jpeg is not None:
            after = [a and not first for a, first in zip(plan.jpeg.apply, plan.jpeg_first)]
            clips = _map_clips(clips, after, frames, jpeg, plan.jpeg.quality)
        return clips
