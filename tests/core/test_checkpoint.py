"""`load_method` on real `vsr fit` checkpoints, and on files that try to make vsr run or import code."""

from __future__ import annotations

import functools
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vsr_core.checkpoint import load_method, read_checkpoint
from vsr_core.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def fit(tmp_path: Path, monkeypatch, *args: str) -> Path:
    """Run `vsr fit` in process for one step; returns its last.ckpt."""
    from vsr_core.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            *args,
            "--trainer.max_steps",
            "1",
            "--trainer.val_check_interval",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.clip_frames",
            "5",
            "--data.init_args.crop_size",
            "32",
            "--samples.save_files",
            "false",
            "--trainer.callbacks+=vsr_core.callbacks.EMA",
        ]
    )
    assert code == 0
    return next(tmp_path.rglob("last.ckpt"))


@pytest.mark.parametrize(
    "args",
    [
        ("--model", "vsr_core.testing.BoringMethod", "--model.width", "4"),
        (
            "--config",
            str(REPO / "plugins/satb/configs/tiny.yaml"),
            "--model.optimizer",
            "torch.optim.AdamW",
            "--model.optimizer.lr",
            "0.0002",
            "--model.lr_scheduler",
            "torch.optim.lr_scheduler.LinearLR",
        ),
    ],
    ids=["boring", "satb-tiny"],
)
def test_real_fit_checkpoints_load_with_weights_only(tmp_path, monkeypatch, args):
    """What `vsr fit` writes (EMA, optimizer and scheduler records included) loads with weights_only=True."""
    path = fit(tmp_path, monkeypatch, *args)
    checkpoint = read_checkpoint(path)  # torch.load(..., weights_only=True)
    assert checkpoint["ema_state_dict"] and checkpoint["optimizer_states"] and checkpoint["callbacks"]
    method = load_method(path)
    assert not method.training
    state = method.state_dict()
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(state[key], value), key
    if "--model.optimizer" in args:  # the optimizer record is rebuilt as the factory the method takes
        factory = method.optimizer_factory
        assert isinstance(factory, functools.partial) and factory.func is torch.optim.AdamW
        optimizer = factory([torch.nn.Parameter(torch.zeros(1))])
        assert optimizer.defaults["lr"] == 0.0002
        assert method.hparams["optimizer"]["class_path"] == "torch.optim.AdamW"  # kept as recorded


def test_a_malicious_checkpoint_never_runs(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(CheckpointError) as err:
        load_method(path)
    assert not marker.exists()
    assert "refused" in one_line(err) and str(path) in one_line(err)


@pytest.fixture
def trap_module(tmp_path, monkeypatch) -> Path:
    """An importable module ``vsr_trap`` that creates a marker file when imported."""
    marker = tmp_path / "MARKER_IMPORTED"
    site = tmp_path / "trap_site"
    site.mkdir()
    (site / "vsr_trap.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            Path({str(marker)!r}).touch()
            from vsr_core.testing import BoringMethod

            class TrapVSR(BoringMethod):
                '''Importing this module is the attack.'''

            def factory(*args, **kwargs):
                Path({str(marker)!r}).touch()
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    yield marker
    sys.modules.pop("vsr_trap", None)


FAKE_PLUGIN_MODEL = '''
"""A plugin package whose method lives in a submodule and is re-exported (like satb.SATBVR)."""
from vsr_core.testing import BoringMethod


class FakeBoringVSR(BoringMethod):
    """BoringMethod as an installed plugin's method."""
'''


@pytest.fixture
def reference_checkpoint(tmp_path, fake_plugins) -> dict:
    """A checkpoint of an installed plugin's method, ``fake_boring.FakeBoringVSR`` (a package)."""
    from vsr_core.testing import tiny_trainer

    site = fake_plugins({"fake_boring": ""})
    (site / "fake_boring.py").unlink()
    (site / "fake_boring").mkdir()
    (site / "fake_boring" / "model.py").write_text(FAKE_PLUGIN_MODEL)
    (site / "fake_boring" / "__init__.py").write_text(
        "from fake_boring.model import FakeBoringVSR\n__all__ = ['FakeBoringVSR']\n"
    )
    from fake_boring import FakeBoringVSR

    method = FakeBoringVSR(scale=2, width=4)
    trainer = tiny_trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(method)
    trainer.save_checkpoint(tmp_path / "ref.ckpt")
    yield read_checkpoint(tmp_path / "ref.ckpt")
    for name in [n for n in sys.modules if n.startswith("fake_boring")]:
        del sys.modules[name]


def _save(checkpoint: dict, path: Path) -> Path:
    torch.save(checkpoint, path)
    return path


def test_classes_are_resolved_only_among_installed_plugins(tmp_path, trap_module, reference_checkpoint):
    checkpoint = dict(reference_checkpoint)
    checkpoint["vsr_method"] = {"class_path": "vsr_trap.TrapVSR", "scale": 2}
    with pytest.raises(CheckpointError) as err:
        load_method(_save(checkpoint, tmp_path / "trap.ckpt"))
    assert "vsr_trap" in one_line(err) and "not installed" in one_line(err)
    assert not trap_module.exists() and "vsr_trap" not in sys.modules


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optimizer", {"class_path": "vsr_trap.factory", "init_args": {}}),  # a record naming foreign code
        ("optimizer", "vsr_trap.factory"),  # a string where jsonargparse would import a callable
        ("optimizer", {"class_path": "builtins.eval", "init_args": {}}),
        ("pretrained", {"class_path": "subprocess.Popen", "init_args": {"args": ["true"]}}),
    ],
    ids=["record", "string", "builtin", "popen"],
)
def test_init_args_naming_foreign_code_are_refused(tmp_path, trap_module, reference_checkpoint, key, value):
    checkpoint = dict(reference_checkpoint)
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], key: value}
    with pytest.raises(CheckpointError) as err:
        load_method(_save(checkpoint, tmp_path / "args.ckpt"))
    assert f"init argument '{key}'" in one_line(err)
    assert not trap_module.exists() and "vsr_trap" not in sys.modules


