"""Testing kit for method authors: the conformance suite, synthetic data fixtures, the inflation check."""

from vsr_core.testing.conformance import MethodConformance, tiny_trainer, valid_frame_count
from vsr_core.testing.inflation import assert_reproduces_image_model
from vsr_core.testing.synthetic import SyntheticClips, SyntheticDataModule, moving_texture

__all__ = [
    "MethodConformance",
    "SyntheticClips",
    "SyntheticDataModule",
    "assert_reproduces_image_model",
    "moving_texture",
    "tiny_trainer",
    "valid_frame_count",
]
