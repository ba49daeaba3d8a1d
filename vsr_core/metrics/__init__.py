"""Quality metrics for restored videos (``[B,3,T,H,W]`` in ``[-1,1]``)."""

from vsr_core.metrics.fidelity import psnr, ssim

__all__ = ["psnr", "ssim"]
