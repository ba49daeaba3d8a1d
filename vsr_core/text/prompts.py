"""``PromptEncoder``: what a method conditions on, in one of six modes.

=============== ===================================================================================
mode            embeddings ``[B, L, D]``
=============== ===================================================================================
``t5``          each prompt through a frozen T5 / umT5 / CLIP :class:`~vsr_core.text.TextEncoder`
``umt5``        (through the :class:`~vsr_core.text.EmbeddingCache` first, when one is given)
``clip``
``empty``       the encoder's real embedding of ``""`` for every sample (DiffVSR, UltraVSR:
                "prompts can be empty"); computed once, from the cache when there
``precomputed`` two fixed embeddings read from files (SATB-VR's release): positive and negative
``none``        zeros ``[1, tokens, width]`` — no text encoder at all (tiny presets)
=============== ===================================================================================

Only the first three modes *accept prompts* (:attr:`PromptEncoder.accepts_prompts`). The other
three refuse a non-empty prompt with one :class:`~vsr_core.errors.ConfigError` line, or, with
``ignore_prompts=True``, drop it with one warning and use their fixed embedding.

A ``PromptEncoder`` never adds keys to a ``state_dict`` (``rebuildable = True``): its fixed
embeddings are non-persistent buffers and the text encoder model is held outside the module tree,
so checkpoints stay free of frozen text weights and the method's constructor rebuilds it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.text.cache import EmbeddingCache
from vsr_core.text.encoders import ENCODER_KINDS, TextEncoder

__all__ = ["PROMPT_MODES", "PromptEncoder", "PromptWarning", "prompt_for", "prompt_support"]

PROMPT_MODES = (*ENCODER_KINDS, "empty", "precomputed", "none")


class PromptWarning(UserWarning):
    """Prompts were dropped because the method has no text encoder (``ignore_prompts``)."""


def _given(prompts: list[str] | str | None) -> bool:
    if isinstance(prompts, str):
        return bool(prompts.strip())
    return bool(prompts) and any(p.strip() for p in prompts)


def _load_embedding(path: str | os.PathLike, width: int | None) -> torch.Tensor:
    """``[1, L, D]`` from a ``.pt`` (``weights_only``) or ``.safetensors`` file holding ``[L, D]`` or ``[N, L, D]``."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"embedding file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            tensor = next(iter(tensors.values())) if len(tensors) == 1 else None
        else:
            from vsr_core.torch_files import read_torch_file

            tensor = read_torch_file(path, what="embedding file")
    except PretrainedError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to replace
        raise PretrainedError(f"{path} is not a readable tensor file ({type(err).__name__}); write it again") from None
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (2, 3) or not tensor.is_floating_point():
        raise PretrainedError(f"{path} must hold one float tensor [L, D] or [N, L, D]")
    tensor = tensor if tensor.ndim == 3 else tensor.unsqueeze(0)
    if width is not None and tensor.shape[-1] != width:
        raise PretrainedError(f"{path} has width {tensor.shape[-1]}, the model expects {width}")
    return tensor[:1].detach().float()


