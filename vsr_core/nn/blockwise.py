"""Block-wise running of a staged video model: spatial stages in frame mini-batches, temporal stages on the clip.

UltraVSR's temporally asynchronous inference (paper sec. 3.5): the ``N`` frames are split into sub-sequences of
``b`` frames that go through the 2D spatial layers one after another, "drastically reducing peak memory"; before
each temporal module the features of all frames are concatenated, so temporal propagation still sees the whole
sequence, and split again after it. A model expressed as a list of stages runs that way here::

    runner = BlockwiseRunner([spatial(encoder), temporal(TemporalShift(fold_div=3, direction="both")),
                              spatial(decoder)], frames_per_batch=4)
    out = runner(video)  # [B, C, T, H, W] -> [B, C', T, H', W']

Consecutive spatial stages are fused: a mini-batch goes through all of them before the next one starts, so only
features at temporal boundaries exist for the whole clip. The result equals whole-clip processing because
spatial stages are per frame -- they must not mix frames (no batch-statistics norms in training mode).

The memory bound holds under ``torch.no_grad()``/``inference_mode``; with autograd the activations saved for the
backward pass of every mini-batch stay alive until ``backward`` (the result and gradients are still right).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from vsr_core.errors import ConfigError
from vsr_core.nn.reshape import frames_to_video, video_to_frames

__all__ = ["BlockwiseRunner", "Stage", "spatial", "temporal"]

State = Any  # a tensor [N, ...] or a tuple / list / dict of them, all with the same leading frame count N = B*T


@dataclass(frozen=True)
class Stage:
    """One step of a staged model.

    ``kind="spatial"``: ``module(frames)`` on a mini-batch of at most ``frames_per_batch`` frames ``[n, ...]``.
    ``kind="temporal"``: on the whole clip -- ``layout="video"``: ``module(video [B, C, T, H, W])`` (the state must
    be a frames tensor ``[B*T, C, H, W]``); ``layout="frames"``: ``module(state, num_frames=T)`` on the full state.
    """

    module: Callable[..., Any]
    kind: Literal["spatial", "temporal"]
    layout: Literal["video", "frames"] = "video"

    def __post_init__(self) -> None:
        if self.kind not in ("spatial", "temporal") or self.layout not in ("video", "frames"):
            raise ValueError(f"unknown stage kind/layout {self.kind!r}/{self.layout!r}")


def spatial(module: Callable[..., Any]) -> Stage:
    """A per-frame stage: ``module`` maps a frames state ``[n, ...] -> [n, ...]`` without mixing frames."""
    return Stage(module, "spatial")


def temporal(module: Callable[..., Any], *, layout: Literal["video", "frames"] = "video") -> Stage:
    """A whole-clip stage: ``module(video [B, C, T, H, W])``; ``module(state, num_frames=T)`` for layout "frames"."""
    return Stage(module, "temporal", layout)


def _map(fn: Callable[[torch.Tensor], torch.Tensor], state: State) -> State:
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return type(state)(_map(fn, s) for s in state)
    if isinstance(state, dict):
        return {k: _map(fn, v) for k, v in state.items()}
    return state


def _tensors(state: State) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    items = state.values() if isinstance(state, dict) else state if isinstance(state, (tuple, list)) else ()
    return [t for item in items for t in _tensors(item)]


def _allocate(part: State, rows: int) -> State:
    """An empty state like ``part`` with ``rows`` leading frames (non-tensor entries are taken from ``part``)."""
    if isinstance(part, torch.Tensor):
        return part.new_empty((rows, *part.shape[1:]))
    if isinstance(part, (tuple, list)):
        return type(part)(_allocate(p, rows) for p in part)
    if isinstance(part, dict):
        return {k: _allocate(v, rows) for k, v in part.items()}
    return part


def _write(out: State, part: State, start: int) -> None:
    """Copy the mini-batch ``part`` into rows ``start:`` of ``out`` (differentiable: autograd records the copy)."""
    if isinstance(out, torch.Tensor):
        out[start : start + part.shape[0]].copy_(part)
    elif isinstance(out, (tuple, list)):
        for o, p in zip(out, part, strict=True):
            _write(o, p, start)
    elif isinstance(out, dict):
        for key, value in out.items():
            _write(value, part[key], start)


def _frame_rows(state: State) -> int:
    rows = {t.shape[0] for t in _tensors(state)}
    if len(rows) != 1:
        raise ValueError(f"every tensor of a block-wise state needs the same leading frame count, got {sorted(rows)}")
    return rows.pop()


class BlockwiseRunner:
    """Runs ``stages`` with spatial stages on at most ``frames_per_batch`` frames per call (``None``: all at once).

    It holds no parameters: the modules belong to the model that builds the runner, so names and state dicts
    are the model's. Call it on a video ``[B, C, T, H, W]``, or use :meth:`run_frames` for frames states.
    """

    def __init__(self, stages: Sequence[Stage], frames_per_batch: int | None = None) -> None:
        if frames_per_batch is not None and (
            isinstance(frames_per_batch, bool) or not isinstance(frames_per_batch, int) or frames_per_batch < 1
        ):
            raise ConfigError(
                f"frames_per_batch must be a positive number of frames (or None), got {frames_per_batch!r}"
            )
        if not stages or not all(isinstance(s, Stage) for s in stages):
            raise ValueError("BlockwiseRunner needs a non-empty list of spatial(...)/temporal(...) stages")
        self.stages, self.frames_per_batch = list(stages), frames_per_batch
        # Fuse runs of consecutive spatial stages into one group each: [[s, s], t, [s], t, ...].
        self.groups: list[list[Stage] | Stage] = []
        for stage in self.stages:
            if stage.kind == "spatial" and self.groups and isinstance(self.groups[-1], list):
                self.groups[-1].append(stage)
            else:
                self.groups.append([stage] if stage.kind == "spatial" else stage)

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W] -> [B, C', T, H', W']`` (the last stage must return frames ``[B*T, C', H', W']``)."""
        if video.dim() != 5:
            raise ValueError(f"BlockwiseRunner expects a video [B, C, T, H, W], got shape {tuple(video.shape)}")
        num_frames = video.shape[2]
        out = self.run_frames(video_to_frames(video), num_frames)
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ValueError("the last stage must return frames [B*T, C, H, W] to give a video back")
        return frames_to_video(out, num_frames)

    def run_frames(self, state: State, num_frames: int) -> State:
        """Run all stages on a frames state (tensors ``[B*T, ...]``, row ``b*T + t``); returns the final state."""
        for group in self.groups:
            state = (
                self._spatial(group, state) if isinstance(group, list) else self._temporal(group, state, num_frames)
            )
        return state

    def _spatial(self, group: list[Stage], state: State) -> State:
        rows = _frame_rows(state)
        step = rows if self.frames_per_batch is None else self.frames_per_batch
        out: State = None
        for start in range(0, rows, step):
            chunk = _map(lambda t, s=start: t[s : s + step], state)
            for stage in group:
                chunk = stage.module(chunk)
            if start == 0 and step >= rows:
                return chunk
            # Written into one buffer as the mini-batches come: the group's output exists once, not
            # once as a list of mini-batch results and again as their concatenation.
            out = _allocate(chunk, rows) if out is None else out
            _write(out, chunk, start)
        return out

    @staticmethod
    def _temporal(stage: Stage, state: State, num_frames: int) -> State:
        if stage.layout == "frames":
            return stage.module(state, num_frames=num_frames)
        if not isinstance(state, torch.Tensor) or state.dim() != 4:
            raise ValueError(
                "a temporal stage with layout='video' needs a frames tensor [B*T, C, H, W]; use layout='frames'"
            )
        return video_to_frames(stage.module(frames_to_video(state, num_frames)))
