"""Resolve ``pretrained=`` arguments: a local diffusers-format folder or (online only) a hub id.

A diffusers model folder holds one sub-folder per component (``vae/``, ``transformer/``,
``scheduler/``, ...). Each model component has a ``config.json`` next to its weights; a scheduler
has a ``scheduler_config.json``. :func:`resolve_pretrained` returns the folder of one component
after checking that it is complete, so loaders can call ``Model.from_pretrained(folder)`` and a
missing piece fails with one line that names it instead of a long diffusers traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vsr_core.errors import ConfigError, PretrainedError

__all__ = ["as_dtype", "hub_offline", "locate_component", "resolve_pretrained"]

#: Weight files diffusers / transformers write (single file, sharded index, or legacy pickle).
_WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.pt")


def as_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``"bf16"`` / ``torch.bfloat16`` -> ``torch.bfloat16``; ``None`` stays ``None``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(dtype.lower(), dtype.lower()).removeprefix("torch.")
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"unknown torch_dtype {dtype!r} (use float32, bfloat16 or float16)")
    return value


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` set to a true value)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_hub_id(text: str) -> bool:
    # "owner/name" with exactly one slash and no path-like start: anything else is meant as a path.
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def _expected(component: str) -> str:
    # Scheduler folders (scheduler/, low_res_scheduler/, ...) hold a config only, models config + weights.
    if "scheduler" in component:
        return f"{component}/scheduler_config.json"
    return f"{component}/config.json and weights"


def _check_component(folder: Path, component: str, shown: str) -> Path:
    where = f"{shown}/{component}" if component else shown
    if not folder.is_dir():
        raise PretrainedError(
            f"{shown} has no '{component}/' folder (expected a diffusers-format model folder with {_expected(component)})"
        )
    if (folder / "scheduler_config.json").is_file():
        return folder
    if not (folder / "config.json").is_file():
        wanted = "scheduler_config.json" if "scheduler" in component else "config.json"
        raise PretrainedError(
            f"{where} has no {wanted} (copy the diffusers-format '{component or 'model'}' folder completely)"
        )
    if not any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        raise PretrainedError(
            f"{where} has no weights (expected diffusion_pytorch_model.safetensors or model.safetensors next to config.json)"
        )
    return folder


def resolve_pretrained(path_or_id: str | os.PathLike, component: str | None = None) -> Path:
    """Return the local folder of ``component`` inside a diffusers-format model, checked for completeness.

    ``path_or_id`` is a local folder (the model root, holding ``<component>/``) or a hub id
    ``owner/name``. With ``component=None`` or ``""`` the folder itself must be the component (it
    holds ``config.json`` and weights, or ``scheduler_config.json``). Hub ids are downloaded (only
    the component's files) unless ``HF_HUB_OFFLINE`` is set, in which case only the local hub cache
    is consulted. Raises :class:`PretrainedError` naming the missing folder or file.
    """
    component = (component or "").strip("/")
    text = os.fspath(path_or_id)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise PretrainedError(
                f"pretrained path {text} is a file; pass the diffusers-format model folder that holds '{component or 'config.json'}'"
            )
        return _check_component(local / component if component else local, component, text)
    if not _looks_like_hub_id(text):
        raise PretrainedError(
            f"pretrained folder {text} does not exist (pass a local diffusers-format model folder or a hub id 'owner/name')"
        )
    return _check_component(_download(text, component), component, text)


def locate_component(path_or_id: str | os.PathLike, component: str) -> Path | None:
    """The folder ``<path>/<component>`` of a local model, or of a hub id (downloaded unless offline).

    Unlike :func:`resolve_pretrained` nothing is checked inside the folder (tokenizer folders hold
    no weights); returns ``None`` when a local path has no such folder or the path is neither a
    folder nor a hub id.
    """
    text = os.fspath(path_or_id)
    local = Path(text).expanduser()
    if local.exists():
        folder = local / component
        return folder if folder.is_dir() else None
    if _looks_like_hub_id(text):
        return _download(text, component)
    return None


def _download(repo_id: str, component: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [f"{component}/*"] if component else None
    offline = hub_offline()
    try:
        root = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline)
    except LocalEntryNotFoundError:
        if offline:
            raise PretrainedError(
                f"{repo_id} is not a local folder and not in the hub cache while HF_HUB_OFFLINE is set "
                "(download it once online, or pass a local diffusers-format folder)"
            ) from None
        raise PretrainedError(
            f"could not download {repo_id} from the hub (check the network or pass a local folder)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PretrainedError(f"could not fetch {repo_id} from the hub: {first}") from None
    return Path(root) / component if component else Path(root)
