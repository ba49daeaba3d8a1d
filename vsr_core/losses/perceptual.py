"""Perceptual losses on videos: LPIPS (VGG / AlexNet) and DISTS through pyiqa, and a tiny stand-in for tests.

``PerceptualLoss(kind)(pred, target)`` takes videos ``[B, 3, T, H, W]`` (or frames ``[N, 3, H, W]``) in
``[-1, 1]``, flattens the frames into the batch, and returns the mean per-frame distance (differentiable
w.r.t. ``pred`` and ``target``). Kinds:

* ``lpips-vgg``, ``lpips-alex``: LPIPS v0.1 (Zhang et al. 2018; PS-SR Eq. 11), pyiqa's ``lpips-vgg`` / ``lpips``;
* ``dists``: DISTS (Ding et al. 2020), pyiqa's ``dists``;
* ``tiny``: :class:`TinyPerceptual`, LPIPS's formula on three fixed random convolutions (no files; for tests).

The pyiqa networks are pyiqa's own metrics created with ``as_loss=True``, so the loss equals the
metric ``vsr evaluate`` reports on the same frames. They are built strictly offline with the metrics'
machinery (:mod:`vsr_core.metrics.iqa`): the LPIPS / DISTS file from the weights directory
(``weights_dir``, default ``$VSR_METRIC_WEIGHTS`` else ``<torch hub>/pyiqa``) and the torchvision
backbone from ``<torch hub>/checkpoints``; a missing file raises :class:`~vsr_core.errors.PretrainedError`
naming it and its directory, and nothing is ever downloaded. Every file is read with
``torch.load(..., weights_only=True)`` (pyiqa and torch.hub would unpickle arbitrary objects).

**Training-only, never saved.** The network is held outside ``nn.Module``'s registry (in a tuple), so a
``PerceptualLoss`` attribute of a method has no parameters, buffers or submodules: ``state_dict()``,
checkpoints, the EMA, ``vsr export``, DDP's broadcast and FSDP's sharding never see it, and
``.train()`` cannot switch on LPIPS's dropout. It follows its inputs' device on the first call.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError

__all__ = ["PERCEPTUAL_KINDS", "PerceptualLoss", "TinyPerceptual", "perceptual_weight_files"]

PERCEPTUAL_KINDS = ("lpips-vgg", "lpips-alex", "dists", "tiny")
# our kind -> pyiqa metric name (pyiqa's "lpips" is the AlexNet variant)
_PYIQA_NAMES = {"lpips-vgg": "lpips-vgg", "lpips-alex": "lpips", "dists": "dists"}


def _check_kind(kind: str) -> None:
    if kind not in PERCEPTUAL_KINDS:
        raise ConfigError(f"unknown perceptual loss {kind!r}; choose one of {', '.join(PERCEPTUAL_KINDS)}")


def _weights_dir(weights_dir: str | os.PathLike | None) -> Path:
    from vsr_core.metrics.iqa import default_weights_dir

    return Path(weights_dir) if weights_dir else default_weights_dir()


def perceptual_weight_files(kind: str, weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """The files a pyiqa ``kind`` loads: ``[<torch hub>/checkpoints/<backbone>.pth, <weights_dir>/<metric>.pth]``.

    Names are read from torchvision's weight enums and pyiqa's URL tables, so they follow the installed versions.
    ``"tiny"`` needs none.
    """
    _check_kind(kind)
    if kind == "tiny":
        return []
    from pyiqa.archs import dists_arch, lpips_arch
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    backbone = AlexNet_Weights.IMAGENET1K_V1 if kind == "lpips-alex" else VGG16_Weights.IMAGENET1K_V1
    own = {
        "lpips-alex": lpips_arch.default_model_urls["0.1_alex"],
        "lpips-vgg": lpips_arch.default_model_urls["0.1_vgg"],
        "dists": dists_arch.default_model_urls["url"],
    }[kind]
    return [
        Path(torch.hub.get_dir()) / "checkpoints" / _file_name(backbone.url),
        _weights_dir(weights_dir) / _file_name(own),
    ]


def _file_name(url: str) -> str:
    """The name torch.hub and pyiqa give the file downloaded from ``url``."""
    return os.path.basename(urlparse(url).path)


# What torch.load raises for pickled code (weights_only refuses it), a file that is not a checkpoint, a truncated one.
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Make every ``torch.load`` in the block tensors-only, and name the file when one cannot be read."""
    original = torch.load

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        try:
            return original(f, *args, **kwargs)
        except _UNREADABLE as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PretrainedError(
                f"{f} cannot be read as a plain weights file ({first}); replace it with the original"
            ) from None

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def _build_pyiqa(kind: str, weights_dir: Path) -> nn.Module:
    import pyiqa

    from vsr_core.metrics.iqa import MissingWeights, _offline

    files = perceptual_weight_files(kind, weights_dir)
    missing = [p for p in files if not p.is_file()]

    def report(paths: list[Path]) -> PretrainedError:
        where = ", ".join(f"{p.name} in {p.parent}" for p in paths)
        return PretrainedError(
            f"perceptual loss {kind!r} needs weights that are not on disk: {where}; "
            "put them there (nothing is downloaded)"
        )

    if missing:
        raise report(missing)
    with _offline(weights_dir), _weights_only_loads():
        try:
            return pyiqa.create_metric(
                _PYIQA_NAMES[kind], as_loss=True, loss_reduction="none", device=torch.device("cpu")
            )
        except MissingWeights as err:  # a file the table above does not know about
            raise report([Path(err.path)]) from None
        except RuntimeError as err:  # load_state_dict: wrong shapes or keys
            first = str(err).strip().splitlines()[0]
            raise PretrainedError(
                f"the weights of perceptual loss {kind!r} ({', '.join(map(str, files))}) do not fit: {first}"
            ) from None


