"""vsr: the one-call Python API of the vsr toolkit.

    import vsr

    pipe = vsr.load("run.ckpt", device="cuda", steps=4)   # a checkpoint or a `vsr export` folder
    hq = pipe(frames)              # uint8 [T,H,W,3] (numpy or torch) -> uint8 [T,4H,4W,3], same type
    hq = pipe(video)               # float [B,3,T,H,W] in [-1,1] -> float [B,3,T,4H,4W]
    pipe("clip.mp4", output="restored/")   # files and folders are written as `vsr restore` writes them

Every option of ``vsr restore`` is a keyword of :func:`load` (the pipeline's defaults) and of the
call (for one call). See docs/getting-started.md.
"""

from __future__ import annotations

from vsr.pipeline import Pipeline, load

__all__ = ["Pipeline", "load"]
