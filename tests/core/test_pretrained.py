"""resolve_pretrained: component folders of local diffusers-format models, one-line errors, offline hub ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsr_core.errors import PretrainedError
from vsr_core.pretrained import resolve_pretrained


def _component(root: Path, name: str, weights: str | None = "diffusion_pytorch_model.safetensors") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    if weights:
        (folder / weights).write_bytes(b"x")
    return folder


def test_returns_the_component_folder(tmp_path: Path) -> None:
    vae = _component(tmp_path, "vae")
    assert resolve_pretrained(tmp_path, "vae") == vae
    assert resolve_pretrained(str(tmp_path), "vae/") == vae
    # A component folder passed directly with no component name.
    assert resolve_pretrained(vae, None) == vae
    # Sharded weights count as weights.
    sharded = _component(tmp_path, "transformer", "diffusion_pytorch_model.safetensors.index.json")
    assert resolve_pretrained(tmp_path, "transformer") == sharded


def test_scheduler_folder_needs_only_its_config(tmp_path: Path) -> None:
    folder = tmp_path / "scheduler"
    folder.mkdir()
    (folder / "scheduler_config.json").write_text("{}")
    assert resolve_pretrained(tmp_path, "scheduler") == folder


def test_missing_component_names_the_folder_and_its_contents(tmp_path: Path) -> None:
    _component(tmp_path, "transformer")
    with pytest.raises(PretrainedError) as err:
        resolve_pretrained(tmp_path, "vae")
    message = str(err.value)
    assert message == (
        f"{tmp_path} has no 'vae/' folder (expected a diffusers-format model folder with vae/config.json and weights)"
    )
    with pytest.raises(PretrainedError, match="scheduler/scheduler_config.json"):
        resolve_pretrained(tmp_path, "scheduler")


def test_incomplete_component_names_the_missing_file(tmp_path: Path) -> None:
    _component(tmp_path, "vae", weights=None)
    with pytest.raises(PretrainedError, match=r"vae has no weights \(expected diffusion_pytorch_model.safetensors"):
        resolve_pretrained(tmp_path, "vae")
    (tmp_path / "text_encoder").mkdir()
    with pytest.raises(PretrainedError, match="text_encoder has no config.json"):
        resolve_pretrained(tmp_path, "text_encoder")


def test_bad_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(PretrainedError, match="does not exist"):
        resolve_pretrained(tmp_path / "no" / "such" / "model", "vae")
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(PretrainedError, match="is a file") as err:
        resolve_pretrained(file, "vae")
    assert "\n" not in str(err.value)


def test_hub_id_offline_and_not_cached_fails_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedError, match="HF_HUB_OFFLINE is set"):
        resolve_pretrained("vsr-tests/surely-not-cached-model-4711", "vae")
