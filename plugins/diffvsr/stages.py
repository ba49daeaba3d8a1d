"""What trains in each stage of the progressive learning strategy (PLS, paper v2 Sec. 3.2, Table 1).

* stage 1 (temporal layer fine-tuning, ``simple`` degradation): ``trainable="temporal"`` -- every spatial weight of
  the image model frozen;
* stage 2 (complex degradation adaptation, ``realbasicvsr``): the paper does not say which parameters train; here
  ``temporal`` again (stage 3 is where the paper "fully unfreezes" the model). ``temporal+resnets`` also trains the
  image UNet's ResNet blocks and input convolution (the release's ``from_pretrained_2d`` marks them trainable);
* stage 3 (high-quality refinement): ``trainable="all"``.

``spatial`` trains the image UNet alone (no temporal layer): how a tiny random model gets an "image prior" before
stage 1 in the learning check. The codec and the text encoder never train here.
"""

from __future__ import annotations

from torch import nn

from diffvsr.unet import temporal_parameter_names
from vsr_core.errors import ConfigError

__all__ = ["TRAINABLE", "apply_trainable", "trainable_counts"]

TRAINABLE = ("temporal", "temporal+resnets", "spatial", "all")


def _is_spatial_resnet_or_input(name: str) -> bool:
    return ".resnets." in name or name.startswith("conv_in.")


def apply_trainable(unet: nn.Module, mode: str) -> None:
    """Set ``requires_grad`` of every parameter of the inflated ``unet`` for ``mode`` (module docstring)."""
    if mode not in TRAINABLE:
        raise ConfigError(f"training.trainable must be one of {', '.join(TRAINABLE)}, got {mode!r}")
    temporal = temporal_parameter_names(unet)
    for name, parameter in unet.named_parameters():
        if mode == "all":
            wanted = True
        elif mode == "spatial":
            wanted = name not in temporal
        elif mode == "temporal":
            wanted = name in temporal
        else:
            wanted = name in temporal or _is_spatial_resnet_or_input(name)
        parameter.requires_grad_(wanted)


def trainable_counts(unet: nn.Module) -> dict[str, int]:
    """``{"temporal": n, "spatial": n}``: trainable parameters of the temporal layers and of the image UNet."""
    temporal = temporal_parameter_names(unet)
    counts = {"temporal": 0, "spatial": 0}
    for name, parameter in unet.named_parameters():
        if parameter.requires_grad:
            counts["temporal" if name in temporal else "spatial"] += parameter.numel()
    return counts
