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

``vsr export`` of an :class:`~satb.SATBVR` (its ``export_pretrained`` hook, :func:`save_release`
with ``full=True``) writes a superset of this layout that ``satb_weights=`` reads back::

      transformer/config.json + diffusion_pytorch_model.safetensors  full denoiser weights (base blocks,
                                                                     connectors, control_patch_embed)
      predictor/config.json + diffusion_pytorch_model.safetensors    full predictor transformer
      vsr_method.json                                                the method record (vsr_core.export)

A full folder is written for a part that trained fully (``denoiser_options.finetune`` /
``predictor_options.finetune`` ``full`` or ``none``) or whose base is not a pretrained file (the random
tiny preset); its LoRA (if any) goes to ``lora_*/`` as in the release. When loading, a full folder
is read first and replaces the ``lora_*`` file as the required part.
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
from vsr_core.export import (
    adapter_names,
    check_export_class,
    is_export_folder,
    load_component,
    save_component,
)
from vsr_core.pretrained import resolve_pretrained
from vsr_core.torch_files import read_torch_file

LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_FOLDERS = {"denoiser": "lora_transformer", "predictor": "lora_predictor", "controlnet": "lora_controlnet"}
#: Full-weight folders of a ``vsr export`` (parts that trained fully or have no pretrained base).
FULL_FOLDERS = {"denoiser": "transformer", "predictor": "predictor"}
EXTRA_MODULES = ("connectors", "control_patch_embed")
PROMPT_FILES = ("prompt_embeds.pt", "negative_prompt_embeds.pt")
_METADATA_KEY = "lora_adapter_metadata"


def load_base_transformer(pretrained: str, dtype: torch.dtype | None = None) -> CogVideoXTransformer3DModel:
    """The pretrained CogVideoX transformer of ``<pretrained>/transformer`` (PretrainedError if absent)."""
    folder = resolve_pretrained(pretrained, "transformer")
    config = json.loads((folder / "config.json").read_text())
    name = config.get("_class_name", "CogVideoXTransformer3DModel")
    if "CogVideoX" not in name or "num_layers" not in config:
        raise PretrainedError(
            f"{folder} holds a {name}, not a CogVideoX transformer (SATB-VR needs a CogVideoX1.5-5B folder)"
        )
    return CogVideoXTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)


def has_full_weights(root: Path, part: str) -> bool:
    """Whether ``root`` holds a full-weight folder (``transformer/`` or ``predictor/``) for ``part``."""
    return (root / FULL_FOLDERS[part] / "config.json").is_file()


def check_release_folder(
    folder: str, need_controlnet: bool, need_predictor: bool, method_class: type | None = None
) -> Path:
    """The release (or ``vsr export``) folder, after checking every file the configured model will read exists.

    A full-weight ``transformer/`` or ``predictor/`` folder stands in for the LoRA file of that
    part. With ``method_class``, an export folder must have been written by that class.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise PretrainedError(f"SATB-VR weights folder {folder} does not exist")
    if method_class is not None and is_export_folder(root):
        check_export_class(root, method_class)
    wanted = []
    for part, needed in (("denoiser", True), ("predictor", need_predictor)):
        if needed and not has_full_weights(root, part):
            wanted.append((f"{LORA_FOLDERS[part]}/{LORA_FILE}", f" (or full weights in {FULL_FOLDERS[part]}/)"))
    if need_controlnet:
        wanted += [("controlnet/config.json", ""), *((f"{name}.pt", "") for name in EXTRA_MODULES)]
    for relative, alternative in wanted:
        if not (root / relative).is_file():
            raise PretrainedError(f"{folder} is not an SATB-VR weights folder: {relative} is missing{alternative}")
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
            raise PretrainedError(
                f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(loaded[key].shape)}"
            )


def save_lora(model: nn.Module, folder: Path, adapter_name: str = "default") -> None:
    """Write ``model``'s adapter as ``folder/pytorch_lora_weights.safetensors`` (diffusers LoRA format)."""
    model.save_lora_adapter(folder, adapter_name=adapter_name, weight_name=LORA_FILE)


