"""Losses shared by methods that train several networks: distribution matching, adversarial, perceptual.

* :mod:`~vsr_core.losses.distribution_matching`: VSD / DMD generator loss (PS-SR Eq. 8, UltraVSR
  Eq. 9-11) and the fake score's denoising loss; :mod:`~vsr_core.losses.scores` builds the real and
  fake scores (two LoRA adapters on one base, or separate modules).
* :mod:`~vsr_core.losses.adversarial`: hinge / non-saturating / least-squares GAN losses, R1;
  :mod:`~vsr_core.losses.discriminators`: temporal PatchGAN, latent-discriminator base.
* :mod:`~vsr_core.losses.perceptual`: LPIPS (VGG, AlexNet) and DISTS on ``[-1, 1]`` videos, offline,
  never part of ``state_dict``; a tiny stand-in for tests.
"""

from vsr_core.losses.adversarial import GAN_LOSSES, d_loss, g_loss, r1_penalty
from vsr_core.losses.discriminators import LatentDiscriminator, PatchHead, TemporalPatchDiscriminator
from vsr_core.losses.distribution_matching import (
    WEIGHTINGS,
    DistributionMatching,
    DistributionMatchingLoss,
    denoising_loss,
    distribution_matching_gradient,
    frame_differences,
    gradient_matching_loss,
    guided,
)
from vsr_core.losses.perceptual import PERCEPTUAL_KINDS, PerceptualLoss, TinyPerceptual, perceptual_weight_files
from vsr_core.losses.scores import (
    AdapterScore,
    ModuleScore,
    ScoreModel,
    activate_adapters,
    adapter_scores,
    use_adapters,
)

__all__ = [
    "GAN_LOSSES",
    "PERCEPTUAL_KINDS",
    "WEIGHTINGS",
    "AdapterScore",
    "DistributionMatching",
    "DistributionMatchingLoss",
    "LatentDiscriminator",
    "ModuleScore",
    "PatchHead",
    "PerceptualLoss",
    "ScoreModel",
    "TemporalPatchDiscriminator",
    "TinyPerceptual",
    "activate_adapters",
    "adapter_scores",
    "d_loss",
    "denoising_loss",
    "distribution_matching_gradient",
    "frame_differences",
    "g_loss",
    "gradient_matching_loss",
    "guided",
    "perceptual_weight_files",
    "r1_penalty",
    "use_adapters",
]
