"""PS-SR (Wu et al., CVPR 2026): pseudo-single-step video super-resolution by speculative diffusion."""

from pssr.model import PSSR

__all__ = ["PSSR"]
