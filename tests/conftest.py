"""Shared test set-up: quiet, deterministic, CPU-only, small thread pools (CI has 2 cores)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from malicious import MarkerPayload

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(autouse=True)
def _small_thread_pool():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def install_fake_plugins(
    site: Path, modules: dict[str, str], monkeypatch: pytest.MonkeyPatch, distribution: str = "fakeplugins"
) -> Path:
    """Write ``modules`` (name -> source) into ``site`` as distribution ``distribution``'s ``vsr.plugins`` entry points.

    Two sites installed at once need two distribution names (importlib.metadata lists one per name).
    """
    from vsr_core.plugins import discover_plugins

    dist = site / f"{distribution}-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.2.3\n")
    lines = ["[vsr.plugins]"]
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        lines.append(f"{name} = {name}")
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    discover_plugins.cache_clear()
    return site


def _forget_fake_plugins() -> None:
    from vsr_core.plugins import discover_plugins

    for name in list(sys.modules):
        if name.startswith("fake_"):
            del sys.modules[name]
    discover_plugins.cache_clear()


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install entry points for plugins written on the fly: ``fake_plugins({"name": source})``."""
    yield lambda modules: install_fake_plugins(tmp_path / "site", modules, monkeypatch)
    _forget_fake_plugins()


TINY_PLUGIN = '''
"""An installed plugin whose method is the core's BoringMethod (bicubic + a zero-initialised residual)."""
from torch import nn

from vsr_core.testing import BoringMethod


class TinyVSR(BoringMethod):
    """BoringMethod as an installed plugin's method; its residual net is its one block (for --compile)."""

    fsdp_block_classes = (nn.Sequential,)
'''


@pytest.fixture(scope="module")
def tiny_plugin(tmp_path_factory):
    """The class ``fake_tiny.TinyVSR`` of an installed plugin ``fake_tiny``, for a whole test module.

    Core tests run commands on checkpoints of this method, so they import no in-tree plugin.
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        site = tmp_path_factory.mktemp("tiny_site")
        install_fake_plugins(site, {"fake_tiny": TINY_PLUGIN}, monkeypatch, distribution="faketiny")
        from fake_tiny import TinyVSR

        yield TinyVSR
        _forget_fake_plugins()


@pytest.fixture
def malicious_checkpoint(tmp_path: Path):
    """``(path, marker)``: a ``torch.save`` file shaped like a vsr checkpoint whose unpickling creates ``marker``.

    It names an installed method, so only the refusal to unpickle code (``weights_only=True``)
    stands between loading it and the marker appearing.
    """
    import torch

    marker = tmp_path / "MARKER_CODE_RAN"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {
            "state_dict": {},
            "vsr_method": {"class_path": "reference.ReferenceVSR", "scale": 2},
            "hyper_parameters": {"_class_path": "reference.ReferenceVSR", "scale": 2},
            "payload": MarkerPayload(marker),
        },
        path,
    )
    return path, marker
