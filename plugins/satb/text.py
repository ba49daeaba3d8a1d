"""SATB-VR's text conditioning: the release's prompt template and negative prompt, and its choice of encoder.

The paper conditions on CogVLM2-Video captions encoded by the base model's T5 (Sec. 3.2). The
release also runs without a text encoder, from two precomputed embeddings (``prompt_embeds.pt``,
``negative_prompt_embeds.pt``), and at inference appends a fixed quality template to the caption
and uses a fixed negative prompt for classifier-free guidance. The tiny preset has no text
encoder: it conditions on a constant all-zero "empty prompt" of ``text_tokens`` tokens.

The machinery (encoders, modes, guidance, the caption cache) is the core's :mod:`vsr_core.text`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from satb.weights import PROMPT_FILES
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.text import PromptEncoder

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


def build_prompt_encoder(
    mode: str,
    pretrained: str | None,
    release: Path | None,
    width: int,
    tokens: int,
    max_length: int,
    ignore_prompts: bool,
    torch_dtype: torch.dtype | None = None,
    cache: str | None = None,
) -> PromptEncoder:
    """SATB-VR's conditioning for ``text_encoder=mode`` (``auto`` / ``t5`` / ``precomputed`` / ``none``).

    ``auto`` picks T5 when ``pretrained`` has ``text_encoder/`` + ``tokenizer/``, else the release's
    precomputed embeddings when ``release`` has them, else zeros ``[1, tokens, width]``.
    ``cache`` is a caption-embedding cache directory (T5 only; see ``vsr precompute``).
    """
    if mode not in ("auto", *TEXT_MODES):
        raise ConfigError(f"text_encoder must be one of auto, {', '.join(TEXT_MODES)}; got {mode!r}")
    has_t5 = bool(pretrained) and all((Path(pretrained) / p).is_dir() for p in ("text_encoder", "tokenizer"))
    if mode == "auto":
        mode = "t5" if has_t5 else "precomputed" if release and (release / PROMPT_FILES[0]).is_file() else "none"
    if mode == "t5":
        if not pretrained:
            raise ConfigError("text_encoder=t5 needs pretrained= a folder with text_encoder/ and tokenizer/")
        return PromptEncoder.from_pretrained(
            pretrained,
            kind="t5",
            width=width,
            max_length=max_length,
            torch_dtype=torch_dtype,
            negative_prompt=NEGATIVE_PROMPT,
            ignore_prompts=ignore_prompts,
            cache=cache,
            owner="SATB-VR",
        )
    if mode == "precomputed":
        if release is None:
            raise ConfigError("text_encoder=precomputed needs satb_weights= the folder with prompt_embeds.pt")
        for name in PROMPT_FILES:
            if not (release / name).is_file():
                raise PretrainedError(f"{release} has no {name} (needed for text_encoder=precomputed)")
        positive, negative = (release / name for name in PROMPT_FILES)
        return PromptEncoder.from_embeddings(positive, negative, width, ignore_prompts, owner="SATB-VR")
    return PromptEncoder.zeros(width, tokens, ignore_prompts, owner="SATB-VR")
