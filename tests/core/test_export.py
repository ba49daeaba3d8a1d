"""`vsr_core.export`: export folders load back (load_method, pretrained=) with identical weights; bad folders fail in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vsr_core.checkpoint import load_method
from vsr_core.errors import CheckpointError, PretrainedError
from vsr_core.export import (
    METHOD_FILE,
    WEIGHTS_NAME,
    export_method,
    load_component,
    load_exported,
    load_exported_weights,
)
from vsr_core.testing import BoringMethod

SIZES = {"scale": 2, "width": 4}
CLASS_PATH = "vsr_core.testing.boring.BoringMethod"


def randomized(seed: int = 0, **sizes) -> BoringMethod:
    torch.manual_seed(seed)
    method = BoringMethod(**{**SIZES, **sizes})
    with torch.no_grad():
        for p in method.parameters():
            p.normal_()  # non-zero everywhere, so a weight that is not carried over shows
    return method


def lq_clip() -> torch.Tensor:
    return torch.rand(1, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key, value in sa.items():
        assert torch.equal(value, sb[key]), key


@pytest.fixture
def exported(tmp_path) -> tuple[Path, BoringMethod]:
    method = randomized()
    return export_method(method, tmp_path / "export"), method


def test_record_names_class_args_and_components(exported):
    folder, _ = exported
    record = json.loads((folder / METHOD_FILE).read_text())
    assert record["class_path"] == CLASS_PATH
    assert record["weights"] == "raw" and record["layout"] == "components"
    assert record["init_args"]["width"] == 4 and record["init_args"]["pretrained"] is None
    assert record["components"] == {"net": {"kind": "module", "lora": {}}}
    assert set(load_file(str(folder / "net" / WEIGHTS_NAME))) == set(randomized().net.state_dict())


def test_load_method_and_pretrained_give_identical_weights_and_output(exported):
    folder, method = exported
    expected = method.eval().restore(lq_clip())
    for loaded in (
        load_method(folder),
        load_exported(folder),
        BoringMethod(**SIZES, pretrained=str(folder)).eval(),
    ):
        assert_same_weights(method, loaded)
        assert not loaded.training
        assert torch.equal(loaded.restore(lq_clip()), expected)


def test_load_exported_weights_into_a_constructed_method(exported):
    folder, method = exported
    fresh = BoringMethod(**SIZES)
    assert not torch.equal(fresh.net[0].weight, method.net[0].weight)
    record = load_exported_weights(fresh, folder)
    assert record["class_path"] == CLASS_PATH
    assert_same_weights(method, fresh)


def test_lora_adapter_is_exported_in_diffusers_format_and_reloaded(tmp_path):
    from vsr_core.lora import LORA_WEIGHT_NAME, add_lora

    torch.manual_seed(1)
    method = BoringMethod(**SIZES)
    add_lora(method.net, rank=2, target_modules=["0", "2"], init_lora_weights=False)  # both convolutions
    export_method(method, tmp_path / "lora")
    assert (tmp_path / "lora" / "net_lora" / LORA_WEIGHT_NAME).is_file()
    base = set(load_file(str(tmp_path / "lora" / "net" / WEIGHTS_NAME)))
    assert not any("lora" in k for k in base) and {"0.weight", "2.weight"} <= base
    record = json.loads((tmp_path / "lora" / METHOD_FILE).read_text())
    assert record["components"]["net"]["lora"] == {"default": "net_lora"}
    for loaded in (load_exported(tmp_path / "lora"), load_method(tmp_path / "lora")):
        assert "default" in loaded.net.peft_config
        assert_same_weights(method, loaded)
        assert torch.equal(method.eval().restore(lq_clip()), loaded.restore(lq_clip()))


def test_fine_tuned_from_an_export_checkpoint_loads_without_the_folder(exported, tmp_path):
    from vsr_core.testing import tiny_trainer

    folder, source = exported
    method = BoringMethod(**SIZES, pretrained=str(folder))
    assert torch.equal(method.net[2].weight, source.net[2].weight)
    with torch.no_grad():
        method.net[2].weight.add_(1.0)  # "fine-tuned"
    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(method)
    trainer.save_checkpoint(tmp_path / "tuned.ckpt")
    shutil.rmtree(folder)
    loaded = load_method(tmp_path / "tuned.ckpt")  # the checkpoint carries the weights
    assert loaded.hparams["pretrained"] == str(folder)
    assert_same_weights(method, loaded)
    # constructing afresh needs the folder: one line
    with pytest.raises(PretrainedError, match="does not exist"):
        BoringMethod(**SIZES, pretrained=str(folder))


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_folder_that_is_not_an_export_fails_in_one_line(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError) as err:
        load_method(tmp_path / "plain")
    assert "not a `vsr export` folder" in one_line(err) and METHOD_FILE in one_line(err)
    with pytest.raises(PretrainedError) as err:
        BoringMethod(**SIZES, pretrained=str(tmp_path / "plain"))
    assert METHOD_FILE in one_line(err)
    (tmp_path / "plain" / METHOD_FILE).write_text("{not json")
    with pytest.raises(CheckpointError) as err:
        load_method(tmp_path / "plain")
    assert "cannot be read" in one_line(err)


def test_an_export_of_an_uninstalled_plugin_names_it(exported):
    folder, _ = exported
    record = json.loads((folder / METHOD_FILE).read_text())
    record["class_path"] = "gonevsr.model.GoneVSR"
    (folder / METHOD_FILE).write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as err:
        load_method(folder)
    assert "gonevsr" in one_line(err) and "export" in one_line(err)


def test_an_export_of_another_class_names_both(exported):
    folder, _ = exported
    record = json.loads((folder / METHOD_FILE).read_text())
    record["class_path"] = "satb.model.SATBVR"
    (folder / METHOD_FILE).write_text(json.dumps(record))
    with pytest.raises(PretrainedError) as err:
        BoringMethod(**SIZES, pretrained=str(folder))
    assert "satb.model.SATBVR" in one_line(err) and CLASS_PATH in one_line(err)


def test_missing_truncated_or_mismatched_weights_fail_in_one_line(exported):
    folder, _ = exported
    weights = folder / "net" / WEIGHTS_NAME
    data = weights.read_bytes()
    # other sizes than the export's: the first mismatched shape is named
    with pytest.raises(PretrainedError) as err:
        BoringMethod(**{**SIZES, "width": 8}, pretrained=str(folder))
    assert "0.weight has shape (4, 3, 3, 3)" in one_line(err)
    assert "exported with width=4; this method has width=8" in one_line(err)  # the argument that differs
    # a weight file cut short
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(PretrainedError) as err:
        load_method(folder)
    assert "cannot be read" in one_line(err) and str(weights) in one_line(err)
    # no weight file
    weights.unlink()
    with pytest.raises(PretrainedError) as err:
        load_method(folder)
    assert "does not exist" in one_line(err)
    # init arguments this version of the class does not have
    record = json.loads((folder / METHOD_FILE).read_text())
    record["init_args"]["gone_option"] = 1
    (folder / METHOD_FILE).write_text(json.dumps(record))
    with pytest.raises(PretrainedError) as err:
        load_method(folder)
    assert "gone_option" in one_line(err)


def test_load_component_reads_sharded_diffusers_folders_and_leaves_module_unchanged_on_mismatch(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    tiny = {"block_out_channels": (8,), "norm_num_groups": 4, "latent_channels": 2, "layers_per_block": 1}
    source = AutoencoderKL(**tiny)
    source.save_pretrained(tmp_path / "vae", max_shard_size="20KB")
    assert (tmp_path / "vae" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert not (tmp_path / "vae" / WEIGHTS_NAME).is_file()
    torch.manual_seed(1)
    target = AutoencoderKL(**tiny)
    load_component(target, tmp_path / "vae")
    assert_same_weights(source, target)
    other = AutoencoderKL(**{**tiny, "latent_channels": 4})
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(PretrainedError, match="has shape"):
        load_component(other, tmp_path / "vae")
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


CODEC_PLUGIN = """
from typing import Any

