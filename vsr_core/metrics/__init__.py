"""Quality metrics for restored videos (``[B,3,T,H,W]`` in ``[-1,1]``).

Names are imported lazily: ``vsr evaluate --help`` (which needs only :mod:`vsr_core.metrics.catalog`)
does not pay for torch, kornia and pyiqa.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ALL_METRICS": "catalog",
    "DEFAULT_METRICS": "catalog",
    "OPT_IN_METRICS": "catalog",
    "DoverMetric": "dover",
    "HornSchunckFlow": "temporal",
    "MetricSuite": "suite",
    "MissingWeights": "iqa",
    "RaftFlow": "temporal",
    "Report": "suite",
    "create_dover_metric": "dover",
    "create_iqa_metric": "iqa",
    "default_flow_estimator": "temporal",
    "default_weights_dir": "iqa",
    "flicker": "temporal",
    "psnr": "fidelity",
    "ssim": "fidelity",
    "validation_scores": "validation",
    "warping_error": "temporal",
    "weights_access": "iqa",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vsr_core.metrics.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vsr_core.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
