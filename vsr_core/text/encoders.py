"""Frozen text encoders of the base models, loaded lazily from diffusers-format folders.

One class, :class:`TextEncoder`, three families that reproduce the diffusers pipeline each base
model ships with (so a plugin's embeddings equal the base model's own):

* ``t5`` — CogVideoX (``CogVideoXPipeline._get_t5_prompt_embeds``): ``T5EncoderModel`` on ids
  padded to ``max_length`` (226), **no** attention mask; the padded positions keep the encoder's
  output. ``[B, 226, 4096]`` at full size.
* ``umt5`` — Wan2.1 (``WanPipeline._get_t5_prompt_embeds``): prompts cleaned (ftfy when installed,
  HTML unescaped, whitespace collapsed), ``UMT5EncoderModel`` with the attention mask, and every
  row beyond the prompt's real token count set to **zero**. ``[B, 512, 4096]`` at full size.
* ``clip`` — Stable Diffusion 1.x/2.x and the SD x4 upscaler (``StableDiffusionPipeline.encode_prompt``):
  ``CLIPTextModel`` on ids padded to 77, the attention mask only when the config sets
  ``use_attention_mask``; the last hidden state, or with ``clip_skip = k`` the hidden state ``k``
  layers before the last passed through ``final_layer_norm``. OpenCLIP-ViT-H as diffusers packages
  it (SD 2.x, the SD x4 upscaler) is a ``CLIPTextModel`` too — hidden size 1024, 16 heads, 23 of
  OpenCLIP's 24 layers (SD 2 conditions on the penultimate layer, so the conversion drops the last)
  — and takes this path unchanged: ``[B, 77, 1024]``. (diffusers encodes the *negative* prompt
  without ``clip_skip``; this class applies the same encoder to every prompt.)

Only configuration files are read at construction: the model is built on the first
:meth:`TextEncoder.encode` call, so a caller whose embeddings all come from an
:class:`~vsr_core.text.cache.EmbeddingCache` never pays for (or needs the memory of) the encoder.
The model is frozen (``requires_grad=False``, eval mode) and is not an ``nn.Module`` attribute of
anything, so it never appears in a ``state_dict`` or a checkpoint.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.pretrained import as_dtype, locate_component, resolve_pretrained

__all__ = ["DEFAULT_MAX_LENGTH", "ENCODER_KINDS", "TextEncoder", "TextEncoderWarning", "clean_prompt"]

#: Encoder families; each is also a :class:`~vsr_core.text.PromptEncoder` mode.
ENCODER_KINDS = ("t5", "umt5", "clip")
#: Token length each family's pipeline pads to (CogVideoX 226, Wan 512, CLIP 77).
DEFAULT_MAX_LENGTH = {"t5": 226, "umt5": 512, "clip": 77}
_MODEL_TYPES = {"t5": "t5", "umt5": "umt5", "clip_text_model": "clip"}
_MODEL_CLASSES = {"t5": "T5EncoderModel", "umt5": "UMT5EncoderModel", "clip": "CLIPTextModel"}
_WIDTH_KEYS = {"t5": "d_model", "umt5": "d_model", "clip": "hidden_size"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".index.json")
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "spiece.model", "vocab.json", "merges.txt")
_SAMPLE_BYTES = 1 << 20  # weight fingerprint: first and last MiB of each file (header + tensor bytes)


class TextEncoderWarning(UserWarning):
    """A prompt was truncated to the encoder's ``max_length`` (said once per encoder)."""


def clean_prompt(text: str) -> str:
    """Wan's ``prompt_clean``: ftfy fix (when installed), HTML unescaped twice, whitespace collapsed."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # diffusers skips ftfy the same way when it is absent
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedError(f"{path} is not readable JSON ({type(err).__name__}); copy the folder again") from None
    if not isinstance(value, dict):
        raise PretrainedError(f"{path} is not a JSON object; copy the folder again")
    return value


def _file_digest(path: Path, sample: bool) -> str:
    """sha256 of a file; with ``sample`` only of its size, first and last MiB (weights are GBs)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        if not sample or size <= 2 * _SAMPLE_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(size - _SAMPLE_BYTES)
            digest.update(handle.read(_SAMPLE_BYTES))
    digest.update(str(size).encode())
    return digest.hexdigest()


