"""Perceptual losses: the tiny stand-in by value, the pyiqa path offline, agreement with pyiqa's LPIPS metric.

The pyiqa path is exercised without the real files by writing AlexNet / LPIPS weight files of the
right names and shapes into a temporary torch hub and weights directory (conv kernels constant over
space, so each file is about 1 MB), then loading them through exactly the code that reads real ones.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.losses import PerceptualLoss, TinyPerceptual, perceptual_weight_files


def videos(seed: int = 0, shape=(2, 3, 3, 32, 32)):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.rand(shape, generator=gen) * 2 - 1
    target = (pred + 0.3 * torch.randn(shape, generator=gen)).clamp(-1, 1)
    return pred, target


def frames01(video: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] in [-1, 1] -> [B*T, 3, H, W] in [0, 1], frame order b-major."""
    b, c, t, h, w = video.shape
    return video.detach().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).add(1).div(2)


def tiny_by_hand(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """TinyPerceptual's documented recipe on frames [N, 3, H, W]: seed 0, channels (8, 16, 16), strides (1, 2, 2)."""
    gen = torch.Generator().manual_seed(0)
    weights, c_in = [], 3
    for c_out in (8, 16, 16):
        weights.append(torch.randn(c_out, c_in, 3, 3, generator=gen) * (2.0 / (c_in * 9)) ** 0.5)
        c_in = c_out
    total = torch.zeros(pred.shape[0])
    a, b = pred, target
    for w, stride in zip(weights, (1, 2, 2), strict=True):
        a, b = F.relu(F.conv2d(a, w, stride=stride, padding=1)), F.relu(F.conv2d(b, w, stride=stride, padding=1))
        na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total += ((na - nb) ** 2).sum(1).mean(dim=(1, 2))
    return total


# ----------------------------------------------------------------------------- tiny stand-in (always runs)
def test_tiny_by_value_frames_flattened_into_the_batch():
    pred, target = videos()
    per_frame = PerceptualLoss("tiny", reduction="none")(pred, target)
    assert per_frame.shape == (2, 3)  # [B, T]
    b, c, t, h, w = pred.shape

    def flat(v):
        return v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)

    expected = tiny_by_hand(flat(pred), flat(target)).reshape(b, t)
    torch.testing.assert_close(per_frame, expected)
    torch.testing.assert_close(PerceptualLoss("tiny")(pred, target), expected.mean())
    assert (expected > 0).all()


def test_tiny_is_zero_on_equal_inputs_symmetric_deterministic_and_differentiable():
    pred, target = videos(1)
    loss = PerceptualLoss("tiny")
    assert loss(pred, pred).item() == 0.0
    torch.testing.assert_close(loss(pred, target), loss(target, pred))
    assert PerceptualLoss("tiny")(pred, target).item() == loss(pred, target).item()  # fixed weights
    pred.requires_grad_(True)
    loss(pred, target).backward()
    assert pred.grad.abs().sum() > 0
    frames = pred.detach()[:, :, 0]  # [N, 3, H, W] input works too
    assert loss(frames, frames.flip(-1)).ndim == 0


def test_network_never_in_state_dict_parameters_or_train_mode():
    class Method(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = nn.Conv3d(3, 3, 1)
            self.lpips = PerceptualLoss("tiny")

    method = Method()
    assert set(method.state_dict()) == {"generator.weight", "generator.bias"}
    assert [n for n, _ in method.named_parameters()] == ["generator.weight", "generator.bias"]
    assert list(method.lpips.buffers()) == [] and list(method.lpips.children()) == []
    method.train()
    assert not method.lpips.network.training
    assert isinstance(method.lpips.network, TinyPerceptual)
    assert all(not b.requires_grad for b in method.lpips.network.buffers())


def test_built_with_real_weights_inside_a_meta_device_context():
    pred, target = videos(2)
    with torch.device("meta"):  # how Lightning / FSDP build methods with empty_init
        loss = PerceptualLoss("tiny")
    assert all(b.device.type == "cpu" for b in loss.network.buffers())
    torch.testing.assert_close(loss(pred, target), PerceptualLoss("tiny")(pred, target))


def test_bad_kind_and_shapes():
    with pytest.raises(ConfigError, match="unknown perceptual loss 'vgg'"):
        PerceptualLoss("vgg")
    with pytest.raises(ConfigError, match="reduction"):
        PerceptualLoss("tiny", reduction="sum")
    with pytest.raises(ValueError, match="shapes differ"):
        PerceptualLoss("tiny")(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        PerceptualLoss("tiny")(torch.zeros(1, 4, 2, 8, 8), torch.zeros(1, 4, 2, 8, 8))


# ----------------------------------------------------------------------------- pyiqa path, offline
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub and pyiqa weights dir; returns the weights dir."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "weights"


def write_fake_alex_lpips(weights_dir) -> list:
    """AlexNet and LPIPS-alex files with the real names and shapes (random values, stride-0 storage)."""
    import torchvision

    files = perceptual_weight_files("lpips-alex", weights_dir)
    gen = torch.Generator().manual_seed(0)

    def fake(v: torch.Tensor) -> torch.Tensor:
        if v.ndim == 4:  # conv [O, I, k, k]: one random value per (O, I), constant over the kernel
            o, i, kh, kw = v.shape
            return (torch.randn(o, i, 1, 1, generator=gen) * (2 / (i * kh * kw)) ** 0.5).expand(v.shape)
        return torch.zeros(1).expand(v.shape)  # biases, classifier: not used by LPIPS

    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: fake(v) for k, v in torchvision.models.alexnet().state_dict().items()}, files[0])
    lins = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate([64, 192, 384, 256, 256])
    }
    torch.save(lins, files[1])
    return files


