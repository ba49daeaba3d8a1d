"""vsr_core.text: encoders equal diffusers' own pipelines, prompt modes, guidance, the embedding cache.

Tiny random T5 / umT5 / CLIP text models with tiny real tokenizers are saved with ``save_pretrained``
(vsr_core/testing/tiny_text.py) and loaded back through the code path real weights take. Expected values
come from diffusers' own prompt-encoding functions (called on the same model and tokenizer) or from
the model's forward on the tokenizer's ids.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.testing.tiny_text import WIDTH, write_text_model
from vsr_core.text import (
    EmbeddingCache,
    EmbeddingCacheWarning,
    PromptEncoder,
    PromptWarning,
    TextEncoder,
    TextEncoderWarning,
    cfg_active,
    cfg_batch,
    cfg_combine,
    cfg_split_combine,
    prompt_for,
    prompt_support,
)

CPU = torch.device("cpu")
PROMPTS = ["a cat video", "", "dog runs on grass high detail"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    return {kind: write_text_model(root / kind, kind) for kind in ("t5", "umt5", "clip")}


def _reference(folder: Path, kind: str):
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel, UMT5EncoderModel

    model_class = {"t5": T5EncoderModel, "umt5": UMT5EncoderModel, "clip": CLIPTextModel}[kind]
    return AutoTokenizer.from_pretrained(folder / "tokenizer"), model_class.from_pretrained(
        folder / "text_encoder"
    ).eval()


# ---------------------------------------------------------------------------------------------- encoders


@torch.no_grad()
def test_t5_equals_cogvideox_pipeline(folders) -> None:
    from diffusers import CogVideoXPipeline

    tokenizer, model = _reference(folders["t5"], "t5")
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=model, _execution_device=CPU)
    expected = CogVideoXPipeline._get_t5_prompt_embeds(
        pipe, PROMPTS, max_sequence_length=226, device=CPU, dtype=torch.float32
    )
    encoder = TextEncoder.from_pretrained(folders["t5"])
    assert encoder.kind == "t5" and not encoder.loaded  # nothing built before the first encode
    actual = encoder.encode(PROMPTS)
    assert actual.shape == (3, 226, WIDTH) and torch.equal(actual, expected)
    # By hand: the unmasked forward on the tokenizer's ids padded to 226 (pads keep their outputs).
    ids = tokenizer(PROMPTS, padding="max_length", max_length=226, truncation=True, return_tensors="pt").input_ids
    torch.testing.assert_close(actual, model(ids).last_hidden_state, rtol=0, atol=0)
    assert actual[1, 5:].abs().sum() > 0


@torch.no_grad()
def test_umt5_equals_wan_pipeline_and_zero_pads(folders) -> None:
    from diffusers import WanPipeline

    prompts = [*PROMPTS, "  a   cat &amp; dog  "]  # Wan cleans whitespace and HTML entities first
    tokenizer, model = _reference(folders["umt5"], "umt5")
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=model, _execution_device=CPU)
    expected = WanPipeline._get_t5_prompt_embeds(
        pipe, prompts, max_sequence_length=512, device=CPU, dtype=torch.float32
    )
    encoder = TextEncoder.from_pretrained(folders["umt5"])
    actual, lengths = encoder.encode_with_lengths(prompts)
    assert actual.shape == (4, 512, WIDTH) and torch.equal(actual, expected)
    # By hand: "a cat video" is 3 words + </s>: rows 0..3 are the masked forward, rows 4.. exactly zero.
    assert lengths.tolist()[:3] == [4, 1, 7]
    tokens = tokenizer(["a cat video"], padding="max_length", max_length=512, return_tensors="pt")
    masked = model(tokens.input_ids, tokens.attention_mask).last_hidden_state
    torch.testing.assert_close(actual[0, :4], masked[0, :4], rtol=0, atol=0)
    assert torch.count_nonzero(actual[0, 4:]) == 0 and torch.count_nonzero(actual[0, 3]) > 0


class _FlatCLIP:
    """diffusers' clip_skip path reads ``text_encoder.text_model``, which transformers 5 flattened away."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.config, self.dtype = model, model.config, model.dtype
        self.text_model = SimpleNamespace(final_layer_norm=model.final_layer_norm)

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)


