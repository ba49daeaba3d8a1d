"""The long-video engine: stream frames, restore overlapping windows (and tiles), fuse, write.

Only the frames of the current window are held (input and fused output), so peak memory
depends on window and tile size, never on video length; a frame is yielded as soon as no later
window covers it. Output frame count equals input frame count exactly, and every output frame
comes from a real input frame: a source that ends before the frames it promised raises
:class:`~vsr_core.errors.TruncatedVideoError` instead of being padded (only the tail that a
window's frame rule needs beyond the last frame is padded, and those outputs are dropped).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vsr_core.data.video_io import frames_to_tensor, tensor_to_frames
from vsr_core.errors import ConfigError, TruncatedVideoError, VideoError
from vsr_core.inference.color import COLOR_FIXES
from vsr_core.inference.fusion import WindowFusion, window_fusion_for
from vsr_core.inference.padding import method_size_rules
from vsr_core.inference.tiles import gaussian_weight, tile_starts
from vsr_core.inference.windows import Window, WindowPlan, plan_windows
from vsr_core.video_ops import pad_spatial, padded_size, upsample_frames

__all__ = ["EngineOptions", "RestoreEngine"]


@dataclass
class EngineOptions:
    """Settings of :class:`RestoreEngine`; ``None`` takes the method's default.

    ``window``/``overlap``: temporal window length and overlap in frames (default the method's
    ``temporal_window`` and a quarter of it). ``tile``/``tile_overlap``: LQ tile side and overlap
    in pixels (``None`` = no tiling). ``color_fix``: ``"none"``, ``"wavelet"`` or ``"adain"``.
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast). ``sampling``: keyword arguments for
    ``method.restore`` (e.g. ``{"num_steps": 4}``).
    """

    window: int | None = None
    overlap: int | None = None
    tile: int | None = None
    tile_overlap: int = 16
    color_fix: str = "none"
    device: str | torch.device = "cpu"
    precision: str = "fp32"
    seed: int | None = 0
    sampling: dict[str, Any] = field(default_factory=dict)


class RestoreEngine:
    """Restore videos of any length with a :class:`~vsr_core.method.VSRMethod`.

    ``restore_frames(frames, num_frames)`` takes an iterable of ``uint8 [h, w, 3]`` frames and
    yields ``uint8 [h*s, w*s, 3]`` frames (``s = method.scale``), one per input frame, in order.
    ``restore_seconds`` accumulates the time spent inside the method's ``restore`` calls.
    """

    def __init__(
        self,
        method: Any,
        options: EngineOptions | None = None,
        fusion: WindowFusion | None = None,
    ) -> None:
        self.method = method
        self.options = options or EngineOptions()
        if self.options.color_fix not in ("none", *COLOR_FIXES):
            raise ConfigError(
                f"--color-fix must be one of none, {', '.join(COLOR_FIXES)}; got {self.options.color_fix!r}"
            )
        if self.options.precision not in ("fp32", "bf16"):
            raise ConfigError(
                f"--precision must be bf16 or fp32, got {self.options.precision!r}"
            )
        self.device = torch.device(self.options.device)
        self.fusion = fusion or window_fusion_for(method)
        self.scale = int(getattr(method, "scale", 1))
        self.frames_rule = tuple(getattr(method, "frames_rule", (1, 0)))
        self.window = self.options.window or int(getattr(method, "temporal_window", 16))
        self.overlap = (
            self.options.overlap
            if self.options.overlap is not None
            else self.window // 4
        )
        self.multiple, self.min_size = method_size_rules(method)
        self.restore_seconds = 0.0

    def plan(self, num_frames: int) -> WindowPlan:
        return plan_windows(num_frames, self.window, self.overlap, self.frames_rule)

    # ------------------------------------------------------------------ one window

    def _autocast(self):
        if self.options.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _call_method(
        self, lq: torch.Tensor, window: Window, plan: WindowPlan
    ) -> torch.Tensor:
        start = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            out = self.fusion.restore_window(
                self.method, lq, window, plan, None, **self.options.sampling
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.restore_seconds += time.perf_counter() - start
        expected = (*lq.shape[:3], lq.shape[3] * self.scale, lq.shape[4] * self.scale)
        if tuple(out.shape) != expected:
            raise RuntimeError(
                f"{type(self.method).__name__}.restore returned {tuple(out.shape)} for {tuple(lq.shape)}; expected {expected}"
            )
        return out.float()

    def _restore_tiled(
        self, lq: torch.Tensor, window: Window, plan: WindowPlan
    ) -> torch.Tensor:
        tile = self.options.tile
        h, w = lq.shape[-2:]
        if not tile or (tile >= h and tile >= w):
            return self._call_method(lq, window, plan)
        tile = max(self.multiple, tile // self.multiple * self.multiple)
        th, tw = min(tile, h), min(tile, w)
        s = self.scale
        out = torch.zeros(*lq.shape[:3], h * s, w * s, device=lq.device)
        total = torch.zeros(h * s, w * s, device=lq.device)
        weight = gaussian_weight(th * s, tw * s).to(lq.device)
        for y in tile_starts(h, th, self.options.tile_overlap):
            for x in tile_starts(w, tw, self.options.tile_overlap):
                part = self._call_method(lq[..., y : y + th, x : x + tw], window, plan)
                out[..., y * s : (y + th) * s, x * s : (x + tw) * s] += part * weight
                total[y * s : (y + th) * s, x * s : (x + tw) * s] += weight
        return out / total

    def restore_window(
        self, frames: torch.Tensor, window: Window, plan: WindowPlan
    ) -> torch.Tensor:
        """``uint8 [L, h, w, 3]`` -> restored ``float [3, L, h*s, w*s]`` in [-1, 1] (padded, restored, cropped)."""
        lq = frames_to_tensor(frames).unsqueeze(0).to(self.device)
        h, w = lq.shape[-2:]
        ph, pw = (
            padded_size(h, self.multiple, self.min_size),
            padded_size(w, self.multiple, self.min_size),
        )
        if self.options.tile:
            # Tiles must obey the size rules as well: pad to at least one (rule-sized) tile.
            ph, pw = (
                max(ph, min(self.options.tile, ph)),
                max(pw, min(self.options.tile, pw)),
            )
        restored = self._restore_tiled(pad_spatial(lq, ph, pw), window, plan)
        restored = restored[..., : h * self.scale, : w * self.scale].clamp(-1, 1)
        if self.options.color_fix != "none":
            reference = upsample_frames(lq, self.scale).clamp(-1, 1)
            restored = COLOR_FIXES[self.options.color_fix](restored, reference).clamp(
                -1, 1
            )
        return restored[0]

    # ------------------------------------------------------------------ a whole video

    def restore_frames(
        self, frames: Iterable[torch.Tensor], num_frames: int
    ) -> Iterator[torch.Tensor]:
        """Yield the restored ``uint8 [H, W, 3]`` frames of a ``num_frames``-frame stream, in order."""
        plan = self.plan(num_frames)
        self.fusion.start(plan)
        if self.options.seed is not None:
            torch.manual_seed(self.options.seed)
        source = iter(frames)
        inputs: deque[torch.Tensor] = (
            deque()
        )  # input frames first_input .. first_input + len - 1
        first_input = 0
        acc: torch.Tensor | None = None  # fused sums of output frames first_output ..
        acc_weight: torch.Tensor | None = None
        first_output = 0
        last_frame: torch.Tensor | None = None
        emitted = 0
        for i, window in enumerate(plan.windows):
            while first_input + len(inputs) < window.end:
                position = first_input + len(inputs)
                if position < num_frames:
                    frame = next(source, None)
                    if frame is None:  # the source promised num_frames but ended here
                        if position == 0:
                            raise VideoError("the video yielded no frames; the file is empty or corrupt")
                        raise TruncatedVideoError(position, num_frames)
                else:
                    frame = last_frame  # the window's frame rule reaches past the end: padding, not output
                inputs.append(frame)
                last_frame = frame
            offset = window.start - first_input
            clip = torch.stack([inputs[offset + k] for k in range(window.length)])
            restored = self.restore_window(clip, window, plan).cpu()
            weights = self.fusion.weights(window, plan).float()
            weighted = restored * weights[None, :, None, None]
            if acc is None:
                acc = torch.zeros(3, 0, *restored.shape[-2:])
                acc_weight = torch.zeros(0)
            grow = window.end - (first_output + acc.shape[1])
            if grow > 0:
                acc = torch.cat(
                    [acc, torch.zeros(3, grow, *restored.shape[-2:])], dim=1
                )
                acc_weight = torch.cat([acc_weight, torch.zeros(grow)])
            a = window.start - first_output
            acc[:, a : a + window.length] += weighted
            acc_weight[a : a + window.length] += weights
            final_until = (
                plan.windows[i + 1].start if i + 1 < len(plan.windows) else window.end
            )
            n_final = final_until - first_output
            if n_final > 0:
                done = (
                    acc[:, :n_final]
                    / acc_weight[:n_final].clamp_min(1e-12)[None, :, None, None]
                )
                for frame in tensor_to_frames(done):
                    if emitted < num_frames:
                        yield frame
                        emitted += 1
                acc, acc_weight = acc[:, n_final:].clone(), acc_weight[n_final:].clone()
                first_output = final_until
            while first_input < final_until and inputs:
                inputs.popleft()
                first_input += 1

    def restore_video(
        self,
        reader: Any,
        write: Callable[[torch.Tensor], None],
        on_frame: Callable[[], None] | None = None,
        num_frames: int | None = None,
    ) -> int:
        """Restore the frames of a :class:`~vsr_core.data.video_io.VideoReader` (or folder reader) into ``write``.

        ``num_frames``: the first frames only (default every frame the reader promises). Returns the
        number of frames written.
        """
        count = 0
        total = reader.num_frames if num_frames is None else num_frames
        for frame in self.restore_frames(reader.iter_frames(), total):
            write(frame)
            count += 1
            if on_frame is not None:
                on_frame()
        return count
