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

# What docs/plugin-authoring.md teaches a plugin to use, by the module that defines it. Everything
# else a plugin may use is in the ``__all__`` of a direct submodule (``vsr_core.losses``, ...).
_EXPORTS = {
    "VSRMethod": "vsr_core.method",
    "load_method": "vsr_core.checkpoint",
    "VideoDataModule": "vsr_core.data",
    "VSRError": "vsr_core.errors",
    "ConfigError": "vsr_core.errors",
    "PretrainedError": "vsr_core.errors",
    "OptionGroup": "vsr_core.options",
    "LoRAOptions": "vsr_core.options",
    "SamplingOptions": "vsr_core.options",
    "TilingOptions": "vsr_core.options",
    "LatentCodec": "vsr_core.latent",
    "NoiseSchedule": "vsr_core.diffusion",
    "DDPMSchedule": "vsr_core.diffusion",
    "FlowMatchingSchedule": "vsr_core.diffusion",
    "PromptEncoder": "vsr_core.text",
    "WindowFusion": "vsr_core.inference",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vsr_core' has no attribute {name!r}")
