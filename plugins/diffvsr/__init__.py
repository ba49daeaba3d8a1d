"""DiffVSR plugin: ``diffvsr.DiffVSR`` (video super-resolution x4) and ``diffvsr.TE3DVAE`` (its temporal-enhanced VAE).

Li et al., "DiffVSR: Revealing an Effective Recipe for Taming Robust Video Super-Resolution Against Complex
Degradations" (ICCV 2025). See ``docs/methods/diffvsr.md``.
"""

from diffvsr.model import DiffVSR
from diffvsr.vae_training import TE3DVAE

__all__ = ["DiffVSR", "TE3DVAE"]
