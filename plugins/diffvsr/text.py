"""DiffVSR's text conditioning: OpenCLIP-H of the SD x4 upscaler through the core's prompt encoders.

The release captions each video (InternLM-XComposer2 in v1; a caption CSV at inference) and appends
``"clear, high quality, high-resolution, 4K"``; guidance (scale 5) uses its negative prompt
(:data:`~diffvsr.options.RELEASE_NEGATIVE_PROMPT`). Without a text encoder (tiny presets) the embeddings are zeros.
"""

from __future__ import annotations

from diffvsr.options import TextOptions
from vsr_core.errors import ConfigError
from vsr_core.text import PromptEncoder

__all__ = ["ZERO_PROMPT_TOKENS", "build_prompt_encoder"]

#: Token count of the zero embeddings without a text encoder (CLIP's 77).
ZERO_PROMPT_TOKENS = 77


def build_prompt_encoder(
    options: TextOptions, pretrained: str | None, width: int, owner: str = "DiffVSR"
) -> PromptEncoder:
    """The prompt encoder of ``options`` (``clip`` / ``empty`` use ``pretrained``'s text encoder and tokenizer)."""
    if options.encoder == "none":
        return PromptEncoder.zeros(width, ZERO_PROMPT_TOKENS, ignore_prompts=options.ignore_prompts, owner=owner)
    if not pretrained:
        raise ConfigError(
            f"text.encoder={options.encoder} reads the text encoder of pretrained=, but no pretrained folder is given "
            "(use text.encoder=none for a model without text)"
        )
    return PromptEncoder.from_pretrained(
        pretrained,
        kind="clip",
        empty=options.encoder == "empty",
        width=width,
        negative_prompt=options.negative_prompt,
        ignore_prompts=options.ignore_prompts,
        cache=options.cache,
        owner=owner,
    )
