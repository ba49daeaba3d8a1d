"""Which parameters of SATB-VR train: LoRA adapters on the CogVideoX blocks, full, or frozen."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vsr_core.errors import ConfigError
from vsr_core.lora import add_lora as core_add_lora

FINETUNE_MODES = ("lora", "full", "none")
#: LoRA targets: the attention and feed-forward projections of every CogVideoX block.
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


def check_mode(name: str, mode: str, allowed: Sequence[str] = FINETUNE_MODES) -> str:
    if mode not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {mode!r}")
    return mode


def lora_target_pattern(targets: Sequence[str]) -> str:
    """peft regex for ``transformer_blocks.<i>.<target>``: the blocks only, not connectors or embeddings."""
    names = "|".join(t.replace(".", r"\.") for t in targets)
    return rf".*transformer_blocks\.\d+\.(attn1\.)?({names})"


def add_lora(
    model: nn.Module, rank: int, alpha: float | None, targets: Sequence[str], adapter_name: str = "default"
) -> None:
    """Attach a fresh LoRA adapter (``B = 0``: the model starts equal to its base) to the blocks of ``model``."""
    core_add_lora(model, rank, alpha, lora_target_pattern(targets), adapter_name)


def is_lora_parameter(name: str) -> bool:
    return ".lora_" in name


def apply_trainability(model: nn.Module, mode: str, always_trainable: Sequence[str] = ()) -> None:
    """Set ``requires_grad``: ``full`` all; ``lora`` LoRA only; ``none`` nothing.

    Parameters whose names start with one of ``always_trainable`` (new modules without pretrained
    weights, e.g. the connectors) train in every mode.
    """
    for name, parameter in model.named_parameters():
        trainable = mode == "full" or (mode == "lora" and is_lora_parameter(name))
        parameter.requires_grad_(trainable or name.startswith(tuple(always_trainable)))