@pytest.mark.parametrize("clip_skip", [None, 1])
@torch.no_grad()
def test_clip_equals_stable_diffusion_encode_prompt(folders, clip_skip) -> None:
    from diffusers import StableDiffusionPipeline

    tokenizer, model = _reference(folders["clip"], "clip")
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=_FlatCLIP(model), _execution_device=CPU, unet=None)
    expected, _ = StableDiffusionPipeline.encode_prompt(pipe, PROMPTS, CPU, 1, False, clip_skip=clip_skip)
    actual = TextEncoder.from_pretrained(folders["clip"], clip_skip=clip_skip).encode(PROMPTS)
    assert actual.shape == (3, 77, WIDTH) and torch.equal(actual, expected)
    if clip_skip:  # the penultimate layer differs from the last one
        assert not torch.equal(actual, TextEncoder.from_pretrained(folders["clip"]).encode(PROMPTS))


def test_encoder_options_and_identity(folders, tmp_path) -> None:
    encoder = TextEncoder.from_pretrained(folders["t5"], max_length=12, torch_dtype="bfloat16")
    out = encoder.encode(["a cat"])
    assert out.shape == (1, 12, WIDTH) and out.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in encoder.model.parameters())
    assert not encoder.model.training
    # The key follows what changes embeddings, not where the folder lives.
    base = TextEncoder.from_pretrained(folders["t5"]).key
    shutil.copytree(folders["t5"], tmp_path / "copy")
    assert TextEncoder.from_pretrained(tmp_path / "copy").key == base
    assert TextEncoder.from_pretrained(folders["t5"], max_length=12).key != base
    assert encoder.key != TextEncoder.from_pretrained(folders["t5"], max_length=12).key
    write_text_model(tmp_path / "other", "t5", seed=1)  # same config, other weights
    assert TextEncoder.from_pretrained(tmp_path / "other").key != base