class TinyPerceptual(nn.Module):
    """Deterministic stand-in for LPIPS: ``(pred, target)`` ``[N, 3, H, W]`` in [-1, 1] -> distances ``[N]``.

    Three 3x3 convolutions (``channels``, strides 1, 2, 2, padding 1, ReLU) with fixed weights drawn from
    ``torch.Generator().manual_seed(seed)`` (N(0, 2 / fan_in), zero bias), identical on every machine.
    Like LPIPS without its learned linear layers: per layer ``l`` the features are unit-normalised over
    channels, and ``d = sum_l mean_{h,w} sum_c (f_l(pred) - f_l(target))^2``.
    """

    strides = (1, 2, 2)

    def __init__(self, channels: tuple[int, int, int] = (8, 16, 16), seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        c_in = 3
        for i, c_out in enumerate(channels):
            std = (2.0 / (c_in * 9)) ** 0.5
            self.register_buffer(f"weight{i}", torch.randn(c_out, c_in, 3, 3, generator=generator) * std)
            c_in = c_out
        self.num_layers = len(channels)

    @property
    def weights(self) -> list[torch.Tensor]:
        """The fixed convolution weights ``[C_out, C_in, 3, 3]`` per layer."""
        return [getattr(self, f"weight{i}") for i in range(self.num_layers)]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = pred.new_zeros(pred.shape[0], dtype=torch.float32)
        fp, ft = pred.float(), target.float()
        for weight, stride in zip(self.weights, self.strides, strict=True):
            fp = F.relu(F.conv2d(fp, weight, stride=stride, padding=1))
            ft = F.relu(F.conv2d(ft, weight, stride=stride, padding=1))
            np_ = fp / (fp.square().sum(1, keepdim=True).sqrt() + 1e-10)  # LPIPS's normalize_tensor
            nt = ft / (ft.square().sum(1, keepdim=True).sqrt() + 1e-10)
            distance = distance + (np_ - nt).square().sum(1).mean(dim=(1, 2))
        return distance


def _frames(video: torch.Tensor) -> torch.Tensor:
    if video.ndim == 5 and video.shape[1] == 3:
        b, c, t, h, w = video.shape
        return video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    if video.ndim == 4 and video.shape[1] == 3:
        return video
    raise ValueError(
        f"perceptual loss expects [B, 3, T, H, W] videos or [N, 3, H, W] frames, got shape {list(video.shape)}"
    )


class PerceptualLoss(nn.Module):
    """A perceptual distance as a loss: ``(pred, target)`` videos ``[B, 3, T, H, W]`` in [-1, 1] -> scalar.

    ``kind`` is one of :data:`PERCEPTUAL_KINDS`; ``weights_dir`` the pyiqa weights directory (default
    ``$VSR_METRIC_WEIGHTS`` else ``<torch hub>/pyiqa``). ``reduction="mean"`` returns the mean over all
    frames, ``"none"`` the per-frame distances ``[B, T]`` (``[N]`` for frame input). The network is not a
    registered submodule (see the module docstring): no parameters, buffers or ``state_dict`` entries.

    Raises:
        PretrainedError: a weights file is missing (named with its directory) or unreadable.
    """

    def __init__(
        self, kind: str = "lpips-vgg", weights_dir: str | os.PathLike | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__()
        _check_kind(kind)
        if reduction not in ("mean", "none"):
            raise ConfigError(f"perceptual loss reduction must be 'mean' or 'none', got {reduction!r}")
        self.kind, self.reduction = kind, reduction
        with torch.device("cpu"):  # real weights even inside a meta-device init context (FSDP's empty init)
            network = TinyPerceptual() if kind == "tiny" else _build_pyiqa(kind, _weights_dir(weights_dir))
        network.eval().requires_grad_(False)
        # A tuple is not registered by nn.Module.__setattr__: the network stays out of state_dict, parameters(),
        # modules(), train()/eval() and .to(); forward moves it to the inputs' device itself.
        self._network = (network,)
        self._device = torch.device("cpu")

    @property
    def network(self) -> nn.Module:
        """The frozen network: a pyiqa ``InferenceModel`` (``as_loss=True``) or a :class:`TinyPerceptual`."""
        return self._network[0]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"pred and target shapes differ: {list(pred.shape)} vs {list(target.shape)}")
        frames_pred, frames_target = _frames(pred).float(), _frames(target).float()
        if self._device != pred.device:
            self.network.to(pred.device)
            self._device = pred.device
        if self.kind == "tiny":
            distance = self.network(frames_pred, frames_target)
        else:  # pyiqa's networks read [0, 1] images
            distance = self.network((frames_pred + 1) / 2, (frames_target + 1) / 2)
        distance = distance.reshape(frames_pred.shape[0])
        if self.reduction == "mean":
            return distance.mean()
        return distance.reshape(pred.shape[0], pred.shape[2]) if pred.ndim == 5 else distance

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, reduction={self.reduction!r}"
