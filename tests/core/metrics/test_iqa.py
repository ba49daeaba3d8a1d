"""pyiqa metrics never reach the network unless asked: every fetch path is intercepted, files are read tensors-only.

The weight files are fakes with the real names and shapes (stride-0 storage, so each is small);
what is checked is where the libraries look, what they are allowed to do, and what is reported.
"""

from __future__ import annotations

import socket
import sys

import pytest
import torch
from malicious import MarkerPayload

from vsr_core.errors import PretrainedError
from vsr_core.metrics import MetricSuite, create_iqa_metric
from vsr_core.metrics import iqa as iqa_module
from vsr_core.metrics.iqa import MissingWeights, weights_access

ALEXNET = "alexnet-owt-7be5be79.pth"
LPIPS_ALEX = "LPIPS_v0.1_alex-df73285e.pth"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub (``tmp/torch/hub``) and weights dir (``tmp/weights``); network use is recorded and refused."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    attempts: list[object] = []

    def no_dns(*args, **kwargs):
        attempts.append(args)
        raise OSError("test: no network")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket, "create_connection", no_dns)
    return tmp_path / "torch" / "hub", tmp_path / "weights", attempts


def fake_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same keys and shapes, small on disk: one random value per leading index, expanded."""
    gen = torch.Generator().manual_seed(0)
    return {
        k: (torch.randn(v.shape[:1] + (1,) * (v.ndim - 1), generator=gen) * 0.05).expand(v.shape) if v.ndim else v
        for k, v in state.items()
    }


def write_alexnet(path) -> None:
    import torchvision

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fake_state(torchvision.models.alexnet().state_dict()), path)


def write_lpips_lins(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(1)
    torch.save(
        {
            f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen)
            for i, c in enumerate([64, 192, 384, 256, 256])
        },
        path,
    )


def test_missing_weights_name_every_file_and_nothing_is_fetched_or_printed(hub, capfd):
    hub_dir, weights, attempts = hub
    suite = MetricSuite(["psnr", "lpips", "dists", "musiq", "clipiqa", "maniqa"], weights_dir=weights)
    assert suite.metrics == ["psnr"]
    assert suite.report.skipped == {
        "lpips": f"weights not found: {hub_dir}/checkpoints/{ALEXNET}, {weights}/{LPIPS_ALEX}",
        "dists": f"weights not found: {hub_dir}/checkpoints/vgg16-397923af.pth, {weights}/DISTS_weights-f5e65c96.pth",
        "musiq": f"weights not found: {weights}/musiq_koniq_ckpt-e95806b9.pth",
        "clipiqa": f"weights not found: {hub_dir}/clip/RN50.pt",
        "maniqa": f"weights not found: {weights}/ckpt_koniq10k.pt",
    }
    out, err = capfd.readouterr()
    assert "Downloading" not in out + err and attempts == []
    assert not weights.exists() or not any(weights.iterdir())  # no partial downloads either


@pytest.mark.parametrize(
    ("metric", "first_file"),
    [
        ("lpips", "checkpoints/" + ALEXNET),
        ("dists", "checkpoints/vgg16-397923af.pth"),
        ("musiq", "musiq_koniq_ckpt-e95806b9.pth"),
    ],
)
def test_the_libraries_own_fetches_are_intercepted_before_they_print(hub, capfd, monkeypatch, metric, first_file):
    """With the file table bypassed, pyiqa/torchvision try to fetch: each attempt becomes MissingWeights for its path."""
    hub_dir, weights, attempts = hub
    monkeypatch.setattr(iqa_module, "required_files", lambda name, weights_dir=None: [])
    with pytest.raises(MissingWeights) as missing:
        create_iqa_metric(metric, weights)
    root = hub_dir if first_file.startswith("checkpoints/") else weights
    assert missing.value.path == str(root / first_file)
    out, err = capfd.readouterr()
    assert "Downloading" not in out + err and attempts == []


def test_a_hugging_face_backbone_is_looked_up_offline_only(hub, monkeypatch):
    _, weights, attempts = hub
    monkeypatch.setattr(iqa_module, "required_files", lambda name, weights_dir=None: [])
    with pytest.raises(MissingWeights, match="vit_base_patch8_224.*Hugging Face cache"):
        create_iqa_metric("maniqa", weights)
    assert attempts == []


def test_any_connection_inside_is_refused():
    with weights_access("unused"), pytest.raises(MissingWeights, match="example.org.*network access refused"):
        socket.socket().connect(("example.org", 443))
    assert socket.socket.__name__ == "socket" and socket.socket.__module__ == "socket"


def test_lpips_builds_offline_from_local_files_and_matches_its_definition(hub):
    hub_dir, weights, attempts = hub
    write_alexnet(hub_dir / "checkpoints" / ALEXNET)
    write_lpips_lins(weights / LPIPS_ALEX)
    metric = create_iqa_metric("lpips", weights)
    gen = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 64, 64, generator=gen), torch.rand(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        same, different = metric(a, a).flatten(), metric(a, b).flatten()
    assert torch.all(same.abs() < 1e-6) and torch.all(different > 0) and attempts == []
    # The network inside holds exactly the files' values (the linear heads are checked).
    lins = torch.load(weights / LPIPS_ALEX, weights_only=True)
    state = metric.net.state_dict()
    for key, value in lins.items():
        torch.testing.assert_close(state[f"net.{key}"] if f"net.{key}" in state else state[key], value)


def test_allow_download_lets_the_libraries_fetch(hub, monkeypatch):
    """--allow-download: torchvision's and pyiqa's own download functions run, with the real URLs and targets."""
    from pyiqa.utils import download_util

    hub_dir, weights, _ = hub
    fetched: list[tuple[str, str]] = []

    def fake_download(url, dst, *args, **kwargs):
        fetched.append((url, str(dst)))
        from pathlib import Path

        (write_alexnet if Path(dst).name == ALEXNET else write_lpips_lins)(Path(dst))

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setattr(download_util, "download_url_to_file", fake_download)
    metric = create_iqa_metric("lpips", weights, allow_download=True)
    assert [dst for _, dst in fetched] == [str(hub_dir / "checkpoints" / ALEXNET), str(weights / LPIPS_ALEX)]
    assert fetched[0][0].endswith(ALEXNET) and fetched[1][0].endswith(LPIPS_ALEX)
    assert metric is not None


def test_weight_files_are_read_tensors_only(hub, tmp_path):
    _, weights, _ = hub
    marker = tmp_path / "MARKER_CODE_RAN"
    weights.mkdir(parents=True)
    torch.save(
        {"conv_root.weight": torch.zeros(1), "payload": MarkerPayload(marker)},
        weights / "musiq_koniq_ckpt-e95806b9.pth",
    )
    with pytest.raises(PretrainedError, match="musiq_koniq_ckpt-e95806b9.pth cannot be read as a plain weights file"):
        create_iqa_metric("musiq", weights)
    assert not marker.exists()


def test_every_replacement_is_undone_also_in_modules_imported_inside(hub):
    from pyiqa.archs import arch_util
    from pyiqa.utils import download_util

    originals = (
        torch.hub.load_state_dict_from_url,
        torch.hub.download_url_to_file,
        download_util.load_file_from_url,
        arch_util.load_pretrained_network,
        socket.socket,
    )
    sys.modules.pop("pyiqa.archs.nrqm_arch", None)  # a module that binds load_file_from_url when imported
    with weights_access(hub[1]):
        import pyiqa.archs.nrqm_arch as nrqm

        assert nrqm.load_file_from_url is not originals[2]
    assert nrqm.load_file_from_url is originals[2]
    assert (
        torch.hub.load_state_dict_from_url,
        torch.hub.download_url_to_file,
        download_util.load_file_from_url,
        arch_util.load_pretrained_network,
        socket.socket,
    ) == originals
