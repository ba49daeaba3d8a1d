"""Testing kit for method authors: the conformance suite, test methods, synthetic data, the inflation check."""

from vsr_core.testing.boring import BoringMethod
from vsr_core.testing.conformance import MethodConformance, conformance_suite, tiny_trainer
from vsr_core.testing.inflation import assert_reproduces_image_model
from vsr_core.testing.latent_boring import LatentBoringMethod
from vsr_core.testing.synthetic import SyntheticClips, SyntheticDataModule, moving_texture
from vsr_core.testing.three_networks import ThreeNetworkMethod

__all__ = [
    "BoringMethod",
    "LatentBoringMethod",
    "MethodConformance",
    "SyntheticClips",
    "SyntheticDataModule",
    "ThreeNetworkMethod",
    "assert_reproduces_image_model",
    "conformance_suite",
    "moving_texture",
    "tiny_trainer",
]
