"""UltraVSR plugin: ``ultravsr.UltraVSR``, one-step video super-resolution on Stable Diffusion 2.1.

Liu et al., "UltraVSR: Achieving Ultra-Realistic Video Super-Resolution with Efficient One-Step Diffusion
Space" (ACM MM 2025): degradation-aware reconstruction scheduling (DRS), recurrent temporal shift (RTS)
modules, spatio-temporal joint distillation (SJD) and temporally asynchronous inference (TAI).
See ``docs/methods/ultravsr.md``.
"""

from ultravsr.model import UltraVSR

__all__ = ["UltraVSR"]