def _resolve_tokenizer(pretrained: str, subfolder: str) -> Path:
    folder = locate_component(pretrained, subfolder)
    if folder is None or not folder.is_dir():
        raise PretrainedError(f"{pretrained} has no '{subfolder}/' folder (the tokenizer of its text encoder)")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise PretrainedError(
            f"{folder} holds no tokenizer files (expected tokenizer_config.json with tokenizer.json, spiece.model "
            "or vocab.json + merges.txt); copy the diffusers-format 'tokenizer' folder completely"
        )
    return folder


class TextEncoder:
    """A frozen, lazily loaded text encoder: ``encode(prompts)`` → ``[B, max_length, width]``.

    Args:
        kind: ``t5`` / ``umt5`` / ``clip`` (see the module docstring) or ``auto`` (from the
            ``model_type`` in ``encoder_folder/config.json``).
        encoder_folder: local folder with the model's ``config.json`` and weights.
        tokenizer_folder: local folder with the tokenizer files.
        max_length: tokens per prompt (default: 226 / 512 / 77 by family).
        torch_dtype: dtype of the weights (``bfloat16`` halves the memory at full size).
        clip_skip: CLIP only; ``k`` uses the hidden state ``k`` layers before the last.
        device: where the model runs (default: wherever :meth:`encode` is asked for).
    """

    def __init__(
        self,
        kind: str,
        encoder_folder: str | os.PathLike,
        tokenizer_folder: str | os.PathLike,
        max_length: int | None = None,
        torch_dtype: str | torch.dtype | None = None,
        clip_skip: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.encoder_folder = Path(encoder_folder)
        self.tokenizer_folder = Path(tokenizer_folder)
        resolve_pretrained(self.encoder_folder)  # config.json and weights present, or one clear line
        self.config = _read_json(self.encoder_folder / "config.json")
        found = _MODEL_TYPES.get(str(self.config.get("model_type")))
        if kind == "auto":
            if found is None:
                raise PretrainedError(
                    f"{self.encoder_folder}/config.json has model_type {self.config.get('model_type')!r}; "
                    f"expected one of {', '.join(_MODEL_TYPES)} (a T5, umT5 or CLIP text encoder)"
                )
            kind = found
        if kind not in ENCODER_KINDS:
            raise ConfigError(f"text encoder kind must be auto or one of {', '.join(ENCODER_KINDS)}; got {kind!r}")
        if found != kind:
            raise PretrainedError(
                f"{self.encoder_folder} holds a {self.config.get('model_type')!r} model, not a {kind} text encoder"
            )
        if clip_skip is not None and (kind != "clip" or not 0 <= clip_skip < int(self.config["num_hidden_layers"])):
            raise ConfigError(f"clip_skip={clip_skip} needs a CLIP encoder and 0 <= clip_skip < its layer count")
        self.kind = kind
        self.max_length = int(max_length or DEFAULT_MAX_LENGTH[kind])
        if self.max_length < 1:
            raise ConfigError(f"max_length must be at least 1, got {max_length}")
        self.dtype = as_dtype(torch_dtype)
        self.clip_skip = clip_skip
        self.device = torch.device(device) if device is not None else None
        self.width = int(self.config[_WIDTH_KEYS[kind]])
        self.key = self._identity()
        self.model: torch.nn.Module | None = None
        self.tokenizer: Any = None
        self._warned_truncation = False

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | os.PathLike,
        kind: str = "auto",
        text_encoder_subfolder: str = "text_encoder",
        tokenizer_subfolder: str = "tokenizer",
        **options: Any,
    ) -> TextEncoder:
        """From a diffusers-format model folder (``text_encoder/`` + ``tokenizer/``) or a hub id.

        Local folders are read with local files only; a hub id ``owner/name`` downloads the two
        sub-folders (see :func:`vsr_core.pretrained.resolve_pretrained`). ``options`` go to the
        constructor (``max_length``, ``torch_dtype``, ``clip_skip``, ``device``).
        """
        text = os.fspath(pretrained)
        encoder = resolve_pretrained(text, text_encoder_subfolder)
        return cls(kind, encoder, _resolve_tokenizer(text, tokenizer_subfolder), **options)

    @property
    def zero_padded(self) -> bool:
        """True when rows beyond a prompt's real token count are zeros (umT5 / Wan)."""
        return self.kind == "umt5"

    @property
    def loaded(self) -> bool:
        """Whether the model has been built (only on the first :meth:`encode`)."""
        return self.model is not None

    def _identity(self) -> str:
        """Encoder identity for caches: family, length, dtype, clip_skip, config, tokenizer and weight files."""
        files = {}
        for path in sorted(self.tokenizer_folder.iterdir()):
            if path.is_file():
                files[f"tokenizer/{path.name}"] = _file_digest(path, sample=False)
        for path in sorted(self.encoder_folder.iterdir()):
            if path.is_file() and (path.name == "config.json" or path.name.endswith(_WEIGHT_SUFFIXES)):
                files[f"text_encoder/{path.name}"] = _file_digest(path, sample=path.name != "config.json")
        record = {
            "format": 1,
            "kind": self.kind,
            "max_length": self.max_length,
            "dtype": str(self.dtype or "float32"),
            "clip_skip": self.clip_skip,
            "files": files,
        }
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{digest[:24]}"

    def load(self) -> torch.nn.Module:
        """Build tokenizer and model now (frozen, eval mode); done by :meth:`encode` when needed."""
        if self.model is not None:
            return self.model
        import transformers

        model_class = getattr(transformers, _MODEL_CLASSES[self.kind])
        # transformers 5 renamed torch_dtype to dtype; pass the weights' dtype at load (no fp32 copy first).
        dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        # Always explicit: transformers 5 otherwise loads in the checkpoint's own dtype ("auto").
        options = {dtype_arg: self.dtype or torch.float32}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.tokenizer_folder, local_files_only=True)
            model = model_class.from_pretrained(self.encoder_folder, local_files_only=True, **options)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PretrainedError(
                f"could not load the {self.kind} text encoder from {self.encoder_folder}: {first}"
            ) from None
        self.tokenizer = tokenizer
        self.model = model.requires_grad_(False).eval()
        return self.model

    def unload(self) -> None:
        """Drop the model and tokenizer (e.g. after filling a cache); the next :meth:`encode` rebuilds them."""
        self.model = None
        self.tokenizer = None

    def _tokenize(self, prompts: list[str]) -> Any:
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        if not self._warned_truncation:
            full = self.tokenizer(prompts, add_special_tokens=True, truncation=False).input_ids
            longest = max(len(ids) for ids in full)
            if longest > self.max_length:
                self._warned_truncation = True
                warnings.warn(
                    f"a prompt of {longest} tokens was cut to {self.max_length} (the {self.kind} encoder's max_length)",
                    TextEncoderWarning,
                    stacklevel=4,
                )
        return tokens

    @torch.no_grad()
    def encode_with_lengths(
        self, prompts: list[str], device: str | torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, max_length, width]`` embeddings (the model's dtype) and each prompt's real token count ``[B]``."""
        model = self.load()
        run_on = self.device or torch.device(device or "cpu")
        model.to(run_on)
        if self.kind == "umt5":
            prompts = [clean_prompt(p) for p in prompts]
        tokens = self._tokenize(list(prompts))
        ids, mask = tokens.input_ids.to(run_on), tokens.attention_mask.to(run_on)
        lengths = mask.gt(0).sum(dim=1).long()
        if self.kind == "t5":  # CogVideoX: no mask, padded positions keep the encoder's output
            embeds = model(ids)[0]
        elif self.kind == "umt5":  # Wan: masked, zero beyond each prompt's real length
            embeds = model(ids, mask).last_hidden_state
            beyond = torch.arange(embeds.shape[1], device=run_on)[None, :] >= lengths[:, None]
            embeds = embeds.masked_fill(beyond[..., None], 0.0)
        else:
            use_mask = bool(getattr(model.config, "use_attention_mask", False))
            attention_mask = mask if use_mask else None
            if self.clip_skip is None:
                embeds = model(ids, attention_mask=attention_mask)[0]
            else:
                states = model(ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
                # transformers 5 flattened CLIPTextModel.text_model into the model itself.
                final_norm = getattr(model, "text_model", model).final_layer_norm
                embeds = final_norm(states[-(self.clip_skip + 1)])
        return embeds, lengths

    def encode(self, prompts: list[str], device: str | torch.device | None = None) -> torch.Tensor:
        """``B`` prompts → ``[B, max_length, width]`` on the encoder's device, in the model's dtype."""
        return self.encode_with_lengths(prompts, device)[0]

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"TextEncoder({self.kind}, {self.encoder_folder}, max_length={self.max_length}, {state})"
