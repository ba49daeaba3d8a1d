"""The core's conformance kit on DiffVSR's tiny configuration (also run by tests/plugins/test_every_method.py)."""

from __future__ import annotations

from diffvsr import DiffVSR
from vsr_core.testing import MethodConformance


class TestDiffVSRConformance(MethodConformance):
    method_class = DiffVSR
    config_file = "plugins/diffvsr/configs/tiny.yaml"
