"""Text conditioning shared by methods: prompt encoders, prompt modes, guidance, an embedding cache.

* :class:`TextEncoder` — frozen T5 (CogVideoX), umT5 (Wan2.1) or CLIP / OpenCLIP-H (SD 2.x, the
  SD x4 upscaler) from a diffusers-format folder's ``text_encoder/`` + ``tokenizer/``, built lazily.
* :class:`PromptEncoder` — the ``nn.Module`` a method holds: modes ``t5`` / ``umt5`` / ``clip``,
  ``empty``, ``precomputed``, ``none``; negative prompts; no ``state_dict`` keys.
* :func:`cfg_batch`, :func:`cfg_combine`, :func:`cfg_split_combine`, :func:`cfg_active` —
  classifier-free guidance.
* :class:`EmbeddingCache` — one safetensors file per prompt, keyed by encoder identity and prompt
  hash (``vsr precompute`` fills it).
* :func:`prompt_support`, :func:`prompt_for` — the rule ``vsr restore --prompt`` follows for a
  method without a text encoder.

See docs/text.md.
"""

from vsr_core.text.cache import EmbeddingCache, EmbeddingCacheWarning, prompt_hash
from vsr_core.text.encoders import (
    DEFAULT_MAX_LENGTH,
    ENCODER_KINDS,
    TextEncoder,
    TextEncoderWarning,
    clean_prompt,
)
from vsr_core.text.guidance import cfg_active, cfg_batch, cfg_combine, cfg_split_combine
from vsr_core.text.prompts import PROMPT_MODES, PromptEncoder, PromptWarning, prompt_for, prompt_support

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "ENCODER_KINDS",
    "PROMPT_MODES",
    "EmbeddingCache",
    "EmbeddingCacheWarning",
    "PromptEncoder",
    "PromptWarning",
    "TextEncoder",
    "TextEncoderWarning",
    "cfg_active",
    "cfg_batch",
    "cfg_combine",
    "cfg_split_combine",
    "clean_prompt",
    "prompt_for",
    "prompt_hash",
    "prompt_support",
]