def test_truncation_is_said_once(folders) -> None:
    encoder = TextEncoder.from_pretrained(folders["clip"], max_length=4)
    with pytest.warns(TextEncoderWarning, match="cut to 4"):
        encoder.encode(["a cat video dog runs"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["a cat video dog runs"])


def test_bad_folders_fail_with_one_line(folders, tmp_path) -> None:
    with pytest.raises(PretrainedError, match="not a t5 text encoder"):
        TextEncoder.from_pretrained(folders["clip"], kind="t5")
    with pytest.raises(ConfigError, match="clip_skip"):
        TextEncoder.from_pretrained(folders["t5"], clip_skip=1)
    shutil.copytree(folders["t5"] / "text_encoder", tmp_path / "no-tokenizer" / "text_encoder")
    with pytest.raises(PretrainedError, match="'tokenizer/'"):
        TextEncoder.from_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(PretrainedError, match="'text_encoder/'"):
        TextEncoder.from_pretrained(tmp_path)
    (tmp_path / "vae" / "text_encoder").mkdir(parents=True)
    (tmp_path / "vae" / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "vae" / "text_encoder" / "model.safetensors").write_bytes(b"")
    shutil.copytree(folders["t5"] / "tokenizer", tmp_path / "vae" / "tokenizer")
    with pytest.raises(PretrainedError, match="model_type 'bert'"):
        TextEncoder.from_pretrained(tmp_path / "vae")
    with pytest.raises(PretrainedError, match="width 8, the model expects 16"):
        PromptEncoder.from_pretrained(folders["t5"], width=16)


# ---------------------------------------------------------------------------------------------- modes


@torch.no_grad()
def test_encoder_mode_prompts_suffix_negative(folders) -> None:
    reference = TextEncoder.from_pretrained(folders["clip"])
    prompts = PromptEncoder.from_pretrained(folders["clip"], negative_prompt="blurry")
    assert prompts.mode == "clip" and prompts.accepts_prompts
    out = prompts(["a cat", "dog"], 2, CPU, torch.float64, suffix="high detail")
    assert out.dtype == torch.float64
    torch.testing.assert_close(
        out, reference.encode(["a cat high detail", "dog high detail"]).double(), rtol=0, atol=0
    )
    # Repeated prompts are encoded once (batch size changes float rounding, hence the fp32 tolerance).
    torch.testing.assert_close(prompts(None, 2, CPU, torch.float32), reference.encode(["", ""]))
    negative = prompts.negative_embeddings(3, CPU, torch.float32)
    assert negative.shape == (3, 77, WIDTH)
    torch.testing.assert_close(negative[2], reference.encode(["blurry"])[0], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="2 prompts for a batch of 3"):
        prompts(["a", "b"], 3, CPU, torch.float32)


@torch.no_grad()
def test_empty_mode_is_the_real_empty_embedding(folders) -> None:
    empty = PromptEncoder.from_pretrained(folders["umt5"], empty=True)
    assert empty.mode == "empty" and not empty.accepts_prompts
    expected = TextEncoder.from_pretrained(folders["umt5"]).encode([""])
    out = empty(None, 2, CPU, torch.float32)
    assert out.shape == (2, 512, WIDTH) and torch.equal(out[1], expected[0]) and out.abs().sum() > 0
    with pytest.raises(ConfigError, match="no text encoder"):
        empty(["a cat"], 1, CPU, torch.float32)


def test_none_and_precomputed_modes(tmp_path) -> None:
    zeros = PromptEncoder.zeros(width=4, tokens=3, ignore_prompts=True)
    with pytest.warns(PromptWarning, match="ignores prompts"):
        out = zeros(["a cat"], 2, CPU, torch.float32)
    assert out.shape == (2, 3, 4) and torch.count_nonzero(out) == 0
    positive, negative = torch.randn(1, 5, 4), torch.randn(5, 4)
    torch.save(positive, tmp_path / "pos.pt")
    from safetensors.torch import save_file

    save_file({"embeds": negative}, str(tmp_path / "neg.safetensors"))
    fixed = PromptEncoder.from_embeddings(tmp_path / "pos.pt", tmp_path / "neg.safetensors", width=4)
    assert fixed.mode == "precomputed" and not fixed.accepts_prompts
    assert torch.equal(fixed(None, 2, CPU, torch.float32)[1], positive[0])
    assert torch.equal(fixed.negative_embeddings(1, CPU, torch.float32)[0], negative)
    with pytest.raises(ConfigError, match="no text encoder"):
        fixed(["a cat"], 1, CPU, torch.float32)
    with pytest.raises(PretrainedError, match="width 4, the model expects 8"):
        PromptEncoder.from_embeddings(tmp_path / "pos.pt", width=8)


class _Payload:
    """Unpickling this would run code: ``weights_only=True`` must refuse it."""

    def __reduce__(self):
        return (print, ("executed",))


def test_precomputed_files_are_never_executed(tmp_path, capsys) -> None:
    torch.save({"embeds": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(PretrainedError, match="refused: it holds .*never runs code"):
        PromptEncoder.from_embeddings(tmp_path / "evil.pt")
    assert "executed" not in capsys.readouterr().out


def test_prompt_encoder_adds_nothing_to_state_dict(folders) -> None:
    method = nn.Module()
    method.net = nn.Linear(2, 2)
    method.prompt_encoder = PromptEncoder.from_pretrained(folders["t5"], max_length=8)
    method.prompt_encoder(["a cat"], 1, CPU, torch.float32)
    assert method.prompt_encoder.rebuildable and method.prompt_encoder.encoder.loaded
    assert set(method.state_dict()) == {"net.weight", "net.bias"}
    assert [n for n, _ in method.named_parameters()] == ["net.weight", "net.bias"]
    method.prompt_encoder = PromptEncoder.zeros(4, 3)
    assert set(method.state_dict()) == {"net.weight", "net.bias"}  # buffers are non-persistent


# ---------------------------------------------------------------------------------------------- --prompt rule


def test_prompt_rule_for_methods() -> None:
    class Plain(nn.Module):
        pass

    class Declared(nn.Module):
        accepts_prompts = True

    lenient, strict = Plain(), Plain()
    lenient.prompt_encoder = PromptEncoder.zeros(4, 3, ignore_prompts=True)
    strict.prompt_encoder = PromptEncoder.zeros(4, 3)
    assert prompt_support(Plain()) == "refuse" and prompt_support(Declared()) == "encode"
    assert prompt_support(lenient) == "ignore" and prompt_support(strict) == "refuse"
    assert prompt_for(strict, None) is None and prompt_for(strict, "  ") is None
    assert prompt_for(Declared(), "a cat") == "a cat"
    with pytest.warns(PromptWarning, match="--prompt is ignored"):
        assert prompt_for(lenient, "a cat") is None
    with pytest.raises(ConfigError, match="Plain has no text encoder, so --prompt cannot be used") as err:
        prompt_for(strict, "a cat")
    assert "\n" not in str(err.value)


def test_prompt_rule_sees_an_encoder(folders) -> None:
    method = nn.Module()
    method.prompt_encoder = PromptEncoder.from_pretrained(folders["t5"], max_length=8)
    assert prompt_support(method) == "encode" and prompt_for(method, "a cat") == "a cat"
    assert not method.prompt_encoder.encoder.loaded  # the rule never loads the encoder


# ---------------------------------------------------------------------------------------------- guidance


def test_cfg_helpers_by_value() -> None:
    uncond, cond = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]])
    # uncond + s (cond - uncond) with s = 2: [1 + 2*2, -2 + 2*2.5]
    assert torch.equal(cfg_combine(uncond, cond, 2.0), torch.tensor([[5.0, 3.0]]))
    assert torch.equal(cfg_combine(uncond, cond, 1.0), cond)
    assert torch.equal(cfg_combine(uncond, cond, 0.0), uncond)
    negative, positive = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    batch = cfg_batch(negative, positive)
    assert batch.shape == (4, 3, 4) and batch[:2].sum() == 0 and batch[2:].sum() == 24  # [negative; positive]
    out = torch.cat([uncond, cond])
    assert torch.equal(cfg_split_combine(out, 3.0), torch.tensor([[7.0, 5.5]]))
    assert [cfg_active(s) for s in (None, 0.5, 1.0, 1.01, 6)] == [False, False, False, True, True]
    with pytest.raises(ValueError, match="shapes differ"):
        cfg_batch(torch.zeros(1, 3, 4), torch.zeros(1, 2, 4))


