"""`vsr precompute`: captions from data folders and caption files into the cache a method then reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vsr_core.commands.precompute import main
from vsr_core.testing.tiny_text import write_text_model
from vsr_core.text import EmbeddingCache, PromptEncoder, TextEncoder

CPU = torch.device("cpu")


def frame_folder(path: Path, frames: int = 2) -> None:
    path.mkdir(parents=True)
    for i in range(frames):
        Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(path / f"{i:03d}.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_text_model(tmp_path_factory.mktemp("umt5"), "umt5")


def test_precompute_fills_the_cache_the_method_reads(model, tmp_path, capsys, monkeypatch) -> None:
    data = tmp_path / "clips"
    frame_folder(data / "one")
    frame_folder(data / "two")
    (data / "one.txt").write_text("a cat video\n")  # sidecar caption
    (data / "captions.jsonl").write_text(json.dumps({"file": "two", "caption": "dog runs on grass"}) + "\n")
    extra = tmp_path / "more.jsonl"
    extra.write_text(json.dumps({"prompt": "high detail"}) + "\n\n" + json.dumps({"text": "a cat video"}) + "\n")
    lines = tmp_path / "lines.txt"
    lines.write_text("a dog\n\n  blurry  \n")
    cache = tmp_path / "cache"
    args = ["--pretrained", str(model), "--cache", str(cache), "--max-length", "16", "--device", "cpu"]
    code = main([*args, "--data", str(data), "--captions", str(extra), "--captions", str(lines), "--batch-size", "2"])
    assert code == 0
    # "", the 2 data captions, "high detail" (the jsonl's "a cat video" is a repeat), "a dog", "blurry"
    assert "6 prompts (6 new, 0 already cached)" in capsys.readouterr().out
    encoder = TextEncoder.from_pretrained(model, max_length=16)
    store = EmbeddingCache.for_encoder(cache, encoder)
    assert len(list(store.folder.rglob("*.safetensors"))) == 6
    texts = ["", "a cat video", "dog runs on grass", "high detail", "a dog", "blurry"]
    assert all(t in store for t in texts)
    expected = {t: encoder.encode([t])[0] for t in texts}
    for text in texts:  # batches of 2 vs 1: fp32 rounding only
        torch.testing.assert_close(store.get(text), expected[text])

    # A second run finds everything cached and does not load the encoder.
    monkeypatch.setattr(TextEncoder, "load", lambda self: pytest.fail("encoder loaded for a full cache"))
    assert main([*args, "--captions", str(lines)]) == 0
    assert "3 prompts (0 new, 3 already cached)" in capsys.readouterr().out
    # A method with the same encoder settings reads exactly the stored embeddings.
    prompts = PromptEncoder.from_pretrained(model, max_length=16, cache=cache)
    out = prompts(["a cat video", "blurry"], 2, CPU, torch.float32)
    assert torch.equal(out[0], store.get("a cat video")) and torch.equal(out[1], store.get("blurry"))
    assert not prompts.encoder.loaded


def test_suffix_and_negative_are_cached(model, tmp_path, capsys) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("a cat\n")
    cache = tmp_path / "cache"
    code = main(
        [
            "--pretrained",
            str(model),
            "--cache",
            str(cache),
            "--captions",
            str(lines),
            "--suffix",
            "high detail",
            "--negative",
            "blurry",
            "--max-length",
            "16",
        ]
    )
    assert code == 0 and "3 prompts" in capsys.readouterr().out
    store = EmbeddingCache.for_encoder(cache, TextEncoder.from_pretrained(model, max_length=16))
    assert "a cat high detail" in store and "blurry" in store and "" in store and "a cat" not in store


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give captions to encode"),
        (["--captions", "missing.txt"], "caption file missing.txt does not exist"),
        (["--captions", "bad.jsonl"], 'bad.jsonl:1: expected {"caption": ...}'),
        (["--captions", "lines.txt", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--captions", "lines.txt", "--kind", "clip"], "not a clip text encoder"),
    ],
)
def test_bad_input_is_one_line(model, tmp_path, capsys, monkeypatch, extra, message) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"file": "x"}\n')
    (tmp_path / "lines.txt").write_text("a cat\n")
    code = main(["--pretrained", str(model), "--cache", str(tmp_path / "cache"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_missing_model_folder(tmp_path, capsys) -> None:
    (tmp_path / "lines.txt").write_text("a cat\n")
    code = main(
        [
            "--pretrained",
            str(tmp_path / "nowhere"),
            "--cache",
            str(tmp_path / "c"),
            "--captions",
            str(tmp_path / "lines.txt"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