def test_missing_weights_name_every_file_and_directory_in_one_line(hub):
    for kind, names in [
        ("lpips-vgg", ["vgg16-397923af.pth", "LPIPS_v0.1_vgg-a78928a0.pth"]),
        ("lpips-alex", ["alexnet-owt-7be5be79.pth", "LPIPS_v0.1_alex-df73285e.pth"]),
        ("dists", ["vgg16-397923af.pth", "DISTS_weights-f5e65c96.pth"]),
    ]:
        with pytest.raises(PretrainedError) as err:
            PerceptualLoss(kind, weights_dir=hub)
        message = str(err.value)
        assert "\n" not in message and kind in message
        assert f"{names[0]} in {hub.parent / 'torch' / 'hub' / 'checkpoints'}" in message
        assert f"{names[1]} in {hub}" in message


def test_pyiqa_lpips_loads_offline_and_equals_the_metric(hub):
    from vsr_core.metrics import create_iqa_metric

    write_fake_alex_lpips(hub)
    loss = PerceptualLoss("lpips-alex", weights_dir=hub)
    assert loss.state_dict() == {} and list(loss.parameters()) == []
    pred, target = videos(2, (1, 3, 2, 64, 64))
    pred.requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert pred.grad.abs().sum() > 0  # differentiable (pyiqa's as_loss)
    metric = create_iqa_metric("lpips", hub)  # what `vsr evaluate` reports, on [0, 1] frames
    with torch.no_grad():
        expected = metric(frames01(pred), frames01(target)).flatten()
    assert expected.min() > 0
    torch.testing.assert_close(value.detach(), expected.mean(), rtol=1e-5, atol=1e-7)
    per_frame = PerceptualLoss("lpips-alex", weights_dir=hub, reduction="none")(pred.detach(), target)
    torch.testing.assert_close(per_frame.flatten(), expected, rtol=1e-5, atol=1e-7)


class NotATensor:
    pass


def test_weights_files_are_read_tensors_only(hub):
    files = write_fake_alex_lpips(hub)
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1), "extra": NotATensor()}, files[1])
    with pytest.raises(PretrainedError, match=f"{files[1]} cannot be read as a plain weights file"):
        PerceptualLoss("lpips-alex", weights_dir=hub)
    files[1].write_bytes(b"<html>not a checkpoint</html>")  # e.g. an error page saved instead of the file
    with pytest.raises(PretrainedError, match=f"{files[1]} cannot be read as a plain weights file"):
        PerceptualLoss("lpips-alex", weights_dir=hub)
    torch.save({"lin0.model.1.weight": torch.ones(1, 3, 1, 1)}, files[1])  # wrong shape
    with pytest.raises(PretrainedError, match="do not fit"):
        PerceptualLoss("lpips-alex", weights_dir=hub)
    assert torch.load is torch.serialization.load  # the tensors-only guard is removed again


def test_a_file_outside_the_known_list_is_refused_not_downloaded(hub, monkeypatch):
    from vsr_core.losses import perceptual

    files = write_fake_alex_lpips(hub)
    files[1].unlink()
    monkeypatch.setattr(perceptual, "perceptual_weight_files", lambda kind, weights_dir=None: files[:1])
    with pytest.raises(PretrainedError, match=f"LPIPS_v0.1_alex-df73285e.pth in {hub}"):
        PerceptualLoss("lpips-alex", weights_dir=hub)
    assert not files[1].exists()


# ----------------------------------------------------------------------------- the real weights, when present
@pytest.mark.parametrize(("kind", "metric_name"), [("lpips-alex", "lpips"), ("lpips-vgg", "lpips-vgg")])
def test_agrees_with_the_pyiqa_lpips_metric_on_real_weights(kind, metric_name):
    from vsr_core.metrics import create_iqa_metric

    missing = [str(p) for p in perceptual_weight_files(kind) if not p.is_file()]
    if missing:
        pytest.skip(f"real {kind} weights not on disk: {', '.join(missing)}")
    pred, target = videos(3, (1, 3, 2, 64, 64))
    value = PerceptualLoss(kind)(pred, target)
    with torch.no_grad():
        expected = create_iqa_metric(metric_name)(frames01(pred), frames01(target)).flatten().mean()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