def load_module_file(module: nn.Module, path: Path) -> None:
    """Load a ``torch.save``-d state dict into ``module``, strictly (names and shapes).

    The file is read with ``weights_only=True``; a missing, truncated or foreign file is one-line
    :class:`PretrainedError`.
    """
    state = read_torch_file(path, what="weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(
            f"{path} is not a state dict of tensors (it holds a {type(state).__name__}); export it again"
        )
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise PretrainedError(
            f"{path} does not match the model: {len(missing)} missing and {len(unexpected)} unexpected keys (e.g. {first})"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise PretrainedError(
                f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    module.load_state_dict(state)


def load_controlnet_folder(controlnet_class: type, folder: Path) -> tuple[nn.Module, dict[str, list[str]]]:
    """``controlnet_class.from_pretrained(folder)`` with its loading info; unreadable weights are one line."""
    try:
        return controlnet_class.from_pretrained(folder, output_loading_info=True)
    except PretrainedError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError, KeyError) as err:  # a truncated or foreign weights file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PretrainedError(f"{folder} cannot be read ({type(err).__name__}: {first}); export it again") from None


def save_module_file(module: nn.Module, path: Path) -> None:
    """``torch.save`` of ``module``'s state dict on the CPU (the release's ``*.pt`` files)."""
    torch.save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, path)


def _parts(method: Any) -> list[tuple[str, nn.Module, str]]:
    parts = [("denoiser", method.denoiser, method.denoiser_options.finetune)]
    if method.predictor is not None:
        parts.append(("predictor", method.predictor.transformer, method.predictor_options.finetune))
    return parts


def load_release_parts(method: Any, release: Path) -> set[str]:
    """Load a checked release (or export) folder into a constructed ``SATBVR``; returns the parts read from full folders.

    Per part: the full-weight folder if present (names and shapes checked), then its LoRA file
    (required when there is no full folder). Then the extra modules and the ControlNet's LoRA.
    """
    full = set()
    for part, module, _ in _parts(method):
        if has_full_weights(release, part):
            load_component(module, release / FULL_FOLDERS[part])
            full.add(part)
        if part not in full or (release / LORA_FOLDERS[part]).is_dir():
            load_lora(module, release / LORA_FOLDERS[part])
    if method.controlnet is not None:
        # from_pretrained leaves the ControlNet's tensors at the file buffer's offsets, which are not
        # 64-byte aligned: CPU kernels then round differently. Fresh copies restore bit-identically.
        for parameter in method.controlnet.parameters():
            parameter.data = parameter.data.clone()
        for name in EXTRA_MODULES:
            load_module_file(getattr(method.denoiser, name), release / f"{name}.pt")
        if (release / LORA_FOLDERS["controlnet"]).is_dir():
            load_lora(method.controlnet, release / LORA_FOLDERS["controlnet"])
    return full


def save_release(method: Any, folder: str | Path, full: bool = False) -> Path:
    """Write ``method``'s trained parts in the authors' release layout (see the module docstring).

    The authors' layout stores LoRA adapters only, so without ``full`` the denoiser and predictor
    must be LoRA fine-tuned. ``full=True`` (what ``vsr export`` writes) adds ``transformer/`` /
    ``predictor/`` with the full weights of a part that trained fully, has no pretrained base, or
    was itself read from a full folder. The ControlNet config is written under the release's class
    name (``CogVideoXControlnet``) so the authors' code reads it as well.
    """
    from satb.text import POSITIVE_TEMPLATE

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    if not full and any(mode != "lora" for _, _, mode in _parts(method)):
        raise PretrainedError(
            "the release layout stores LoRA adapters; train with denoiser_options.finetune=lora and "
            "predictor_options.finetune=lora"
        )
    pretrained_base = bool(method.hparams.get("pretrained"))
    read_full = getattr(method, "_release_full_parts", set())
    for part, module, mode in _parts(method):
        if full and (mode != "lora" or not pretrained_base or part in read_full):
            save_component(module, root / FULL_FOLDERS[part])
        if adapter_names(module):
            save_lora(module, root / LORA_FOLDERS[part])
        elif not full:
            raise PretrainedError(
                f"the {part} has no LoRA adapter to write in the release layout; export with full=True"
            )
    if method.controlnet is not None:
        save_component(method.controlnet, root / "controlnet")
        config_file = root / "controlnet" / "config.json"
        config = json.loads(config_file.read_text())
        config["_class_name"] = "CogVideoXControlnet"
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
        if adapter_names(method.controlnet):
            save_lora(method.controlnet, root / LORA_FOLDERS["controlnet"])
        for name in EXTRA_MODULES:
            save_module_file(getattr(method.denoiser, name), root / f"{name}.pt")
    encoder = method.prompt_encoder
    if encoder.mode != "none":
        device, dtype = torch.device("cpu"), torch.float32
        positive = encoder([""], 1, device, dtype, POSITIVE_TEMPLATE if method.sampling.prompt_template else "")
        torch.save(positive.detach().clone(), root / PROMPT_FILES[0])
        torch.save(encoder.negative_embeddings(1, device, dtype).detach().clone(), root / PROMPT_FILES[1])
    return root