# ---------------------------------------------------------------------------------------------- cache


def _never_load(monkeypatch) -> list[str]:
    calls: list[str] = []

    def refuse(self):
        calls.append(self.kind)
        raise AssertionError("the text encoder was loaded on a cache hit")

    monkeypatch.setattr(TextEncoder, "load", refuse)
    return calls


@pytest.mark.parametrize("kind", ["t5", "umt5"])
def test_cache_hit_is_identical_without_the_encoder(folders, tmp_path, monkeypatch, kind) -> None:
    first = PromptEncoder.from_pretrained(folders[kind], cache=tmp_path / "cache", max_length=16)
    computed = first(PROMPTS, 3, CPU, torch.float32)
    negative = first.negative_embeddings(1, CPU, torch.float32)
    assert first.encoder.loaded
    entries = sorted((tmp_path / "cache" / first.encoder.key).rglob("*.safetensors"))
    assert len(entries) == 3  # one file per prompt ("" doubles as the negative prompt)
    calls = _never_load(monkeypatch)
    second = PromptEncoder.from_pretrained(folders[kind], cache=tmp_path / "cache", max_length=16)
    assert torch.equal(second(PROMPTS, 3, CPU, torch.float32), computed)
    assert torch.equal(second.negative_embeddings(1, CPU, torch.float32), negative)
    assert calls == [] and not second.encoder.loaded
    if kind == "umt5":  # only the real rows are stored; the zeros come back on read
        from safetensors.torch import load_file

        rows = sorted(load_file(str(p))["embedding"].shape[0] for p in entries)
        assert rows == [1, 4, 7]


