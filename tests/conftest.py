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


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install entry points for plugins written on the fly: ``fake_plugins({"name": source})``."""
    from vsr_core.plugins import discover_plugins

    def install(modules: dict[str, str]) -> Path:
        site = tmp_path / "site"
        dist = site / "fakeplugins-1.2.3.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugins\nVersion: 1.2.3\n")
        lines = ["[vsr.plugins]"]
        for name, source in modules.items():
            (site / f"{name}.py").write_text(textwrap.dedent(source))
            lines.append(f"{name} = {name}")
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        discover_plugins.cache_clear()
        return site

    yield install
    for name in list(sys.modules):
        if name.startswith("fake_"):
            del sys.modules[name]
    discover_plugins.cache_clear()


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
