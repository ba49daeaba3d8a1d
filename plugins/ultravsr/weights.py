"""The authors' weights file ``model_vsr.pkl``: reading it safely, checking it, writing the same layout.

The release saves one ``torch.save`` dict (read here only with ``weights_only=True`` through
:func:`vsr_core.torch_files.read_torch_file`; it holds tensors, ints and lists of str, so no other global is
needed) with

* ``rank_unet``, ``unet_lora_encoder_modules`` / ``unet_lora_decoder_modules`` / ``unet_lora_others_modules``
  (the three adapters' target module paths) and ``state_dict_unet``: every UNet parameter whose name
  contains ``lora``, ``conv_in`` or ``RTS`` (peft names, e.g. ``down_blocks.0.attentions.0.transformer_blocks.0.
  attn1.to_q.lora_A.default_encoder.weight``, ``conv_in.base_layer.weight``,
  ``video_down_RTS_blocks.0.RTSConv.conv1.weight``);
* ``rank_vae``, ``vae_lora_modules`` and ``state_dict_vae``: every VAE parameter with ``lora`` or ``RTS``
  (``encoder.conv_in.lora_A.default_encoder.weight``, ``decoder.video_up_RTS_blocks.0.RTSAtten.temperature``).

``vsr export`` of UltraVSR writes this layout too (with every trainable weight when the whole UNet and VAE
are fine-tuned), so the release's own loader reads it, and :class:`ultravsr.UltraVSR` reads both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vsr_core.errors import PretrainedError
from vsr_core.torch_files import read_torch_file

__all__ = [
    "RELEASE_FILE",
    "RELEASE_KEYS",
    "load_release",
    "read_release",
    "release_keys",
    "release_record",
    "write_release",
]

RELEASE_FILE = "model_vsr.pkl"
RELEASE_KEYS = (
    "rank_unet",
    "unet_lora_encoder_modules",
    "unet_lora_decoder_modules",
    "unet_lora_others_modules",
    "state_dict_unet",
    "rank_vae",
    "vae_lora_modules",
    "state_dict_vae",
)
_UNET_LISTS = {
    "default_encoder": "unet_lora_encoder_modules",
    "default_decoder": "unet_lora_decoder_modules",
    "default_others": "unet_lora_others_modules",
}


def release_keys(module: nn.Module, fragments: tuple[str, ...], everything: bool = False) -> list[str]:
    """Parameter names the release stores for ``module``: those containing a ``fragment`` (all: ``everything``)."""
    return [name for name, _ in module.named_parameters() if everything or any(f in name for f in fragments)]


def release_record(
    unet: nn.Module,
    vae: nn.Module,
    unet_rank: int,
    vae_rank: int,
    unet_targets: dict[str, list[str]],
    vae_targets: list[str],
    everything: bool = False,
) -> dict[str, Any]:
    """The release's dict for ``unet`` / ``vae`` (tensors detached, on the CPU); ``everything``: all parameters."""

    def tensors(module: nn.Module, fragments: tuple[str, ...]) -> dict[str, torch.Tensor]:
        params = dict(module.named_parameters())
        return {k: params[k].detach().cpu().contiguous().clone() for k in release_keys(module, fragments, everything)}

    record: dict[str, Any] = {"rank_unet": int(unet_rank)}
    for adapter, key in _UNET_LISTS.items():
        record[key] = list(unet_targets.get(adapter, []))
    record["state_dict_unet"] = tensors(unet, ("lora", "conv_in", "RTS"))
    record["rank_vae"] = int(vae_rank)
    record["vae_lora_modules"] = list(vae_targets)
    record["state_dict_vae"] = tensors(vae, ("lora", "RTS"))
    return record


def write_release(record: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` ``record`` to ``path`` (tensors and plain values only: readable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, path)
    return path


def read_release(path: str | Path) -> dict[str, Any]:
    """The checked release dict of ``path`` (a ``model_vsr.pkl`` file, or a folder holding one)."""
    path = Path(path)
    file = path / RELEASE_FILE if path.is_dir() else path
    if not file.is_file():
        raise PretrainedError(
            f"UltraVSR weights {file} do not exist (pass the release's {RELEASE_FILE} or a `vsr export` folder)"
        )
    record = read_torch_file(file, what="UltraVSR weights file")
    if not isinstance(record, dict):
        raise PretrainedError(
            f"{file} holds a {type(record).__name__}, not the release's dict of {', '.join(RELEASE_KEYS[:2])}, ..."
        )
    missing = [key for key in RELEASE_KEYS if key not in record]
    if missing:
        raise PretrainedError(
            f"{file} is not an UltraVSR weights file: it has no '{missing[0]}' (keys: {sorted(record)[:4]})"
        )
    for key in ("state_dict_unet", "state_dict_vae"):
        if not isinstance(record[key], dict) or not all(isinstance(v, torch.Tensor) for v in record[key].values()):
            raise PretrainedError(f"{file}: '{key}' is not a dict of tensors")
    return record


def _check_targets(file: str, found: list[str], expected: list[str], what: str) -> None:
    found_set, expected_set = set(found), set(expected)
    if found_set != expected_set:
        extra, lacking = sorted(found_set - expected_set), sorted(expected_set - found_set)
        detail = f"it targets {extra[0]} too" if extra else f"it does not target {lacking[0]}"
        raise PretrainedError(
            f"{file}: the {what} LoRA targets differ from this model's ({detail}); check the lora options"
        )


def _load_tensors(
    file: str, module: nn.Module, state: dict[str, torch.Tensor], expected: list[str], what: str
) -> None:
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:2])})")
        raise PretrainedError(f"{file}: the {what} weights do not match this model: {'; '.join(parts)}")
    params = dict(module.named_parameters())
    for name in expected:
        if state[name].shape != params[name].shape:
            raise PretrainedError(
                f"{file}: {what} weight {name} has shape {tuple(state[name].shape)}, "
                f"this model {tuple(params[name].shape)}"
            )
    with torch.no_grad():
        for name in expected:
            params[name].copy_(state[name].to(params[name].dtype))


def load_release(
    record: dict[str, Any],
    source: str,
    unet: nn.Module,
    vae: nn.Module,
    unet_rank: int,
    vae_rank: int,
    unet_targets: dict[str, list[str]],
    vae_targets: list[str],
    everything: bool = False,
) -> None:
    """Copy a release dict into ``unet`` / ``vae``: ranks, targets and every key must match (one-line errors)."""
    if int(record["rank_unet"]) != unet_rank or int(record["rank_vae"]) != vae_rank:
        raise PretrainedError(
            f"{source} has LoRA ranks {record['rank_unet']} (UNet) / {record['rank_vae']} (VAE), this model "
            f"{unet_rank} / {vae_rank}; set --model.init_args.lora.rank / lora.vae_rank"
        )
    for adapter, key in _UNET_LISTS.items():
        _check_targets(source, list(record[key]), unet_targets.get(adapter, []), f"UNet {adapter}")
    _check_targets(source, list(record["vae_lora_modules"]), vae_targets, "VAE encoder")
    _load_tensors(
        source, unet, record["state_dict_unet"], release_keys(unet, ("lora", "conv_in", "RTS"), everything), "UNet"
    )
    _load_tensors(source, vae, record["state_dict_vae"], release_keys(vae, ("lora", "RTS"), everything), "VAE")
