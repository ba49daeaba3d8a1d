"""``vsr.load`` and the :class:`Pipeline` it returns: ``vsr restore`` as a Python call.

The pipeline holds a loaded method and the options of ``vsr restore``; each call runs the same
long-video engine (:class:`~vsr_core.inference.RestoreEngine`): windows, automatic tiling, fusion,
colour fix, per-file seeded noise.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from vsr_core.errors import ConfigError

__all__ = ["OPTIONS", "Pipeline", "load"]

#: The keyword options of :func:`load` and :meth:`Pipeline.__call__` (those of ``vsr restore``).
OPTIONS = (
    "steps",
    "prompt",
    "sample",
    "window",
    "overlap",
    "tile",
    "tile_overlap",
    "color_fix",
    "fusion",
    "precision",
    "seed",
)


def _check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; vsr.load takes: {', '.join(OPTIONS)}")


class Pipeline:
    """A restoring method plus the options of ``vsr restore``; call it on a video.

    ``pipe(x, **options)`` restores ``x``:

    * a path (``str`` / ``os.PathLike``) to a video file, a frame folder or a directory of them:
      written as ``vsr restore`` writes them, one ``<output>/<name>.mp4`` each (``output`` default
      ``"restored"``; ``overwrite``, ``allow_truncated``, ``crf`` as the command's flags); returns the
      list of written paths;
    * ``uint8 [T, H, W, 3]`` frames (a numpy array or a torch tensor): returns ``uint8 [T, H*s, W*s, 3]``
      of the same type;
    * a float tensor ``[B, 3, T, H, W]`` in [-1, 1]: returns ``[B, 3, T, H*s, W*s]`` in [-1, 1] (same
      dtype and device), each of the ``B`` videos restored on its own and never rounded to 8 bits.

    ``options`` override the ones given to :func:`load` for this call.

    Attributes:
        method: the loaded :class:`~vsr_core.method.VSRMethod` (``eval`` mode).
        device: where it runs.
        options: the default options of every call.
    """

    def __init__(self, method: Any, device: str, **options: Any) -> None:
        _check_options(options)
        self.method = method
        self.device = device
        self.options = dict(options)
        self._engine(self.options)  # bad options fail at load time, not at the first call

    def _engine(self, options: dict[str, Any]) -> Any:
        from vsr_core.inference import RestoreEngine, engine_options

        def warn(text: str) -> None:
            warnings.warn(text, stacklevel=4)

        return RestoreEngine(self.method, engine_options(self.method, self.device, on_warning=warn, **options))

    def __call__(
        self,
        video: Any,
        *,
        output: str | os.PathLike | None = None,
        overwrite: bool = False,
        allow_truncated: bool = False,
        crf: int = 18,
        **options: Any,
    ) -> Any:
        _check_options(options)
        engine = self._engine({**self.options, **options})
        if isinstance(video, (str, os.PathLike)):
            return self._restore_paths([video], engine, Path(output or "restored"), overwrite, allow_truncated, crf)
        if output is not None:
            raise ConfigError("output= is for file and folder inputs; an array or tensor is returned")
        return self._restore_array(video, engine)

    def _restore_paths(
        self, paths: list[Any], engine: Any, outdir: Path, overwrite: bool, allow_truncated: bool, crf: int
    ) -> list[Path]:
        from vsr_core.inference import collect_inputs, frames_to_restore, restore_file
        from vsr_core.inference.outputs import prepared_outputs

        inputs = collect_inputs([os.fspath(p) for p in paths])
        counts = [frames_to_restore(source, allow_truncated=allow_truncated) for source in inputs]
        with prepared_outputs(inputs, outdir, overwrite) as targets:
            for source, count, target in zip(inputs, counts, targets):
                restore_file(engine, source, target, crf=crf, num_frames=count)
        return targets

    def _restore_array(self, video: Any, engine: Any) -> Any:
        import numpy as np
        import torch

        if isinstance(video, np.ndarray):
            if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
                raise ConfigError(f"a numpy video must be uint8 [T, H, W, 3], got {video.dtype} {list(video.shape)}")
            frames = torch.from_numpy(np.ascontiguousarray(video))
            return torch.stack(list(engine.restore_frames(iter(frames), frames.shape[0]))).numpy()
        if not isinstance(video, torch.Tensor):
            raise ConfigError(
                f"cannot restore a {type(video).__name__}: pass a path, uint8 [T,H,W,3] frames or a float [B,3,T,H,W] tensor"
            )
        if video.dtype == torch.uint8:
            if video.ndim != 4 or video.shape[-1] != 3:
                raise ConfigError(f"uint8 frames must be [T, H, W, 3], got {list(video.shape)}")
            frames = video.cpu()
            out = torch.stack(list(engine.restore_frames(iter(frames), frames.shape[0])))
            return out.to(video.device)
        if not video.is_floating_point() or video.ndim != 5 or video.shape[1] != 3:
            raise ConfigError(
                f"a float video must be [B, 3, T, H, W] in [-1, 1], got {video.dtype} {list(video.shape)}"
            )
        restored = [engine.restore_tensor(clip.float()) for clip in video]
        return torch.stack(restored).to(device=video.device, dtype=video.dtype)


def load(
    path: str | os.PathLike,
    device: str | None = None,
    *,
    offload: str = "none",
    compile: bool = False,  # noqa: A002 - vsr restore's --compile
    **options: Any,
) -> Pipeline:
    """Load a ``vsr fit`` checkpoint or a ``vsr export`` folder into a :class:`Pipeline`.

    Args:
        path: the checkpoint or export folder (any installed plugin's).
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
        offload: ``"none"``, ``"model"`` or ``"sequential"``: keep the big models in CPU memory
            (``vsr restore --offload``).
        compile: ``torch.compile`` the method's blocks (``vsr restore --compile``).
        **options: defaults of every call, as ``vsr restore``'s flags: ``steps``, ``prompt``,
            ``sample`` (a dict of method-specific sampling options), ``window``, ``overlap``,
            ``tile`` (``None`` native tiling, ``0`` off), ``tile_overlap``, ``color_fix``, ``fusion``,
            ``precision``, ``seed``.

    Raises:
        VSRError: an unreadable checkpoint, an uninstalled plugin, an unknown or bad option.
    """
    import torch

    from vsr_core.inference import load_for_inference

    _check_options(options)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but no CUDA device is available; use device='cpu'")
    method = load_for_inference(path, device, offload=offload, compile=compile)
    return Pipeline(method, device, **options)