class PromptEncoder(nn.Module):
    """Turns ``B`` prompts into ``[B, L, width]`` embeddings (see the module docstring for the modes).

    Build it with :meth:`from_pretrained` (encoder modes, ``empty``), :meth:`from_embeddings`
    (``precomputed``) or :meth:`zeros` (``none``).

    Args:
        mode: one of :data:`PROMPT_MODES`.
        encoder: the text encoder (encoder modes and ``empty``).
        positive, negative: fixed ``[1, L, D]`` embeddings (``precomputed``; ``none`` takes zeros).
        negative_prompt: the text of the unconditional branch of guidance (diffusers' default ``""``).
        ignore_prompts: without an encoder, drop given prompts (one warning) instead of refusing them.
        cache: an :class:`EmbeddingCache` or a cache directory (encoder modes and ``empty``).
        owner: the method's name in error messages.
    """

    rebuildable = True  # no state_dict keys: rebuilt by the method's constructor

    def __init__(
        self,
        mode: str,
        encoder: TextEncoder | None = None,
        positive: torch.Tensor | None = None,
        negative: torch.Tensor | None = None,
        negative_prompt: str = "",
        ignore_prompts: bool = False,
        cache: EmbeddingCache | str | os.PathLike | None = None,
        owner: str = "this method",
    ) -> None:
        super().__init__()
        if mode not in PROMPT_MODES:
            raise ConfigError(f"prompt mode must be one of {', '.join(PROMPT_MODES)}; got {mode!r}")
        needs_encoder = mode in ENCODER_KINDS or mode == "empty"
        if needs_encoder and encoder is None:
            raise ConfigError(f"prompt mode {mode} needs a text encoder")
        if mode in ENCODER_KINDS and encoder.kind != mode:
            raise ConfigError(f"prompt mode {mode} got a {encoder.kind} text encoder")
        self.mode = mode
        self.owner = owner
        self.ignore_prompts = ignore_prompts
        self.negative_prompt = negative_prompt
        # A TextEncoder is a plain object holding its model: not a submodule, so the frozen weights
        # stay out of state_dict, optimizers and .to(); it moves to the device encode() is asked for.
        self.encoder = encoder if needs_encoder else None
        if needs_encoder and cache is not None and not isinstance(cache, EmbeddingCache):
            cache = EmbeddingCache.for_encoder(cache, encoder)
        self.cache = cache if needs_encoder else None
        self._constants: dict[str, torch.Tensor] = {}  # "" and the negative prompt, encoded once
        self._warned = False
        self._hinted_cache = False
        if not needs_encoder:
            if positive is None:
                raise PretrainedError(f"prompt mode {mode} needs a positive embedding")
            negative = positive if negative is None else negative
            if negative.shape[1:] != positive.shape[1:]:
                raise PretrainedError(
                    f"negative embedding {list(negative.shape)} does not match {list(positive.shape)}"
                )
            self.register_buffer("positive", positive.detach().float()[:1], persistent=False)
            self.register_buffer("negative", negative.detach().float()[:1], persistent=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | os.PathLike,
        kind: str = "auto",
        empty: bool = False,
        width: int | None = None,
        negative_prompt: str = "",
        ignore_prompts: bool = False,
        cache: EmbeddingCache | str | os.PathLike | None = None,
        owner: str = "this method",
        **encoder_options: Any,
    ) -> PromptEncoder:
        """Encoder mode (or ``empty``) from a diffusers-format folder's ``text_encoder/`` + ``tokenizer/``.

        ``width`` checks the encoder's hidden size against what the model expects. ``encoder_options``
        go to :meth:`TextEncoder.from_pretrained` (``max_length``, ``torch_dtype``, ``clip_skip``,
        ``device``, ``text_encoder_subfolder``, ``tokenizer_subfolder``).
        """
        encoder = TextEncoder.from_pretrained(pretrained, kind, **encoder_options)
        if width is not None and encoder.width != width:
            raise PretrainedError(f"{encoder.encoder_folder} has width {encoder.width}, the model expects {width}")
        mode = "empty" if empty else encoder.kind
        return cls(
            mode, encoder, negative_prompt=negative_prompt, ignore_prompts=ignore_prompts, cache=cache, owner=owner
        )

    @classmethod
    def from_embeddings(
        cls,
        positive: str | os.PathLike,
        negative: str | os.PathLike | None = None,
        width: int | None = None,
        ignore_prompts: bool = False,
        owner: str = "this method",
    ) -> PromptEncoder:
        """``precomputed`` mode from embedding files (``.pt`` read with ``weights_only=True``, or ``.safetensors``)."""
        first = _load_embedding(positive, width)
        second = _load_embedding(negative, width) if negative is not None else None
        return cls("precomputed", positive=first, negative=second, ignore_prompts=ignore_prompts, owner=owner)

    @classmethod
    def zeros(cls, width: int, tokens: int, ignore_prompts: bool = False, owner: str = "this method") -> PromptEncoder:
        """``none`` mode: a constant all-zero ``[1, tokens, width]`` "empty prompt"."""
        return cls("none", positive=torch.zeros(1, tokens, width), ignore_prompts=ignore_prompts, owner=owner)

    # ------------------------------------------------------------------ the rule for prompts

    @property
    def accepts_prompts(self) -> bool:
        """True when prompts change the embeddings (the encoder modes ``t5`` / ``umt5`` / ``clip``)."""
        return self.mode in ENCODER_KINDS

    @property
    def width(self) -> int:
        """``D`` of the embeddings."""
        return self.encoder.width if self.encoder is not None else int(self.positive.shape[-1])

    @property
    def length(self) -> int:
        """``L`` of the embeddings."""
        return self.encoder.max_length if self.encoder is not None else int(self.positive.shape[1])

    def _check_prompts(self, prompts: list[str] | None) -> None:
        if self.accepts_prompts or not _given(prompts):
            return
        if not self.ignore_prompts:
            raise ConfigError(
                f"prompts were given but {self.owner} has no text encoder (text conditioning: {self.mode}); "
                "load a model folder with text_encoder/ and tokenizer/, or set ignore_prompts=true"
            )
        if not self._warned:
            self._warned = True
            warnings.warn(f"{self.owner} ignores prompts: no text encoder ({self.mode})", PromptWarning, stacklevel=3)

    # ------------------------------------------------------------------ encoding

    def _encode_texts(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """``[N, L, D]`` for ``texts``: cache hits as stored, misses through the encoder (then cached)."""
        found: dict[str, torch.Tensor] = {}
        if self.cache is not None:
            for text in dict.fromkeys(texts):
                hit = self.cache.get(text)
                if hit is not None:
                    found[text] = hit
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            if self.cache is not None and not self._hinted_cache and not self.cache.folder.is_dir():
                self._hinted_cache = True
                others = self.cache.other_keys()
                if others:
                    warnings.warn(
                        f"text cache {self.cache.directory} has no entries for encoder {self.cache.encoder_key} "
                        f"(it has {', '.join(others[:3])}); encoding prompts (check max_length / torch_dtype)",
                        PromptWarning,
                        stacklevel=4,
                    )
            embeds, lengths = self.encoder.encode_with_lengths(missing, device)
            for text, embedding, real in zip(missing, embeds, lengths.tolist()):
                if self.cache is not None:
                    self.cache.put(text, embedding, real)
                found[text] = embedding
        return torch.stack([found[t].to(device) for t in texts])

    def _constant(self, text: str, device: torch.device) -> torch.Tensor:
        if text not in self._constants:
            self._constants[text] = self._encode_texts([text], device)[:1].cpu()
        return self._constants[text]

    def forward(
        self,
        prompts: list[str] | None,
        batch_size: int,
        device: torch.device | str,
        dtype: torch.dtype,
        suffix: str = "",
    ) -> torch.Tensor:
        """Embeddings ``[batch_size, L, D]`` of ``prompts`` (``None``: empty prompts); ``suffix`` is appended to each."""
        self._check_prompts(prompts)
        device = torch.device(device)
        if self.mode in ("precomputed", "none"):
            return self.positive.to(device=device, dtype=dtype).expand(batch_size, -1, -1)
        if self.mode == "empty":
            return self._constant("", device).to(device=device, dtype=dtype).expand(batch_size, -1, -1)
        prompts = list(prompts) if prompts else [""] * batch_size
        if len(prompts) != batch_size:
            raise ConfigError(f"got {len(prompts)} prompts for a batch of {batch_size} videos")
        if suffix:
            prompts = [f"{p} {suffix}".strip() for p in prompts]
        return self._encode_texts(prompts, device).to(dtype=dtype)

    def negative_embeddings(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """The unconditional embeddings ``[batch_size, L, D]`` of guidance (``negative_prompt`` or the negative file)."""
        device = torch.device(device)
        if self.mode in ("precomputed", "none"):
            return self.negative.to(device=device, dtype=dtype).expand(batch_size, -1, -1)
        return self._constant(self.negative_prompt, device).to(device=device, dtype=dtype).expand(batch_size, -1, -1)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, cache={self.cache.folder if self.cache else None}"


def prompt_support(method: nn.Module) -> str:
    """How ``method`` treats a user's prompt: ``encode``, ``ignore`` (dropped, one warning) or ``refuse``.

    The rule: an explicit ``accepts_prompts`` attribute on the method wins (``True`` → ``encode``,
    ``False`` → ``refuse``). Otherwise the method's :class:`PromptEncoder` modules decide: ``encode``
    if one accepts prompts, ``ignore`` if all have ``ignore_prompts``, else ``refuse``. A method with
    neither takes no prompts (``refuse``).
    """
    explicit = getattr(method, "accepts_prompts", None)
    if explicit is not None:
        return "encode" if explicit else "refuse"
    encoders = [m for m in method.modules() if isinstance(m, PromptEncoder)]
    if any(e.accepts_prompts for e in encoders):
        return "encode"
    if encoders and all(e.ignore_prompts for e in encoders):
        return "ignore"
    return "refuse"


def prompt_for(method: nn.Module, prompt: str | None, name: str | None = None) -> str | None:
    """What ``vsr restore --prompt`` passes on: the prompt, ``None`` (dropped, one warning) or a ConfigError.

    An empty or missing prompt is always fine (``None``: the method's empty-prompt conditioning).
    """
    if prompt is None or not prompt.strip():
        return None
    support = prompt_support(method)
    if support == "encode":
        return prompt
    label = name or type(method).__name__
    if support == "ignore":
        warnings.warn(
            f"{label} has no text encoder; --prompt is ignored (empty-prompt conditioning)",
            PromptWarning,
            stacklevel=2,
        )
        return None
    raise ConfigError(
        f"{label} has no text encoder, so --prompt cannot be used; drop it (or load the method with one)"
    )
