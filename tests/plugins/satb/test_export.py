"""SATB-VR `vsr export`: the release layout plus full-weight folders, read back by satb_weights= and load_method."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from satb import SATBVR
from satb.weights import FULL_FOLDERS, LORA_FILE, LORA_FOLDERS
from vsr_core.checkpoint import load_method
from vsr_core.errors import PretrainedError
from vsr_core.export import METHOD_FILE, WEIGHTS_NAME, export_method

from .test_weights import cogvideox_folder  # noqa: F401 (the tiny CogVideoX folder fixture)

TINY = SATBVR.tiny_init_args
RELEASE_FILES = (
    "controlnet/config.json",
    "controlnet/diffusion_pytorch_model.safetensors",
    "connectors.pt",
    "control_patch_embed.pt",
)


def perturb(method: SATBVR, only_trainable: bool = False) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad or not only_trainable:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def lq_clip() -> torch.Tensor:
    return torch.rand(1, 3, 5, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def assert_identical(a: SATBVR, b: SATBVR) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key, value in sa.items():
        assert torch.equal(value, sb[key]), key
    assert {n for n, p in a.named_parameters() if p.requires_grad} == {
        n for n, p in b.named_parameters() if p.requires_grad
    }
    lq = lq_clip()
    assert torch.equal(
        a.eval().restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0)),
        b.eval().restore(lq, num_inference_steps=2, generator=torch.Generator().manual_seed(0)),
    )


def test_tiny_full_fine_tune_exports_full_folders_and_loads_back_bit_identical(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = SATBVR(**TINY)  # the tiny recipe: denoiser and predictor train fully
    assert method.denoiser_options.finetune == "full" and method.predictor_options.finetune == "full"
    perturb(method)
    folder = export_method(method, tmp_path / "export")
    assert files(folder) == {
        METHOD_FILE,
        *RELEASE_FILES,
        "transformer/config.json",
        f"transformer/{WEIGHTS_NAME}",
        "predictor/config.json",
        f"predictor/{WEIGHTS_NAME}",
    }
    record = json.loads((folder / METHOD_FILE).read_text())
    assert record["class_path"] == "satb.SATBVR" and record["layout"] == "method"
    config = json.loads((folder / "transformer/config.json").read_text())
    assert config["_class_name"] == "LQConditionedTransformer" and config["enable_connector"] is True
    assert_identical(method, SATBVR(**TINY, satb_weights=str(folder)))
    loaded = load_method(folder)
    assert loaded.hparams["satb_weights"] == str(folder)
    assert_identical(method, loaded)


def test_lora_on_a_random_base_exports_base_and_adapter(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lora_parts = {
        "denoiser_options": {"output": "lq_residual", "finetune": "lora"},
        "predictor_options": {"parameterization": "residual", "finetune": "lora"},
    }
    method = SATBVR(**{**TINY, **lora_parts}, lora={"rank": 4, "alpha": 4.0})
    perturb(method)  # the random base too: it is not in any pretrained file
    folder = export_method(method, tmp_path / "export")
    for part in ("denoiser", "predictor"):
        assert (folder / FULL_FOLDERS[part] / WEIGHTS_NAME).is_file()
        assert (folder / LORA_FOLDERS[part] / LORA_FILE).is_file()
    assert_identical(method, load_method(folder))


def test_lora_on_a_pretrained_base_is_exactly_the_release_layout(cogvideox_folder: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    method = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    perturb(method, only_trainable=True)
    folder = export_method(method, tmp_path / "export")
    assert files(folder) == {
        METHOD_FILE,
        *RELEASE_FILES,
        f"lora_transformer/{LORA_FILE}",
        f"lora_predictor/{LORA_FILE}",
        "prompt_embeds.pt",
        "negative_prompt_embeds.pt",
    }
    loaded = load_method(folder)
    assert loaded.prompt_encoder.mode == "t5"  # rebuilt from the recorded pretrained= folder
    assert_identical(method, loaded)


def test_bad_export_folders_fail_in_one_line(tmp_path: Path) -> None:
    from reference.model import ReferenceVSR

    reference = export_method(ReferenceVSR(scale=4, channels=4, num_blocks=1), tmp_path / "reference")
    with pytest.raises(PretrainedError, match="reference.ReferenceVSR, not satb.SATBVR"):
        SATBVR(**TINY, satb_weights=str(reference))

    torch.manual_seed(0)
    folder = export_method(SATBVR(**TINY), tmp_path / "export")
    weights = folder / "transformer" / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PretrainedError, match="cannot be read") as err:
        load_method(folder)
    assert "\n" not in str(err.value)
    shutil.rmtree(folder / "transformer")
    with pytest.raises(
        PretrainedError, match=r"lora_transformer/pytorch_lora_weights.safetensors is missing \(or full"
    ):
        SATBVR(**TINY, satb_weights=str(folder))
    # an export of another configuration: the weights that do not fit are named
    torch.manual_seed(0)
    full = export_method(SATBVR(**TINY), tmp_path / "full")
    unconditioned = {**TINY, "denoiser_options": {"lq_condition": False, "output": "x0", "finetune": "full"}}
    with pytest.raises(PretrainedError, match="does not fit LQConditionedTransformer: 0 missing and .* unexpected"):
        SATBVR(**unconditioned, satb_weights=str(full))


@pytest.mark.parametrize(
    "damage",
    [
        "connectors-truncated",
        "connectors-not-tensors",
        "connectors-code",
        "controlnet-truncated",
        "controlnet-bad-bin",
    ],
)
def test_restore_from_a_corrupt_export_folder_is_one_line(tmp_path: Path, capsys, damage: str) -> None:
    """`vsr restore --ckpt EXPORT` with a damaged part: one `error:` line naming the file (issue 9)."""
    import numpy as np
    from PIL import Image

    from vsr_core.commands.restore import main as restore

    torch.manual_seed(0)
    folder = export_method(SATBVR(**TINY), tmp_path / "export")
    connectors = folder / "connectors.pt"
    controlnet = folder / "controlnet" / "diffusion_pytorch_model.safetensors"
    named = connectors
    if damage == "connectors-truncated":
        connectors.write_bytes(connectors.read_bytes()[:200])
    elif damage == "connectors-not-tensors":
        connectors.write_text("not a tensor file\n" * 10)
    elif damage == "connectors-code":
        from conftest import MarkerPayload

        torch.save({"weight": MarkerPayload(tmp_path / "MARKER")}, connectors)
    elif damage == "controlnet-truncated":
        controlnet.write_bytes(controlnet.read_bytes()[:500])
        named = controlnet
    else:  # the safetensors under another name, and a broken .bin where diffusers looks next
        controlnet.rename(controlnet.with_name("renamed.safetensors"))
        named = controlnet.with_name("diffusion_pytorch_model.bin")
        named.write_bytes(b"\x80\x04 broken pickle")
    (tmp_path / "clip").mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "clip" / f"{i:03d}.png")
    code = restore([str(tmp_path / "clip"), "--ckpt", str(folder), "-o", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert str(named.parent) in err
    assert not (tmp_path / "MARKER").exists() and not (tmp_path / "out").exists()


def decoded_frames(folder: Path) -> np.ndarray:
    import av

    (video,) = sorted(folder.rglob("*.mp4"))
    with av.open(str(video)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_release_layout_restores_with_the_release_sampling_by_default(
    cogvideox_folder: Path,  # noqa: F811
    tmp_path: Path,
    caplog,
) -> None:
    """`vsr restore --ckpt` of a tiny model in the release layout samples as the release: its sampler, CFG 6, template."""
    from PIL import Image

    from vsr_core.commands.restore import main as restore

    torch.manual_seed(0)
    method = SATBVR(pretrained=str(cogvideox_folder), lora={"rank": 4, "alpha": 4.0})
    perturb(method, only_trainable=True)
    assert (method.sampling.sampler, method.sampling.guidance_scale, method.sampling.prompt_template) == (
        "cogvideox_dpm",
        6.0,
        True,
    )
    # In Python: the defaults are exactly the release's settings given explicitly.
    lq = lq_clip()
    explicit = {"sampler": "cogvideox_dpm", "guidance_scale": 6.0, "num_inference_steps": 5, "color_fix": "wavelet"}
    default = method.eval().restore(lq, generator=torch.Generator().manual_seed(0))
    assert torch.equal(default, method.restore(lq, generator=torch.Generator().manual_seed(0), **explicit))
    other = method.restore(lq, generator=torch.Generator().manual_seed(0), sampler="dpmsolver++", guidance_scale=1.0)
    assert (default - other).abs().max() > 0.05

    # Through `vsr restore --ckpt FOLDER`: the export is the release layout plus vsr_method.json.
    release = export_method(method, tmp_path / "release")
    (tmp_path / "clip").mkdir()
    frames = (np.random.default_rng(0).random((5, 8, 8, 3)) * 255).astype(np.uint8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / "clip" / f"{i:03d}.png")

    def restored(folder: Path, sampling: dict | None, name: str) -> np.ndarray:
        if sampling is not None:
            copy = tmp_path / f"{name}-weights"
            shutil.copytree(folder, copy)
            record = json.loads((copy / METHOD_FILE).read_text())
            record["init_args"]["sampling"] = sampling
            (copy / METHOD_FILE).write_text(json.dumps(record))
            folder = copy
        out = tmp_path / name
        assert restore([str(tmp_path / "clip"), "--ckpt", str(folder), "-o", str(out), "--device", "cpu"]) == 0
        return decoded_frames(out)

    caplog.set_level("INFO")
    by_default = restored(release, None, "default")
    said = [r.getMessage() for r in caplog.records if "authors' release" in r.getMessage()]
    assert said == [
        "SATB-VR: sampling as the authors' release: sampler=cogvideox_dpm, guidance_scale=6.0, prompt_template=True, color_fix=wavelet"
    ]
    set_explicitly = {
        "sampler": "cogvideox_dpm",
        "guidance_scale": 6.0,
        "prompt_template": True,
        "color_fix": "wavelet",
    }
    assert np.array_equal(by_default, restored(release, set_explicitly, "explicit"))
    paper_solver = restored(
        release, {"sampler": "dpmsolver++", "guidance_scale": 1.0, "prompt_template": False}, "other"
    )
    assert np.abs(by_default.astype(int) - paper_solver.astype(int)).max() > 3
