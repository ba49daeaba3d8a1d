"""Tiny random text encoders with tiny tokenizers in diffusers-format folders (``text_encoder/`` + ``tokenizer/``).

Written with ``save_pretrained`` and read back by the same code path as real weights; no network.
The tokenizers are the real classes (``T5Tokenizer``: a Unigram model over whole words, ``CLIPTokenizer``:
byte-level BPE whose merges spell out the words), so ids, padding and special tokens are real.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["clip_tokenizer", "t5_tokenizer", "WIDTH", "WORDS", "write_text_model"]

WORDS = ["a", "cat", "video", "dog", "runs", "on", "grass", "high", "detail", "blurry"]
WIDTH = 8


def t5_tokenizer():
    """A real ``T5Tokenizer`` over the ten ``WORDS`` (Unigram, whole words)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)] + [("▁" + w, -1.0) for w in WORDS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def clip_tokenizer():
    """A real ``CLIPTokenizer`` whose byte-level BPE merges spell out the ten ``WORDS``."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    merges: list[tuple[str, str]] = []

    def add(piece: str) -> None:
        vocab.setdefault(piece, len(vocab))

    for char in sorted({c for w in WORDS for c in w}):
        add(char)
        add(char + "</w>")
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            if (current, piece) not in merges:
                merges.append((current, piece))
            current += piece
            add(current)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def write_text_model(root: Path, kind: str, seed: int = 0, width: int = WIDTH, layers: int = 2) -> Path:
    """``root/text_encoder`` + ``root/tokenizer`` for ``kind`` in t5 / umt5 / clip; returns ``root``."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    if kind == "clip":
        tokenizer = clip_tokenizer()
        config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=layers,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = CLIPTextModel(config)
    else:
        tokenizer = t5_tokenizer()
        config_class, model_class = (T5Config, T5EncoderModel) if kind == "t5" else (UMT5Config, UMT5EncoderModel)
        config = config_class(
            vocab_size=len(tokenizer), d_model=width, d_kv=4, d_ff=2 * width, num_layers=layers, num_heads=2
        )
        model = model_class(config)
    model.save_pretrained(root / "text_encoder")
    tokenizer.save_pretrained(root / "tokenizer")
    return root
