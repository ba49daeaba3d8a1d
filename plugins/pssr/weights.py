"""The authors' released checkpoints (DiffSynth-Studio key names) and the same layout for ``vsr export``.

A release folder (``checkpoints/pretrained_models/`` of HiDream-ai/PS-SR) holds:

* ``base.safetensors`` — what ``train_base.py`` trains, with DiffSynth's ``WanModel`` names: the peft
  LoRA of every block (``blocks.{i}.{self_attn,cross_attn}.{q,k,v,o}.lora_{A,B}.default.weight``,
  ``blocks.{i}.ffn.{0,2}.lora_{A,B}.default.weight``; rank 32, ``lora_alpha = rank``), the widened
  ``patch_embedding.{weight,bias}`` (32 input channels) and the head ``head.head.{weight,bias}``;
* ``draft.safetensors`` — the whole pruned draft DiT (``train_draft.py``): ``patch_embedding.*``,
  ``text_embedding.{0,2}.*``, ``time_embedding.{0,2}.*``, ``time_projection.1.*``, the kept blocks
  renumbered ``blocks.{0..n-1}.*``, ``head.{head.*,modulation}`` and ``fc_layers.{j}.{weight,bias}``.

DiffSynth's names map to diffusers' ``WanTransformer3DModel`` as diffusers' own converter
(``convert_wan_transformer_to_diffusers``) does (tested against it), plus ``fc_layers`` -> ``fusion``.
:func:`load_release` reads such a folder into a :class:`~pssr.model.PSSR` (no missing or unexpected
keys allowed) and :func:`save_release` writes one, which is also PS-SR's ``vsr export`` layout.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsr_core.errors import PretrainedError

__all__ = [
    "BASE_FILE",
    "DRAFT_FILE",
    "diffsynth_to_diffusers",
    "diffusers_to_diffsynth",
    "load_release",
    "release_draft_blocks",
    "save_release",
]

BASE_FILE = "base.safetensors"
DRAFT_FILE = "draft.safetensors"

#: (DiffSynth / original Wan path, diffusers path), applied on whole dotted segments, in this order.
_RENAMES = (
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
    ("self_attn", "attn1"),
    ("cross_attn", "attn2"),
    ("o", "to_out.0"),
    ("q", "to_q"),
    ("k", "to_k"),
    ("v", "to_v"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("norm3", "norm2"),  # Wan's affine cross-attention norm; its norm1/norm2 have no weights
    ("modulation", "scale_shift_table"),
    ("fc_layers", "fusion"),  # PS-SR's draft feature fusion
)
_LORA = re.compile(r"\.(lora_[AB])\.default\.")


def _replace(key: str, pairs: tuple[tuple[str, str], ...]) -> str:
    dotted = f".{key}."
    for old, new in pairs:
        dotted = dotted.replace(f".{old}.", f".{new}.")
    return dotted[1:-1]


def diffsynth_to_diffusers(key: str, adapter: str | None = None) -> str:
    """A DiffSynth ``WanModel`` key in diffusers' names; peft LoRA keys get ``adapter`` as their adapter name."""
    key = _LORA.sub(rf".\1.{adapter}." if adapter else r".\1.", key)
    return _replace(key, _RENAMES)


def diffusers_to_diffsynth(key: str, adapter: str | None = None) -> str:
    """The inverse of :func:`diffsynth_to_diffusers` (LoRA of ``adapter`` written as DiffSynth's ``default``)."""
    if adapter:
        key = key.replace(f".lora_A.{adapter}.", ".lora_A.default.").replace(f".lora_B.{adapter}.", ".lora_B.default.")
    if key == "scale_shift_table":
        return "head.modulation"
    inverse = tuple((new, old) for old, new in reversed(_RENAMES) if old not in ("head.modulation",))
    return _replace(key, inverse)


def _read(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise PretrainedError(f"{file} does not exist (a PS-SR weights folder holds {BASE_FILE} and {DRAFT_FILE})")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PretrainedError(f"{file} cannot be read as safetensors ({first}); download or export it again") from None


def release_draft_blocks(state: dict[str, Any]) -> int:
    """Number of DiT blocks in a draft state dict (DiffSynth names)."""
    return len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})


def _check_keys(file: Path, found: set[str], expected: set[str]) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise PretrainedError(f"{file} does not fit this PS-SR configuration: keys {', '.join(parts)}")


def _check_shapes(
    file: Path, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], names: dict[str, str]
) -> None:
    for theirs, ours in names.items():
        if tuple(state[theirs].shape) != tuple(own[ours].shape):
            raise PretrainedError(
                f"{file}: {theirs} has shape {tuple(state[theirs].shape)}, this model expects {tuple(own[ours].shape)} "
                "(another model size or LoRA rank?)"
            )


def _base_names(method: Any) -> dict[str, str]:
    """``{DiffSynth key in base.safetensors: key in method.state_dict()}``."""
    adapter = method.base_adapter
    names = {
        diffusers_to_diffsynth(k, adapter): f"transformer.{k}"
        for k in method.transformer.state_dict()
        if f".lora_A.{adapter}." in k or f".lora_B.{adapter}." in k
    }
    names.update({f"patch_embedding.{p}": f"base_io.patch_embedding.{p}" for p in ("weight", "bias")})
    names.update({f"head.head.{p}": f"base_io.proj_out.{p}" for p in ("weight", "bias")})
    return names


def _draft_names(method: Any) -> dict[str, str]:
    """``{DiffSynth key in draft.safetensors: key in method.state_dict()}``."""
    names = {diffusers_to_diffsynth(k): f"draft.transformer.{k}" for k in method.draft.transformer.state_dict()}
    names.update(
        {diffusers_to_diffsynth(f"fusion.{k}"): f"draft.fusion.{k}" for k in method.draft.fusion.state_dict()}
    )
    return names


def load_release(method: Any, folder: str | Path) -> None:
    """Load ``base.safetensors`` and ``draft.safetensors`` of ``folder`` into ``method`` (a ``PSSR``).

    Raises:
        PretrainedError: a file is missing or unreadable, the draft's block count differs from the
            configuration, or any key is missing, unexpected or of another shape (one line).
    """
    folder = Path(folder)
    base_file, draft_file = folder / BASE_FILE, folder / DRAFT_FILE
    base, draft = _read(base_file), _read(draft_file)
    blocks = release_draft_blocks(draft)
    if blocks != len(method.draft.kept):
        raise PretrainedError(
            f"{draft_file} has a draft of {blocks} blocks, this configuration keeps {len(method.draft.kept)} "
            f"(draft.pruned / draft.out_of); set them to the checkpoint's"
        )
    own = method.state_dict()
    loads = {}
    for file, state, names in ((base_file, base, _base_names(method)), (draft_file, draft, _draft_names(method))):
        _check_keys(file, set(state), set(names))
        _check_shapes(file, state, own, names)
        loads.update({ours: state[theirs] for theirs, ours in names.items()})
    with torch.no_grad():  # at construction, before any sharding: plain tensors
        for key, value in loads.items():
            own[key].copy_(value.to(own[key].dtype))


def save_release(method: Any, folder: str | Path) -> None:
    """Write ``method``'s base and draft into ``folder`` in the release layout (``vsr export``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    own = method.state_dict()
    for file, names in ((BASE_FILE, _base_names(method)), (DRAFT_FILE, _draft_names(method))):
        state = {theirs: own[ours].detach().to("cpu").contiguous() for theirs, ours in names.items()}
        save_file(state, str(folder / file))
