"""A caption-embedding cache on disk, so training on captions need not keep the text encoder loaded.

Layout: ``<directory>/<encoder key>/<h[:2]>/<h>.safetensors`` with ``h`` the sha256 of the exact
prompt text (after any suffix). The encoder key (:attr:`TextEncoder.key
<vsr_core.text.encoders.TextEncoder.key>`) hashes the encoder family, token length, dtype,
``clip_skip``, the config and tokenizer files and a fingerprint of the weight files, so a different
encoder or setting never reads another's entries. One file holds one tensor ``embedding``
``[n, width]`` and metadata naming the key and the prompt hash. ``n`` is the full token length,
except for zero-padded encoders (umT5), whose entries keep only the ``n`` real rows (an exact
saving: the rest are zeros) and are padded back on read.

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so a crash leaves no
half-written entry under the final name. An entry that cannot be read, or whose key, prompt hash,
shape, dtype or values are wrong, is reported with one :class:`EmbeddingCacheWarning` and treated
as missing: the caller recomputes and overwrites it, never returning a wrong embedding.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["EmbeddingCache", "EmbeddingCacheWarning", "prompt_hash"]

_FORMAT = "vsr-text-embedding/1"
_TENSOR = "embedding"


class EmbeddingCacheWarning(UserWarning):
    """A cache entry was unreadable or did not match; it is recomputed (one warning per entry)."""


def prompt_hash(text: str) -> str:
    """sha256 (hex) of the UTF-8 prompt text: the entry's file name."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings ``[length, width]`` of prompt texts for one encoder, one safetensors file each.

    Args:
        directory: the cache root (shared by encoders: each key has its own sub-folder).
        encoder_key: the encoder's identity (:attr:`TextEncoder.key`).
        length, width: the embedding shape every entry must have.
        dtype: the dtype every entry must have (the encoder's output dtype).
        zero_padded: entries store only the real rows (``1..length``), zeros are added on read.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        encoder_key: str,
        length: int,
        width: int,
        dtype: torch.dtype = torch.float32,
        zero_padded: bool = False,
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.encoder_key = encoder_key
        self.length = int(length)
        self.width = int(width)
        self.dtype = dtype
        self.zero_padded = zero_padded
        self._warned: set[Path] = set()

    @classmethod
    def for_encoder(cls, directory: str | os.PathLike, encoder: object) -> EmbeddingCache:
        """The cache of a :class:`~vsr_core.text.encoders.TextEncoder` (shape and dtype from its config)."""
        return cls(
            directory,
            encoder.key,
            encoder.max_length,
            encoder.width,
            encoder.dtype or torch.float32,
            encoder.zero_padded,
        )

    @property
    def folder(self) -> Path:
        """``<directory>/<encoder key>``: where this encoder's entries live."""
        return self.directory / self.encoder_key

    def path(self, text: str) -> Path:
        """The entry file of ``text``."""
        digest = prompt_hash(text)
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def __contains__(self, text: str) -> bool:
        return self.path(text).is_file()

    def _reject(self, path: Path, reason: str) -> None:
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(
                f"text embedding cache entry {path} {reason}; recomputing it", EmbeddingCacheWarning, stacklevel=4
            )

    def get(self, text: str) -> torch.Tensor | None:
        """The cached ``[length, width]`` embedding of ``text`` (CPU), or ``None`` when absent or invalid."""
        from safetensors import SafetensorError, safe_open

        path = self.path(text)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensor = handle.get_tensor(_TENSOR) if _TENSOR in handle.keys() else None  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            self._reject(path, f"is unreadable ({type(err).__name__})")
            return None
        problem = self._problem(metadata, tensor, text)
        if problem:
            self._reject(path, problem)
            return None
        if tensor.shape[0] < self.length:
            tensor = torch.cat([tensor, tensor.new_zeros(self.length - tensor.shape[0], self.width)])
        return tensor

    def _problem(self, metadata: dict[str, str], tensor: torch.Tensor | None, text: str) -> str | None:
        if metadata.get("format") != _FORMAT or tensor is None:
            return "is not a vsr text embedding"
        if metadata.get("encoder_key") != self.encoder_key:
            return f"was written for encoder {metadata.get('encoder_key')!r}, not {self.encoder_key!r}"
        if metadata.get("prompt_sha256") != prompt_hash(text):
            return "holds the embedding of another prompt"
        if tensor.ndim != 2:
            return f"has shape {list(tensor.shape)}, expected [{self.length}, {self.width}]"
        rows_ok = 1 <= tensor.shape[0] <= self.length if self.zero_padded else tensor.shape[0] == self.length
        if tensor.shape[1] != self.width or not rows_ok:
            return f"has shape {list(tensor.shape)}, expected [{self.length}, {self.width}]"
        if tensor.dtype != self.dtype:
            return f"has dtype {tensor.dtype}, expected {self.dtype}"
        if not torch.isfinite(tensor).all():
            return "holds non-finite values"
        return None

    def put(self, text: str, embedding: torch.Tensor, real_length: int | None = None) -> Path:
        """Write the ``[length, width]`` embedding of ``text`` atomically; returns the entry path.

        ``real_length`` (zero-padded encoders) is the prompt's token count: only those rows are stored.
        """
        from safetensors.torch import save_file

        if tuple(embedding.shape) != (self.length, self.width):
            raise ValueError(f"embedding shape {list(embedding.shape)} != [{self.length}, {self.width}]")
        rows = embedding
        if self.zero_padded and real_length is not None:
            rows = embedding[: max(1, int(real_length))]
        path = self.path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"format": _FORMAT, "encoder_key": self.encoder_key, "prompt_sha256": prompt_hash(text)}
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}-", suffix=".tmp")
        os.close(handle)
        try:
            save_file({_TENSOR: rows.detach().to(device="cpu", dtype=self.dtype).contiguous()}, temporary, metadata)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._warned.discard(path)
        return path

    def other_keys(self) -> list[str]:
        """Encoder keys with entries under :attr:`directory` other than this one (for a "wrong settings?" hint)."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_dir() and p.name != self.encoder_key)
