"""Load a trained method for inference: onto a device, or CPU-offloaded, optionally compiled.

``vsr restore`` and :func:`vsr.load` share this, so a checkpoint restores the same way from the
command line and from Python.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vsr_core.errors import ConfigError

__all__ = ["load_for_inference"]


def load_for_inference(
    path: str | Path,
    device: str,
    *,
    offload: str = "none",
    compile: bool = False,  # noqa: A002 - the flag's name (--compile)
) -> Any:
    """The method in ``path`` (a ``vsr fit`` checkpoint or ``vsr export`` folder), in eval mode, ready on ``device``.

    Args:
        path: checkpoint file or export folder.
        device: where it runs (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
        offload: ``none`` (every weight on ``device``), ``model`` or ``sequential``
            (:func:`vsr_core.offload.enable_offload`: the big diffusers/transformers models stay in
            CPU memory and move to ``device`` when called; for GPUs smaller than the method).
        compile: ``torch.compile`` the method's transformer/UNet blocks (:meth:`VSRMethod.compile_blocks`);
            the first window is slow (compilation), the rest faster on a GPU.

    Raises:
        VSRError: an unreadable checkpoint, an uninstalled plugin, an unknown offload mode, a method
            without a model to offload.
    """
    from vsr_core.checkpoint import load_method
    from vsr_core.offload import OFFLOAD_MODES, enable_offload

    if offload not in OFFLOAD_MODES:
        raise ConfigError(f"--offload must be one of {', '.join(OFFLOAD_MODES)}; got {offload!r}")
    if offload == "none":
        method = load_method(path, map_location=device)
    else:
        method = load_method(path, map_location="cpu")  # the offloaded models stay in host memory
        names = enable_offload(method, offload, device)
        print(f"offload ({offload}): {', '.join(names)} stay in CPU memory until called", file=sys.stderr)
    method.eval()
    if compile:
        compiled = getattr(method, "compile_blocks", None)
        count = compiled() if callable(compiled) else 0
        if not count:
            raise ConfigError(
                f"--compile: {type(method).__name__} declares no fsdp_block_classes to compile; drop --compile"
            )
        print(f"compile: {count} blocks torch.compile'd (the first window compiles them)", file=sys.stderr)
    return method