def test_the_recorded_instantiator_is_never_imported(tmp_path, trap_module, reference_checkpoint):
    checkpoint = dict(reference_checkpoint)
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], "_instantiator": "vsr_trap.factory"}
    method = load_method(_save(checkpoint, tmp_path / "inst.ckpt"))
    assert method.hparams["width"] == 4
    assert not trap_module.exists() and "vsr_trap" not in sys.modules


CODEC_PLUGIN = '''
"""A method with a module-valued init argument."""
from typing import Any

from vsr_core.latent import LatentCodec
from vsr_core.testing import BoringMethod


class CodecVSR(BoringMethod):
    """Boring method that keeps a codec it is given."""

    def __init__(self, codec: LatentCodec | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codec = codec
'''


def test_module_records_of_core_classes_are_rebuilt(tmp_path, fake_plugins):
    fake_plugins({"fake_codecvsr": CODEC_PLUGIN})
    from fake_codecvsr import CodecVSR

    from vsr_core.latent import PixelUnshuffleCodec

    torch.manual_seed(0)
    method = CodecVSR(codec=PixelUnshuffleCodec(factor=2), scale=2, width=3)
    record = {"class_path": "vsr_core.latent.PixelUnshuffleCodec", "init_args": {"factor": 2, "scaling": 0.5}}
    checkpoint = {
        "state_dict": method.state_dict(),
        "vsr_method": {"class_path": "fake_codecvsr.CodecVSR", "scale": 2},
        "hyper_parameters": {"codec": record, "scale": 2, "width": 3},
    }
    loaded = load_method(_save(checkpoint, tmp_path / "codec.ckpt"))
    assert isinstance(loaded.codec, PixelUnshuffleCodec)
    assert (loaded.codec.spatial_factor, loaded.codec.scaling) == (2, 0.5)
    assert loaded.hparams["codec"] == record  # recorded as read: saving or exporting it writes the same
    for key, value in method.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_long_and_short_class_paths_both_load(tmp_path, reference_checkpoint):
    for name in ("fake_boring.model.FakeBoringVSR", "fake_boring.FakeBoringVSR"):
        checkpoint = dict(reference_checkpoint)
        checkpoint["vsr_method"] = {"class_path": name, "scale": 2}
        assert type(load_method(_save(checkpoint, tmp_path / "c.ckpt"))).__name__ == "FakeBoringVSR"


def test_a_state_dict_that_does_not_fit_is_one_line(tmp_path, reference_checkpoint):
    checkpoint = dict(reference_checkpoint)
    checkpoint["hyper_parameters"] = {**checkpoint["hyper_parameters"], "width": 8}
    with pytest.raises(CheckpointError) as err:
        load_method(_save(checkpoint, tmp_path / "misfit.ckpt"))
    assert (
        "do not fit FakeBoringVSR: net.0.weight has shape (4, 3, 3, 3) in them, (8, 3, 3, 3) in the method"
        in one_line(err)
    )
    checkpoint = {"vsr_method": {"class_path": "fake_boring.FakeBoringVSR"}}
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        load_method(_save(checkpoint, tmp_path / "nostate.ckpt"))
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor, not a checkpoint"):
        load_method(tmp_path / "tensor.pt")
