"""SATB-VR plugin: ``satb.SATBVR``, few-step video restoration with SNR-Aware Trajectory Blending.

Bai et al., "SATB-VR: Training Few-Step Video Restoration Diffusion Model using SNR-Aware
Trajectory Blending" (2026). See ``docs/methods/satb.md``.
"""

from satb.model import SATBVR

__all__ = ["SATBVR"]
