"""Interweaved latent transition (ILT) with noise rescheduling (paper v2 Sec. 3.3, Eq. 2; v1 Sec. 3.4, Eq. 4).

A long video is cut into windows of ``L`` frames (``N_test = 8``) that overlap by ``P`` frames (4); window ``i+1``
starts ``s = L - P`` frames after window ``i``. Pure functions, tested by value:

* :func:`ilt_weights` -- Eq. 2's position weights over an overlap: ``alpha_j = 1 - j / (P - 1)`` (``paper``) or the
  release's ``0.2 + 0.6 (1 - j / (P - 1))`` (``fuse_latents`` in its pipeline), ``j = 0 .. P-1``;
* :func:`fuse_overlap` -- Eq. 2: ``F_fused[j] = alpha_j F_i[s + j] + (1 - alpha_j) F_{i+1}[j]``;
* :func:`reschedule_noise` -- the initial noise of window ``i+1`` from window ``i``'s: its first ``P`` frames are the
  overlap and keep window ``i``'s noise for those frames (both windows start the overlap from the same noise), its
  ``s`` new frames take the noise of the ``s`` frames that leave (window ``i``'s first ``s``) in a random order. Every
  window's noise is thus a rearrangement of the first window's ``L`` noise frames ("reuse and reorder",
  FreeNoise-style). The release does exactly this on the noise of the whole video: ``noise[f : f+s] =
  noise[f-L : f-L+s][shuffled]`` for ``f = L, L+s, ...``, windows then slice it (:func:`release_video_noise`);
* :func:`final_window_weights` -- how the engine takes each frame from the last window covering it, whose decoded
  latents already hold the fused overlap (the release fuses after each window is fully denoised).

:class:`ILTFusion` wires them into the long-video engine's ``WindowFusion`` hook (latents fused once per overlap,
after the solver: the release's timing). Fusion at every solver step (the default) goes through the engine's latent
window protocol: :mod:`diffvsr.ilt_latent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from vsr_core.errors import ConfigError
from vsr_core.inference import Window, WindowFusion, WindowPlan

__all__ = [
    "ILT_WEIGHTS",
    "ILTFusion",
    "final_window_weights",
    "fuse_overlap",
    "ilt_weights",
    "release_video_noise",
    "reschedule_noise",
]

ILT_WEIGHTS = ("paper", "release")
WeightRule = Literal["paper", "release"]


def ilt_weights(overlap: int, rule: WeightRule = "paper") -> torch.Tensor:
    """``alpha_j`` ``[P]`` (float64) for ``j = 0 .. P-1``: the weight of the *earlier* window's latent (Eq. 2).

    ``paper``: ``1 - j / (P - 1)`` (1 at the first overlap frame, 0 at the last); ``release``: ``0.2 + 0.6 (1 -
    j/(P-1))``.
    A one-frame overlap has ``j / (P - 1)`` undefined; both windows then count equally (``alpha = 0.5``).
    """
    if overlap < 1:
        raise ConfigError(f"an overlap has at least one frame, got {overlap}")
    if rule not in ILT_WEIGHTS:
        raise ConfigError(f"ILT weights must be one of {', '.join(ILT_WEIGHTS)}, got {rule!r}")
    if overlap == 1:
        return torch.full((1,), 0.5, dtype=torch.float64)
    ramp = 1.0 - torch.arange(overlap, dtype=torch.float64) / (overlap - 1)
    return ramp if rule == "paper" else 0.2 + 0.6 * ramp


def fuse_overlap(earlier: torch.Tensor, later: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on latents ``[B, c, P, h, w]``: ``alpha_j * earlier[:, :, j] + (1 - alpha_j) * later[:, :, j]``.

    ``earlier`` is ``F_i[s : s + P]`` (the last ``P`` frames of window ``i``), ``later`` is ``F_{i+1}[:P]``.
    """
    if earlier.shape != later.shape or earlier.shape[2] != alpha.numel():
        raise ValueError(
            f"overlap latents {list(earlier.shape)} / {list(later.shape)} do not fit {alpha.numel()} weights"
        )
    a = alpha.to(device=earlier.device, dtype=earlier.dtype).view(1, 1, -1, 1, 1)
    return a * earlier + (1 - a) * later


