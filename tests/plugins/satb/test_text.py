"""SATB-VR's text conditioning choice (satb/text.py) on the core's prompt encoders, and its caption cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from satb.text import NEGATIVE_PROMPT, build_prompt_encoder
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.text import TextEncoder

from .test_weights import write_tokenizer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory) -> Path:
    from transformers import T5Config, T5EncoderModel

    root = tmp_path_factory.mktemp("cogvideox-text")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=16, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)).save_pretrained(
        root / "text_encoder"
    )
    write_tokenizer(root / "tokenizer")
    return root


def test_auto_picks_t5_with_the_release_negative_prompt(t5_folder) -> None:
    prompts = build_prompt_encoder("auto", str(t5_folder), None, width=8, tokens=3, max_length=6, ignore_prompts=False)
    assert prompts.mode == "t5" and prompts.accepts_prompts and prompts.negative_prompt == NEGATIVE_PROMPT
    reference = TextEncoder.from_pretrained(t5_folder, max_length=6)
    torch.testing.assert_close(prompts(["a cat"], 1, CPU, torch.float32), reference.encode(["a cat"]), rtol=0, atol=0)
    negative = prompts.negative_embeddings(1, CPU, torch.float32)
    torch.testing.assert_close(negative, reference.encode([NEGATIVE_PROMPT]), rtol=0, atol=0)
    with pytest.raises(PretrainedError, match="width 8, the model expects 16"):
        build_prompt_encoder("t5", str(t5_folder), None, width=16, tokens=3, max_length=6, ignore_prompts=False)


def test_auto_without_t5_uses_release_files_or_zeros(tmp_path) -> None:
    positive, negative = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    torch.save(positive, tmp_path / "prompt_embeds.pt")
    torch.save(negative, tmp_path / "negative_prompt_embeds.pt")
    fixed = build_prompt_encoder("auto", None, tmp_path, width=4, tokens=3, max_length=6, ignore_prompts=True)
    assert fixed.mode == "precomputed" and torch.equal(fixed(None, 1, CPU, torch.float32), positive)
    assert torch.equal(fixed.negative_embeddings(1, CPU, torch.float32), negative)
    zeros = build_prompt_encoder("auto", None, None, width=4, tokens=3, max_length=6, ignore_prompts=False)
    assert zeros.mode == "none" and torch.count_nonzero(zeros(None, 2, CPU, torch.float32)) == 0
    assert zeros(None, 2, CPU, torch.float32).shape == (2, 3, 4)
    (tmp_path / "negative_prompt_embeds.pt").unlink()
    with pytest.raises(PretrainedError, match="negative_prompt_embeds.pt"):
        build_prompt_encoder("precomputed", None, tmp_path, width=4, tokens=3, max_length=6, ignore_prompts=False)
    with pytest.raises(ConfigError, match="text_encoder must be one of"):
        build_prompt_encoder("clip", None, None, width=4, tokens=3, max_length=6, ignore_prompts=False)


def test_text_cache_serves_captions_without_the_t5(t5_folder, tmp_path, monkeypatch) -> None:
    options = {"width": 8, "tokens": 3, "max_length": 6, "ignore_prompts": False, "cache": str(tmp_path / "cache")}
    first = build_prompt_encoder("t5", str(t5_folder), None, **options)
    expected = first(["a cat", "a video"], 2, CPU, torch.float32)
    negative = first.negative_embeddings(2, CPU, torch.float32)
    monkeypatch.setattr(TextEncoder, "load", lambda self: pytest.fail("T5 loaded on a cache hit"))
    second = build_prompt_encoder("t5", str(t5_folder), None, **options)
    assert torch.equal(second(["a cat", "a video"], 2, CPU, torch.float32), expected)
    assert torch.equal(second.negative_embeddings(2, CPU, torch.float32), negative)
