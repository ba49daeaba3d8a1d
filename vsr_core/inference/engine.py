"""The long-video engine: stream frames, restore overlapping windows (and tiles), fuse, write.

Only the frames of the windows in flight are held, so peak memory depends on window and tile
size, never on video length; a frame is yielded as soon as no later window covers it. Output
frame count equals input frame count exactly, and every output frame comes from a real input
frame: a source that ends before the frames it promised raises
:class:`~vsr_core.errors.TruncatedVideoError` instead of being padded (only the tail that a
window's frame rule needs beyond the last frame is padded, and those outputs are dropped).

Two paths, chosen per method:

* **pixel**: each window (and each spatial tile of it) goes through ``method.restore`` (via the
  method's :class:`~vsr_core.inference.fusion.WindowFusion`); tiles are blended with Gaussian
  weights, windows cross-faded.
* **latent**: a method implementing the latent window protocol
  (:mod:`vsr_core.inference.latent`) is driven step by step by
  :class:`~vsr_core.inference.latent_runner.LatentRunner`, which fuses overlapping windows and
  tiles in latent space at every solver step with shared noise; each window is then decoded
  and blended like the pixel path.

Frames larger than the method's ``native_tile`` are tiled automatically (``tile=0`` turns it off).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vsr_core.errors import ConfigError, TruncatedVideoError, VideoError
from vsr_core.frames import frames_at_least, frames_at_most
from vsr_core.inference.assembly import FrameAssembler
from vsr_core.inference.color import COLOR_FIXES
from vsr_core.inference.fusion import WindowFusion, window_fusion_for
from vsr_core.inference.latent import (
    implements_latent_protocol,
    latent_fusion_for,
    latent_tiles,
    latent_windows,
)
from vsr_core.inference.latent_runner import LatentRunner
from vsr_core.inference.noise import TimelineNoise, make_generator
from vsr_core.inference.padding import method_size_rules
from vsr_core.inference.tiles import Tile, TileGrid, blend_rows, plan_tiles
from vsr_core.inference.windows import Window, WindowPlan, plan_windows
from vsr_core.video_ops import padded_size, upsample_frames

__all__ = ["FUSION_MODES", "EngineOptions", "RestoreEngine"]

#: ``auto``: latent fusion when the method implements the latent window protocol (``tiles`` for a tiled
#: video of several windows, unless its ``LatentFusion.always_fuse_windows``), else pixel. ``latent``:
#: windows and tiles fused at every step. ``tiles``: tiles fused at every step, windows run alone and
#: cross-faded in pixels (memory: a band of one window's tile rows, however many windows overlap).
FUSION_MODES = ("auto", "latent", "tiles", "pixel")


@dataclass
class EngineOptions:
    """Settings of :class:`RestoreEngine`; ``None`` takes the method's default.

    ``window``/``overlap``: temporal window length and overlap in frames (default the method's
    ``temporal_window`` and ``temporal_overlap``). ``tile``: LQ tile side in pixels — ``None``
    tiles frames larger than the method's ``native_tile`` into native tiles, ``0`` never tiles,
    ``N`` tiles frames larger than ``N``. ``tile_overlap``: LQ pixels neighbouring tiles share
    (default the method's ``native_tile_overlap`` for native tiles, a quarter of ``N`` for
    ``tile=N``). ``color_fix``: ``"none"``, ``"wavelet"`` or ``"adain"`` (per tile, against the
    bicubic-upsampled input). ``precision``: ``"fp32"`` or ``"bf16"`` (autocast). ``seed``: seeds
    the ``generator`` passed to the method for each file (``None``: unseeded). ``prompt``: one
    caption for every window (``None``: the method's empty-prompt conditioning). ``fusion``: see
    :data:`FUSION_MODES`. ``sampling``: keyword arguments for ``restore`` / ``prepare_window``
    (e.g. ``{"num_inference_steps": 4}``).
    """

    window: int | None = None
    overlap: int | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    color_fix: str = "none"
    device: str | torch.device = "cpu"
    precision: str = "fp32"
    seed: int | None = 0
    prompt: str | None = None
    fusion: str = "auto"
    sampling: dict[str, Any] = field(default_factory=dict)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class RestoreEngine:
    """Restore videos of any length with a :class:`~vsr_core.method.VSRMethod`.

    ``restore_frames(frames, num_frames)`` takes an iterable of ``uint8 [h, w, 3]`` frames and
    yields ``uint8 [h*s, w*s, 3]`` frames (``s = method.scale``), one per input frame, in order;
    ``restore_tensor(video)`` does the same for a float ``[3, T, h, w]`` video in [-1, 1].
    ``restore_seconds`` accumulates the time spent inside the method's calls; ``last_grid`` is the
    tile grid of the last video, ``runner`` the :class:`LatentRunner` of the last latent-fused one.
    """

    def __init__(
        self,
        method: Any,
        options: EngineOptions | None = None,
        fusion: WindowFusion | None = None,
    ) -> None:
        self.method = method
        self.options = options = options or EngineOptions()
        if options.color_fix not in ("none", *COLOR_FIXES):
            raise ConfigError(f"--color-fix must be one of none, {', '.join(COLOR_FIXES)}; got {options.color_fix!r}")
        if options.precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision must be bf16 or fp32, got {options.precision!r}")
        if options.fusion not in FUSION_MODES:
            raise ConfigError(f"--fusion must be one of {', '.join(FUSION_MODES)}; got {options.fusion!r}")
        self.name = type(method).__name__
        self.device = torch.device(options.device)
        self.fusion = fusion or window_fusion_for(method)
        self.scale = int(getattr(method, "scale", 1))
        self.frames_rule = tuple(getattr(method, "frames_rule", (1, 0)))
        self.latent = options.fusion in ("latent", "tiles") or (
            options.fusion == "auto" and implements_latent_protocol(method)
        )
        self.layout = None
        if self.latent:
            if not implements_latent_protocol(method):  # also a method opting out with latent_layout = None
                raise ConfigError(
                    f"--fusion {options.fusion}: {self.name} does not implement prepare_window/denoise_step/finish_window "
                    "with a latent_layout; use --fusion pixel"
                )
            self.layout = method.latent_layout
        native_window = int(getattr(method, "temporal_window", 16))
        self.window = options.window or native_window
        if options.overlap is not None:
            self.overlap = options.overlap
        else:
            # The method's overlap, scaled with the window when --window changes it (a quarter by default).
            native_overlap = int(getattr(method, "temporal_overlap", native_window // 4))
            self.overlap = round(native_overlap * self.window / native_window)
            self.overlap = min(self.overlap, max(0, frames_at_most(self.window, self.frames_rule) - 1))
        self.multiple, self.min_size = method_size_rules(method)
        if self.layout is not None:
            quantum = self.layout.lq_quantum(self.scale)
            self.multiple = self.multiple * quantum // math.gcd(self.multiple, quantum)
        self.min_tile = max(self.multiple, self.min_size)
        if options.tile is not None and options.tile < 0:
            raise ConfigError(f"--tile must be >= 0 (0 turns tiling off), got {options.tile}")
        if options.tile and options.tile < self.min_tile:
            raise ConfigError(
                f"--tile {options.tile} is smaller than {self.name}'s minimum tile of {self.min_tile} LQ pixels"
            )
        if options.tile_overlap is not None and options.tile_overlap < 0:
            raise ConfigError(f"--tile-overlap must be >= 0, got {options.tile_overlap}")
        self._restore_takes_generator = _accepts(method.restore, "generator")
        self._fusion_takes_tile = "tile" in inspect.signature(self.fusion.restore_window).parameters
        self.restore_seconds = 0.0
        #: the tile grid of the last video (``None`` before the first); for reports and tests
        self.last_grid: TileGrid | None = None

    # ------------------------------------------------------------------ plans

    def plan(self, num_frames: int) -> WindowPlan:
        """The temporal windows of a ``num_frames``-frame video (latent fusion: starts on latent frames)."""
        if not self.latent or self.layout.temporal_factor == 1:
            return plan_windows(num_frames, self.window, self.overlap, self.frames_rule)
        return self._latent_plan(num_frames)

    def _latent_plan(self, num_frames: int) -> WindowPlan:
        # Windows start on latent frames (multiples of the temporal factor) so the latents two windows
        # share are the same latent frames; the last window may reach past the end (padding, dropped).
        tf = self.layout.temporal_factor
        length = frames_at_most(self.window, self.frames_rule)
        if num_frames <= length:
            length = frames_at_least(num_frames, self.frames_rule)
            return WindowPlan(num_frames, length, (Window(0, 0, length, 0, 0),))
        if self.overlap >= length:
            raise ConfigError(f"--overlap {self.overlap} must be smaller than the window ({length} frames)")
        step = max(tf, (length - self.overlap) // tf * tf)
        starts = [0]
        while starts[-1] + length < num_frames:
            starts.append(starts[-1] + step)
        windows = []
        for i, start in enumerate(starts):
            before = starts[i - 1] + length - start if i else 0
            after = start + length - starts[i + 1] if i + 1 < len(starts) else 0
            windows.append(Window(i, start, length, max(0, before), max(0, after)))
        return WindowPlan(num_frames, starts[-1] + length, tuple(windows))

    def padded_frame(self, height: int, width: int) -> tuple[int, int]:
        """The LQ frame size the method sees: padded to the method's multiple and minimum size."""
        return padded_size(height, self.multiple, self.min_size), padded_size(width, self.multiple, self.min_size)

    def tile_grid(self, height: int, width: int) -> TileGrid:
        """The tiles of a padded ``height x width`` LQ frame under the options (see :class:`EngineOptions`)."""
        requested = self.options.tile
        native = getattr(self.method, "native_tile", None)
        side = native if requested is None else (requested or None)
        if side is None or (height <= side and width <= side):
            return plan_tiles(height, width, None)
        side = max(self.min_tile, side // self.multiple * self.multiple)
        if self.options.tile_overlap is not None:
            overlap = self.options.tile_overlap
        elif requested is None:
            overlap = int(getattr(self.method, "native_tile_overlap", 0) or 0)
        else:
            overlap = side // 4
        overlap = -(-overlap // self.multiple) * self.multiple  # tile starts stay on the method's grid
        if overlap >= side:
            raise ConfigError(
                f"--tile-overlap {overlap} must be smaller than the tile ({side} LQ pixels after {self.name}'s size rules)"
            )
        return plan_tiles(height, width, side, overlap)

    # ------------------------------------------------------------------ method calls

    def _autocast(self):
        if self.options.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one method call under inference mode (and autocast), counting its time."""
        start = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            out = fn(*args, **kwargs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.restore_seconds += time.perf_counter() - start
        return out

    def _prompt(self, batch: int) -> list[str] | None:
        prompt = self.options.prompt
        return [prompt] * batch if prompt else None

    def _sampling(self, generator: torch.Generator | None) -> dict[str, Any]:
        sampling = dict(self.options.sampling)
        if generator is not None and "generator" not in sampling and self._restore_takes_generator:
            sampling["generator"] = generator
        return sampling

    def _check(self, out: torch.Tensor, lq: torch.Tensor, what: str) -> torch.Tensor:
        expected = (*lq.shape[:3], lq.shape[3] * self.scale, lq.shape[4] * self.scale)
        if tuple(out.shape) != expected:
            raise RuntimeError(
                f"{self.name}.{what} returned {tuple(out.shape)} for {tuple(lq.shape)}; expected {expected}"
            )
        return out.float()

    def _finish_tile(self, out: torch.Tensor, lq_tile: torch.Tensor) -> torch.Tensor:
        """``[1,3,L,H,W]`` -> ``[3,L,H,W]`` clamped, colour-fixed against the upsampled LQ tile if asked."""
        out = out.clamp(-1, 1)
        if self.options.color_fix != "none":
            reference = upsample_frames(lq_tile.float(), self.scale).clamp(-1, 1)
            out = COLOR_FIXES[self.options.color_fix](out, reference).clamp(-1, 1)
        return out[0]

    # ------------------------------------------------------------------ pixel path

    def _tile_lq(self, clip: torch.Tensor, tile: Tile) -> torch.Tensor:
        """One tile of a window's frames as the method's input ``float [1,3,L,th,tw]`` on the device.

        ``clip`` is ``uint8 [L,h,w,3]`` (or float ``[3,L,h,w]``) at the unpadded size; rows and columns
        past its edge repeat the last ones (the engine's replicate padding), so the whole padded
        window never exists in float.
        """
        uint8 = clip.dtype == torch.uint8
        h, w = (clip.shape[1], clip.shape[2]) if uint8 else (clip.shape[2], clip.shape[3])
        rows = torch.arange(tile.y, tile.y + tile.height).clamp_max(h - 1)
        cols = torch.arange(tile.x, tile.x + tile.width).clamp_max(w - 1)
        if uint8:
            part = clip[:, rows][:, :, cols].permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
        else:
            part = clip[:, :, rows][:, :, :, cols].float()
        return part.unsqueeze(0).to(self.device)

    def _restore_tiles(
        self, clip: torch.Tensor, grid: TileGrid, window: Window, plan: WindowPlan, generator: torch.Generator | None
    ) -> Iterator[tuple[Tile, torch.Tensor]]:
        """Restore each tile of a window's frames with ``method.restore`` (lazily, raster order)."""
        sampling = self._sampling(generator)
        prompt = self._prompt(1)
        for tile in grid.tiles:
            part = self._tile_lq(clip, tile)
            extra = {"tile": tile} if self._fusion_takes_tile else {}
            out = self._call(self.fusion.restore_window, self.method, part, window, plan, prompt, **extra, **sampling)
            yield tile, self._finish_tile(self._check(out, part, "restore"), part)

    # ------------------------------------------------------------------ a whole video

    @staticmethod
    def _size(clip: torch.Tensor) -> tuple[int, int]:
        """``(h, w)`` of a clip of ``uint8 [L,h,w,3]`` or float ``[3,L,h,w]`` frames."""
        return (clip.shape[1], clip.shape[2]) if clip.dtype == torch.uint8 else (clip.shape[2], clip.shape[3])

    def restore_frames(self, frames: Iterable[torch.Tensor], num_frames: int) -> Iterator[torch.Tensor]:
        """Yield the restored ``uint8 [H, W, 3]`` frames of a ``num_frames``-frame stream, in order."""
        return self._restore_stream(frames, num_frames, as_uint8=True)

    def restore_tensor(self, video: torch.Tensor) -> torch.Tensor:
        """``float [3, T, h, w]`` in [-1, 1] -> ``float [3, T, h*s, w*s]`` in [-1, 1] (no 8-bit rounding)."""
        if video.ndim != 4 or video.shape[0] != 3:
            raise ConfigError(f"restore_tensor expects a float video [3, T, H, W], got {tuple(video.shape)}")
        frames = (video[:, t] for t in range(video.shape[1]))
        return torch.stack(list(self._restore_stream(frames, video.shape[1], as_uint8=False)), dim=1)

    def _restore_stream(
        self, frames: Iterable[torch.Tensor], num_frames: int, as_uint8: bool
    ) -> Iterator[torch.Tensor]:
        plan = self.plan(num_frames)
        self.fusion.start(plan)
        generator = make_generator(self.options.seed, self.device) if self.options.seed is not None else None
        source = iter(frames)
        inputs: deque[torch.Tensor] = deque()  # input frames first_input .. first_input + len - 1
        state = {"first_input": 0, "last": None}

        def clip_of(window: Window) -> torch.Tensor:
            while state["first_input"] + len(inputs) < window.end:
                position = state["first_input"] + len(inputs)
                if position < num_frames:
                    frame = next(source, None)
                    if frame is None:  # the source promised num_frames but ended here
                        if position == 0:
                            raise VideoError("the video yielded no frames; the file is empty or corrupt")
                        raise TruncatedVideoError(position, num_frames)
                    state["last"] = frame
                else:
                    frame = state["last"]  # the window's frame rule reaches past the end: padding, not output
                inputs.append(frame)
            while state["first_input"] < window.start:  # no later window needs these
                inputs.popleft()
                state["first_input"] += 1
            offset = window.start - state["first_input"]
            chosen = [inputs[offset + k] for k in range(window.length)]
            return torch.stack(chosen) if chosen[0].dtype == torch.uint8 else torch.stack(chosen, dim=1)

        assembler: FrameAssembler | None = None
        emitted = 0

        def assemble(
            window: Window, size: tuple[int, int], bands: Iterable[tuple[int, torch.Tensor]]
        ) -> Iterator[torch.Tensor]:
            nonlocal assembler, emitted
            h, w = size
            if assembler is None:
                assembler = FrameAssembler(num_frames, h * self.scale, w * self.scale, as_uint8=as_uint8)
            following = plan.windows[window.index + 1].start if window.index + 1 < len(plan.windows) else None
            weights = self.fusion.weights(window, plan)
            for frame in assembler.add_window(window.start, weights, following, bands):
                if emitted < num_frames:
                    emitted += 1
                    yield frame

        if self.latent:
            yield from self._latent_stream(plan, clip_of, assemble, generator)
            return
        for window in plan.windows:
            clip = clip_of(window)
            grid = self.tile_grid(*self.padded_frame(*self._size(clip)))
            self.last_grid = grid
            bands = blend_rows(grid, self.scale, self._restore_tiles(clip, grid, window, plan, generator))
            yield from assemble(window, self._size(clip), bands)

    def _latent_stream(
        self,
        plan: WindowPlan,
        clip_of: Callable[[Window], torch.Tensor],
        assemble: Callable[..., Iterator[torch.Tensor]],
        generator: torch.Generator | None,
    ) -> Iterator[torch.Tensor]:
        layout, s = self.layout, self.scale
        first = clip_of(plan.windows[0])
        size = self._size(first)
        grid = self.tile_grid(*self.padded_frame(*size))
        self.last_grid = grid
        seed = self.options.seed if self.options.seed is not None else int(torch.randint(0, 2**62, ()).item())
        noise = TimelineNoise(seed, 1, layout.latent_channels, self.device)
        fusion = latent_fusion_for(self.method)
        mode = self.options.fusion
        # auto: windows fused in latent space unless the frames are tiled and there are several windows
        # (then every tile of about steps + 1 windows would be alive), or the method's fusion insists.
        fuse_windows = mode == "latent" or (
            mode == "auto" and (grid.single or len(plan.windows) == 1 or fusion.always_fuse_windows)
        )
        runner = LatentRunner(
            self.method,
            layout,
            fusion,
            latent_windows(plan, layout),
            latent_tiles(grid, layout, s),
            (layout.to_latent(grid.height, s), layout.to_latent(grid.width, s)),
            noise,
            self._call,
            self._tile_lq,
            prompt=self._prompt(1),
            sampling=self._sampling(generator),
            fuse_windows=fuse_windows,
        )
        self.runner = runner

        def clip_at(j: int) -> torch.Tensor:
            return first if j == 0 else clip_of(plan.windows[j])

        for latent_window, clip, decoded in runner.run(clip_at):

            def tiles() -> Iterator[tuple[Tile, torch.Tensor]]:
                for latent_tile, video in decoded:
                    part = self._tile_lq(clip, latent_tile.tile)
                    yield latent_tile.tile, self._finish_tile(self._check(video, part, "finish_window"), part)

            yield from assemble(latent_window.window, size, blend_rows(grid, s, tiles()))

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
