"""Testing kit for method authors: the conformance suite and synthetic data fixtures."""

from vsr_core.testing.conformance import MethodConformance, tiny_trainer, valid_frame_count
from vsr_core.testing.synthetic import SyntheticClips, SyntheticDataModule, moving_texture

__all__ = [
    "MethodConformance",
    "SyntheticClips",
    "SyntheticDataModule",
    "moving_texture",
    "tiny_trainer",
    "valid_frame_count",
]
