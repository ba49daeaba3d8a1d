"""Text conditioning of the CogVideoX backbones: T5 embeddings, precomputed embeddings, or none.

The paper conditions on CogVLM2-Video captions encoded by the base model's T5 (Sec. 3.2). The
release also runs without a text encoder, from two precomputed embeddings (``prompt_embeds.pt``,
``negative_prompt_embeds.pt``), and at inference appends a fixed quality template to the caption
and uses a fixed negative prompt for classifier-free guidance. The tiny preset has no text
encoder: it conditions on a constant all-zero "empty prompt" of ``text_tokens`` tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.torch_files import read_torch_file

#: The release's positive template, appended to every caption at inference.
POSITIVE_TEMPLATE = (
    "Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - "
    "realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore detailing, "
    "hyper sharpness, perfect without deformations."
)
#: The release's negative prompt for classifier-free guidance.
NEGATIVE_PROMPT = (
    "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, "
    "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
    "jpeg artifacts, deformed, lowres, over-smooth."
)
TEXT_MODES = ("t5", "precomputed", "none")


class PromptEncoder(nn.Module):
    """Turns ``B`` prompts into ``[B, L, text_dim]`` embeddings for the transformers.

    Modes: ``t5`` (tokenizer + frozen ``T5EncoderModel``, ``L = max_length``), ``precomputed``
    (the release's two embedding files; prompts cannot change them) and ``none`` (zeros,
    ``L = text_tokens``). Without an encoder, non-empty prompts raise :class:`ConfigError` unless
    ``ignore_prompts`` is set, in which case they are dropped with one warning.
    """

    def __init__(
        self,
        mode: str,
        text_dim: int,
        text_tokens: int,
        ignore_prompts: bool = False,
        tokenizer: object | None = None,
        text_encoder: nn.Module | None = None,
        positive: torch.Tensor | None = None,
        negative: torch.Tensor | None = None,
        max_length: int = 226,
    ) -> None:
        super().__init__()
        if mode not in TEXT_MODES:
            raise ConfigError(f"text_encoder must be one of auto, {', '.join(TEXT_MODES)}; got {mode!r}")
        self.mode = mode
        self.ignore_prompts = ignore_prompts
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self._warned = False
        if text_encoder is not None:
            text_encoder.requires_grad_(False).eval()
        if mode == "none":
            positive = torch.zeros(1, text_tokens, text_dim)
        if mode in ("none", "precomputed"):
            if positive is None:
                raise PretrainedError("precomputed text conditioning needs prompt_embeds.pt")
            negative = positive if negative is None else negative
            # Not saved in checkpoints: rebuilt from the same files / preset at construction.
            self.register_buffer("positive", positive.detach().float(), persistent=False)
            self.register_buffer("negative", negative.detach().float(), persistent=False)

    def train(self, mode: bool = True) -> PromptEncoder:
        super().train(mode)
        if self.text_encoder is not None:
            self.text_encoder.eval()  # frozen T5: no dropout
        return self

    @classmethod
    def from_folder(
        cls, pretrained: str, text_dim: int, text_tokens: int, ignore_prompts: bool, max_length: int
    ) -> PromptEncoder:
        """T5 mode from ``<pretrained>/tokenizer`` and ``<pretrained>/text_encoder``."""
        from transformers import AutoTokenizer, T5EncoderModel

        root = Path(pretrained)
        for part in ("tokenizer", "text_encoder"):
            if not (root / part).is_dir():
                raise PretrainedError(f"{pretrained} has no '{part}/' folder (needed for text_encoder=t5)")
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        encoder = T5EncoderModel.from_pretrained(root / "text_encoder")
        if encoder.config.d_model != text_dim:
            raise PretrainedError(
                f"{root / 'text_encoder'} has width {encoder.config.d_model}, the transformer expects {text_dim}"
            )
        return cls("t5", text_dim, text_tokens, ignore_prompts, tokenizer, encoder, max_length=max_length)

    @classmethod
    def from_embeddings(cls, folder: str, text_dim: int, ignore_prompts: bool) -> PromptEncoder:
        """Precomputed mode from ``<folder>/prompt_embeds.pt`` and ``negative_prompt_embeds.pt``."""
        root = Path(folder)
        tensors = []
        for name in ("prompt_embeds.pt", "negative_prompt_embeds.pt"):
            if not (root / name).is_file():
                raise PretrainedError(f"{folder} has no {name} (needed for text_encoder=precomputed)")
            tensor = read_torch_file(root / name, what="prompt embeddings file")
            if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (2, 3):
                raise PretrainedError(f"{root / name} is not a [tokens, width] or [1, tokens, width] tensor; export it again")
            tensor = tensor if tensor.ndim == 3 else tensor.unsqueeze(0)
            if tensor.shape[-1] != text_dim:
                raise PretrainedError(f"{root / name} has width {tensor.shape[-1]}, the transformer expects {text_dim}")
            tensors.append(tensor[:1])
        return cls("precomputed", text_dim, tensors[0].shape[1], ignore_prompts, positive=tensors[0], negative=tensors[1])

    def _check_prompts(self, prompts: list[str] | None) -> None:
        if self.mode == "t5" or not prompts or not any(p.strip() for p in prompts):
            return
        if not self.ignore_prompts:
            raise ConfigError(
                f"prompts were given but SATB-VR has no text encoder (text_encoder={self.mode}); "
                "pass a pretrained folder with text_encoder/ and tokenizer/, or set ignore_prompts=true"
            )
        if not self._warned:
            self._warned = True
            rank_zero_warn(f"SATB-VR ignores prompts: no text encoder (text_encoder={self.mode})")

    @torch.no_grad()
    def _t5(self, prompts: list[str], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        encoder = self.text_encoder
        return encoder(ids.to(next(encoder.parameters()).device))[0].to(device=device, dtype=dtype)

    def forward(
        self, prompts: list[str] | None, batch_size: int, device: torch.device, dtype: torch.dtype, suffix: str = ""
    ) -> torch.Tensor:
        """Embeddings ``[batch_size, L, text_dim]`` for ``prompts`` (``None``: empty prompts)."""
        self._check_prompts(prompts)
        if self.mode != "t5":
            return self.positive.to(device=device, dtype=dtype).expand(batch_size, -1, -1)
        prompts = list(prompts) if prompts else [""] * batch_size
        if len(prompts) != batch_size:
            raise ConfigError(f"got {len(prompts)} prompts for a batch of {batch_size} videos")
        if suffix:
            prompts = [f"{p} {suffix}".strip() for p in prompts]
        return self._t5(prompts, device, dtype)

    def negative_embeddings(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The negative-prompt embeddings ``[batch_size, L, text_dim]`` for classifier-free guidance."""
        if self.mode != "t5":
            return self.negative.to(device=device, dtype=dtype).expand(batch_size, -1, -1)
        return self._t5([NEGATIVE_PROMPT] * batch_size, device, dtype)