def reschedule_noise(previous: torch.Tensor, overlap: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The initial noise ``[B, c, L, h, w]`` of the next window from the previous window's ``previous`` (same shape).

    Frames ``0 .. P-1`` (the overlap) are ``previous[:, :, L-P:]``; frames ``P .. L-1`` are ``previous[:, :, :L-P]``
    in a
    random order (``torch.randperm`` from ``generator``, drawn on its device). ``overlap`` is ``P``.
    """
    length = previous.shape[2]
    if not 1 <= overlap <= length:
        raise ValueError(f"overlap {overlap} does not fit a window of {length} frames")
    fresh = length - overlap
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(fresh, generator=generator, device=device).to(previous.device)
    return torch.cat([previous[:, :, length - overlap :], previous[:, :, :fresh][:, :, order]], dim=2)


def release_video_noise(noise: torch.Tensor, window: int, stride: int, orders: list[torch.Tensor]) -> torch.Tensor:
    """The release's noise rearrangement of a whole video ``[B, c, T, h, w]`` (its pipeline,
    ``noise_strategy='rearrange'``).

    For ``f = window, window + stride, ...`` (below ``T``): ``noise[f : f + stride] = noise[f - window : f - window +
    stride][order]``, ``orders`` giving each step's permutation (the release shuffles with Python's ``random``). Used
    to check :func:`reschedule_noise` against the release's own loop.
    """
    out = noise.clone()
    for step, start in enumerate(range(window, noise.shape[2], stride)):
        source = out[:, :, start - window : start - window + stride]
        out[:, :, start : start + stride] = source[:, :, orders[step]]
    return out


def final_window_weights(window: Window) -> torch.Tensor:
    """``[L]`` engine weights: 1, but 0 on the frames the next window shares (its output holds their fusion)."""
    weights = torch.ones(window.length)
    if window.overlap_after:
        weights[window.length - window.overlap_after :] = 0.0
    return weights


@dataclass
class _Previous:
    """What a window leaves for the next one (per spatial tile)."""

    start: int
    latents: torch.Tensor  # [B, c, L, h, w], overlap already fused
    noise: torch.Tensor  # [B, c, L, h, w] initial latent noise
    lr_noise: torch.Tensor  # [B, 3, L, h, w] noise of the LR conditioning


@dataclass
class ILTFusion(WindowFusion):
    """DiffVSR's long-video scheme through the engine's ``WindowFusion`` hook (release ILT: fusion after the solver).

    Per window: the method's ``prepare_window`` with the rescheduled initial noise (and the previous window's LR
    noise on shared frames), its solver loop, then Eq. 2 on the overlap with the previous window's final latents,
    then ``finish_window`` (decode). Engine weights (:func:`final_window_weights`) take each frame from the last
    window covering it. State is kept per spatial tile (the engine visits tiles in the same order in every window).
    """

    weights_rule: WeightRule = "paper"
    noise: Literal["rescheduled", "independent"] = "rescheduled"
    _previous: dict[int, _Previous] = field(default_factory=dict)
    _window: int = -1
    _tile: int = 0

    def start(self, plan: WindowPlan) -> None:
        self._previous, self._window, self._tile = {}, -1, 0
        windows = plan.windows
        if len(windows) >= 3:
            # The regular overlap (the last window is aligned to the video's end and may overlap more).
            overlap, length = windows[0].overlap_after, windows[0].length
            if 2 * overlap > length:
                raise ConfigError(
                    f"ILT window {length} is shorter than twice the overlap {overlap}: each overlap is fused between "
                    f"two windows only; use --overlap {length // 2} or less"
                )

    def restore_window(
        self,
        method: Any,
        lq: torch.Tensor,
        window: Window,
        plan: WindowPlan,
        prompt: list[str] | None,
        **sampling: Any,
    ) -> torch.Tensor:
        if window.index != self._window:
            self._window, self._tile = window.index, 0
        tile = self._tile
        self._tile += 1
        previous = self._previous.get(tile)
        overlap = window.overlap_before if previous is not None else 0
        if previous is not None and (previous.start + previous.latents.shape[2] - window.start != overlap):
            raise ValueError("ILT windows must be restored in order")
        generator = sampling.get("generator")
        latent_noise = lr_noise = None
        if overlap:
            length, before = lq.shape[2], previous.noise.shape[2]
            if lq.shape[0] != previous.noise.shape[0] or tuple(lq.shape[3:]) != tuple(previous.noise.shape[3:]):
                raise ValueError(
                    f"tile {tile} changed shape between windows: {list(previous.noise.shape)} -> {list(lq.shape)}"
                )
            if length > before:
                raise ValueError(
                    f"ILT window {window.index} has {length} frames, more than the previous one ({before})"
                )
            if self.noise == "rescheduled":
                # the engine's last window may be shorter (only the frames left plus the overlap): its first frames
                latent_noise = reschedule_noise(previous.noise, overlap, generator)[:, :, :length]
                lr_noise = method.draw_lr_noise(lq, generator)
                lr_noise[:, :, :overlap] = previous.lr_noise[:, :, before - overlap :]
        state = method.prepare_window(lq, prompt, noise=latent_noise, lr_noise=lr_noise, **sampling)
        latents = state.latents
        for i in range(state.num_steps):
            latents = method.denoise_step(state, i, latents)
        if overlap:
            alpha = ilt_weights(overlap, self.weights_rule)
            tail = previous.latents[:, :, previous.latents.shape[2] - overlap :]
            latents = torch.cat([fuse_overlap(tail, latents[:, :, :overlap], alpha), latents[:, :, overlap:]], dim=2)
        self._previous[tile] = _Previous(window.start, latents, state.latent_noise, state.lr_noise)
        return method.finish_window(state, latents)

    def weights(self, window: Window, plan: WindowPlan) -> torch.Tensor:
        return final_window_weights(window)