from vsr_core.latent import LatentCodec
from vsr_core.testing import BoringMethod


class CodecVSR(BoringMethod):
    \"\"\"Boring method that keeps the codec it is given.\"\"\"

    def __init__(self, codec: LatentCodec | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codec = codec
"""


def test_module_valued_init_args_are_exported_and_rebuilt(tmp_path, fake_plugins):
    fake_plugins({"fake_codec_export": CODEC_PLUGIN})
    from fake_codec_export import CodecVSR

    from vsr_core.errors import ConfigError
    from vsr_core.latent import PixelUnshuffleCodec

    torch.manual_seed(0)
    method = CodecVSR(codec=PixelUnshuffleCodec(factor=2, scaling=0.5), scale=2, width=3)
    # built in Python, the codec object keeps no record of its arguments: refused, not silently dropped
    with pytest.raises(ConfigError, match="init argument 'codec'"):
        export_method(method, tmp_path / "no_record")
    # what `vsr fit` records for it (LightningCLI keeps the class_path/init_args the config gave)
    record = {"class_path": "vsr_core.latent.PixelUnshuffleCodec", "init_args": {"factor": 2, "scaling": 0.5}}
    method.hparams["codec"] = record
    with torch.no_grad():
        method.net[2].weight.normal_()
    folder = export_method(method, tmp_path / "export")
    assert json.loads((folder / METHOD_FILE).read_text())["init_args"]["codec"] == record
    loaded = load_method(folder)
    assert isinstance(loaded.codec, PixelUnshuffleCodec) and (loaded.codec.spatial_factor, loaded.codec.scaling) == (
        2,
        0.5,
    )
    assert loaded.hparams["codec"] == record
    assert torch.equal(loaded.restore(lq_clip()), method.eval().restore(lq_clip()))
    # a record naming code outside vsr_core and the installed plugins is refused, nothing imported
    exported = json.loads((folder / METHOD_FILE).read_text())
    exported["init_args"]["codec"] = {"class_path": "http.server.HTTPServer", "init_args": {}}
    (folder / METHOD_FILE).write_text(json.dumps(exported))
    with pytest.raises(PretrainedError, match="init argument 'codec' names 'http.server.HTTPServer'"):
        load_method(folder)
