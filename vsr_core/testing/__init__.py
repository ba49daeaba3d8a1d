"""Testing kit for method authors: the conformance suite, a boring method and synthetic data fixtures."""

from vsr_core.testing.boring import BoringMethod
from vsr_core.testing.conformance import MethodConformance, conformance_suite, tiny_trainer
from vsr_core.testing.synthetic import SyntheticClips, SyntheticDataModule, moving_texture

__all__ = [
    "BoringMethod",
    "MethodConformance",
    "SyntheticClips",
    "SyntheticDataModule",
    "conformance_suite",
    "moving_texture",
    "tiny_trainer",
]
