"""Loading and writing SATB-VR weights: the base CogVideoX folder and the authors' release layout.

The release (``chenxx89/SATB-VR`` on the hub) sits beside a CogVideoX1.5-5B diffusers folder::

    SATB-VR/
      controlnet/config.json + diffusion_pytorch_model.safetensors   the ControlNet branch
      lora_transformer/pytorch_lora_weights.safetensors             LoRA of the main denoiser
      lora_predictor/pytorch_lora_weights.safetensors               LoRA of the predictor
      lora_controlnet/pytorch_lora_weights.safetensors              (optional) LoRA of the ControlNet
      connectors.pt, control_patch_embed.pt                         extra modules of the main transformer
      prompt_embeds.pt, negative_prompt_embeds.pt                   T5 embeddings of the fixed prompts

LoRA files are diffusers LoRA safetensors with un-prefixed peft keys
(``transformer_blocks.0.attn1.to_q.lora_A.weight``); a ``transformer.`` prefix is accepted too.
Every load checks names and shapes and raises :class:`PretrainedError` naming what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from vsr_core.errors import PretrainedError
from vsr_core.pretrained import resolve_pretrained

LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_FOLDERS = {"denoiser": "lora_transformer", "predictor": "lora_predictor", "controlnet": "lora_controlnet"}
EXTRA_MODULES = ("connectors", "control_patch_embed")
PROMPT_FILES = ("prompt_embeds.pt", "negative_prompt_embeds.pt")
_METADATA_KEY = "lora_adapter_metadata"


def load_base_transformer(pretrained: str, dtype: torch.dtype | None = None) -> CogVideoXTransformer3DModel:
    """The pretrained CogVideoX transformer of ``<pretrained>/transformer`` (PretrainedError if absent)."""
    folder = resolve_pretrained(pretrained, "transformer")
    config = json.loads((folder / "config.json").read_text())
    name = config.get("_class_name", "CogVideoXTransformer3DModel")
    if "CogVideoX" not in name or "num_layers" not in config:
        raise PretrainedError(f"{folder} holds a {name}, not a CogVideoX transformer (SATB-VR needs a CogVideoX1.5-5B folder)")
    return CogVideoXTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)


def check_release_folder(folder: str, need_controlnet: bool, need_predictor: bool) -> Path:
    """The release folder, after checking every file the configured model will read exists."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise PretrainedError(f"SATB-VR weights folder {folder} does not exist")
    wanted = ["lora_transformer/" + LORA_FILE]
    if need_controlnet:
        wanted += ["controlnet/config.json", *(f"{name}.pt" for name in EXTRA_MODULES)]
    if need_predictor:
        wanted.append("lora_predictor/" + LORA_FILE)
    for relative in wanted:
        if not (root / relative).is_file():
            raise PretrainedError(f"{folder} is not an SATB-VR weights folder: {relative} is missing")
    if need_controlnet and not any((root / "controlnet").glob("*.safetensors")):
        raise PretrainedError(f"{folder}/controlnet has no weights (diffusion_pytorch_model.safetensors)")
    return root


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """A diffusers LoRA file as un-prefixed peft keys, plus its adapter metadata (rank, alpha) if stored."""
    state = load_file(path)
    with safe_open(path, framework="pt") as handle:
        raw = (handle.metadata() or {}).get(_METADATA_KEY)
    metadata = json.loads(raw) if raw else None
    for prefix in ("transformer.", "controlnet."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state, metadata


def load_lora(model: nn.Module, folder: Path, adapter_name: str = "default") -> None:
    """Attach the LoRA adapter stored in ``folder`` to ``model`` and check every key was used.

    Rank and alpha come from the file's metadata when present, else rank from the shapes and
    ``alpha = rank`` (how diffusers, and the release's inference code, read such files).
    """
    path = folder / LORA_FILE
    if not path.is_file():
        raise PretrainedError(f"{folder} has no {LORA_FILE}")
    state, metadata = read_lora_file(path)
    if not state:
        raise PretrainedError(f"{path} holds no LoRA weights")
    known = {name for name, _ in model.named_modules()}
    absent = sorted({k.split(".lora_")[0] for k in state} - known)
    if absent:
        raise PretrainedError(f"{path} adapts {len(absent)} modules this model lacks, e.g. {absent[0]}")
    kwargs = {"metadata": metadata} if metadata else {}
    model.load_lora_adapter(state, prefix=None, adapter_name=adapter_name, **kwargs)
    loaded = get_peft_model_state_dict(model, adapter_name=adapter_name)
    missing = sorted(set(state) - set(loaded))
    if missing:
        raise PretrainedError(f"{path}: {len(missing)} LoRA tensors were not loaded, e.g. {missing[0]}")
    for key, value in state.items():
        if loaded[key].shape != value.shape:
            raise PretrainedError(f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(loaded[key].shape)}")


def save_lora(model: nn.Module, folder: Path, adapter_name: str = "default") -> None:
    """Write ``model``'s adapter as ``folder/pytorch_lora_weights.safetensors`` (diffusers LoRA format)."""
    model.save_lora_adapter(folder, adapter_name=adapter_name, weight_name=LORA_FILE)


def load_module_file(module: nn.Module, path: Path) -> None:
    """Load a ``torch.save``-d state dict into ``module``, strictly (names and shapes)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise PretrainedError(
            f"{path} does not match the model: {len(missing)} missing and {len(unexpected)} unexpected keys (e.g. {first})"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise PretrainedError(f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}")
    module.load_state_dict(state)


def save_module_file(module: nn.Module, path: Path) -> None:
    """``torch.save`` of ``module``'s state dict on the CPU (the release's ``*.pt`` files)."""
    torch.save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, path)


def save_release(method: Any, folder: str | Path) -> Path:
    """Write ``method``'s trained parts in the authors' release layout (see the module docstring).

    The layout stores LoRA adapters only, so the denoiser and predictor must be LoRA fine-tuned.
    The ControlNet config is written under the release's class name (``CogVideoXControlnet``) so
    the authors' code reads it as well.
    """
    from satb.text import POSITIVE_TEMPLATE

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    if method.denoiser_mode != "lora" or (method.predictor is not None and method.predictor_mode != "lora"):
        raise PretrainedError(
            "the release layout stores LoRA adapters; train with denoiser_finetune=lora and predictor_finetune=lora"
        )
    save_lora(method.denoiser, root / LORA_FOLDERS["denoiser"])
    if method.predictor is not None:
        save_lora(method.predictor.transformer, root / LORA_FOLDERS["predictor"])
    if method.controlnet is not None:
        method.controlnet.save_pretrained(root / "controlnet")
        config_file = root / "controlnet" / "config.json"
        config = json.loads(config_file.read_text())
        config["_class_name"] = "CogVideoXControlnet"
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
        for name in EXTRA_MODULES:
            save_module_file(getattr(method.denoiser, name), root / f"{name}.pt")
    encoder = method.prompt_encoder
    if encoder.mode != "none":
        device, dtype = torch.device("cpu"), torch.float32
        positive = encoder([""], 1, device, dtype, POSITIVE_TEMPLATE if method.prompt_template else "")
        torch.save(positive.detach().clone(), root / PROMPT_FILES[0])
        torch.save(encoder.negative_embeddings(1, device, dtype).detach().clone(), root / PROMPT_FILES[1])
    return root