def test_empty_mode_from_cache_only(folders, tmp_path, monkeypatch) -> None:
    expected = PromptEncoder.from_pretrained(folders["clip"], empty=True, cache=tmp_path)(None, 1, CPU, torch.float32)
    _never_load(monkeypatch)
    again = PromptEncoder.from_pretrained(folders["clip"], empty=True, cache=tmp_path)
    assert torch.equal(again(None, 2, CPU, torch.float32)[1], expected[0])


def _corrupt(kind: str, cache: EmbeddingCache, text: str) -> None:
    from safetensors.torch import save_file

    path = cache.path(text)
    good = {"format": "vsr-text-embedding/1", "encoder_key": cache.encoder_key, "prompt_sha256": ""}
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif kind == "wrong_shape":
        from vsr_core.text.cache import prompt_hash

        save_file(
            {"embedding": torch.zeros(cache.length - 1, cache.width)},
            str(path),
            {**good, "prompt_sha256": prompt_hash(text)},
        )
    elif kind == "wrong_key":
        from vsr_core.text.cache import prompt_hash

        metadata = {**good, "encoder_key": "t5-000000000000000000000000", "prompt_sha256": prompt_hash(text)}
        save_file({"embedding": torch.zeros(cache.length, cache.width)}, str(path), metadata)
    elif kind == "other_prompt":
        shutil.copyfile(cache.path("dog runs on grass high detail"), path)


@pytest.mark.parametrize("kind", ["truncated", "wrong_shape", "wrong_key", "other_prompt"])
def test_corrupt_entry_is_recomputed_with_one_warning(folders, tmp_path, kind) -> None:
    prompts = PromptEncoder.from_pretrained(folders["t5"], cache=tmp_path, max_length=16)
    expected = prompts(PROMPTS, 3, CPU, torch.float32)
    _corrupt(kind, prompts.cache, "a cat video")
    fresh = PromptEncoder.from_pretrained(folders["t5"], cache=tmp_path, max_length=16)
    with pytest.warns(EmbeddingCacheWarning) as caught:
        again = fresh(PROMPTS, 3, CPU, torch.float32)
    assert len([w for w in caught if issubclass(w.category, EmbeddingCacheWarning)]) == 1
    assert str(fresh.cache.path("a cat video")) in str(caught[0].message)
    assert torch.equal(again, expected)  # never the wrong embedding
    assert fresh.cache.get("a cat video") is not None  # rewritten: valid again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(fresh(PROMPTS, 3, CPU, torch.float32), expected)


def test_cache_writes_are_atomic_and_checked(tmp_path) -> None:
    cache = EmbeddingCache(tmp_path, "t5-key", length=4, width=2)
    assert cache.get("a cat") is None and "a cat" not in cache
    value = torch.randn(4, 2)
    path = cache.put("a cat", value)
    assert path.parent.parent == tmp_path / "t5-key" and torch.equal(cache.get("a cat"), value)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    with pytest.raises(ValueError, match=r"\[4, 2\]"):
        cache.put("a dog", torch.zeros(3, 2))
    with pytest.warns(EmbeddingCacheWarning, match="dtype"):
        assert EmbeddingCache(tmp_path, "t5-key", 4, 2, dtype=torch.bfloat16).get("a cat") is None
    nan = torch.full((4, 2), float("nan"))
    cache.put("nan", nan)
    with pytest.warns(EmbeddingCacheWarning, match="non-finite"):
        assert cache.get("nan") is None
