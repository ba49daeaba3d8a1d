"""Reproducible sampling noise for the engine: per-file generators and timeline-wide latent noise.

:func:`make_generator` gives the ``generator=`` the engine passes to ``restore`` (seeded per file,
on the method's device when that device has generators, else on the CPU). :class:`TimelineNoise`
is the noise of a whole video's latent timeline for the latent window protocol: conceptually one
``[B, c, T, H, W]`` tensor per level, drawn lazily in fixed blocks so that windows and tiles that
share latents get the same noise there, whatever order they are prepared in, and nothing beyond
the requested slice is ever held (memory independent of video length and frame size).
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["TimelineNoise", "make_generator"]


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed`` on ``device``, or on the CPU when ``device`` has none."""
    try:
        generator = torch.Generator(device=device)
    except (RuntimeError, TypeError):
        generator = torch.Generator()
    return generator.manual_seed(int(seed))


def _block_seed(seed: int, *key: int) -> int:
    digest = hashlib.blake2b(":".join(map(str, (seed, *key))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class TimelineNoise:
    """Standard-normal noise of one video's latent timeline, level by level, drawn in blocks.

    ``slice(level, frames, rows, cols)`` -> ``[batch, channels, len(frames), len(rows), len(cols)]``
    (``frames``/``rows``/``cols`` are ``range`` objects in latent units). Each ``block x block``
    patch of each latent frame at each level is drawn from its own generator seeded by
    ``(seed, level, frame, block row, block column)``. Level 0 is the initial noise; level
    ``i + 1`` the noise of solver step ``i`` for methods whose steps draw noise.
    """

    def __init__(
        self,
        seed: int,
        batch: int,
        channels: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        block: int = 64,
    ) -> None:
        self.seed = int(seed)
        self.batch = batch
        self.channels = channels
        self.device = torch.device(device)
        self.dtype = dtype
        self.block = block

    def _block(self, level: int, frame: int, by: int, bx: int) -> torch.Tensor:
        generator = make_generator(_block_seed(self.seed, level, frame, by, bx), self.device)
        shape = (self.batch, self.channels, self.block, self.block)
        return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)

    def slice(self, level: int, frames: range, rows: range, cols: range) -> torch.Tensor:
        """The noise of latent ``frames`` x ``rows`` x ``cols`` at ``level`` (see the class docstring)."""
        b = self.block
        out = torch.empty(self.batch, self.channels, len(frames), len(rows), len(cols), device=self.device)
        for k, frame in enumerate(frames):
            for by in range(rows.start // b, (rows.stop - 1) // b + 1):
                y0, y1 = max(rows.start, by * b), min(rows.stop, (by + 1) * b)
                for bx in range(cols.start // b, (cols.stop - 1) // b + 1):
                    x0, x1 = max(cols.start, bx * b), min(cols.stop, (bx + 1) * b)
                    block = self._block(level, frame, by, bx).to(self.device)
                    out[:, :, k, y0 - rows.start : y1 - rows.start, x0 - cols.start : x1 - cols.start] = block[
                        :, :, y0 - by * b : y1 - by * b, x0 - bx * b : x1 - bx * b
                    ]
        return out.to(self.dtype)
