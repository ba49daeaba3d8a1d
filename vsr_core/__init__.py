"""vsr core: contracts and shared machinery for latent-diffusion video super-resolution methods.

The public names are imported lazily so that ``import vsr_core.errors`` (or a plugin importing one
submodule) does not pay for importing Lightning and the data stack.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# peft imports bitsandbytes, which logs a warning about an optional CPU kernel on every import.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

__version__ = "0.1.0"

_EXPORTS = {
    "VSRMethod": "vsr_core.method",
    "VideoDataModule": "vsr_core.data",
    "load_method": "vsr_core.checkpoint",
    "VSRError": "vsr_core.errors",
    "LatentCodec": "vsr_core.latent",
    "DDPMSchedule": "vsr_core.diffusion",
    "FlowMatchingSchedule": "vsr_core.diffusion",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vsr_core' has no attribute {name!r}")
