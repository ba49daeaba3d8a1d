"""What DiffVSR's temporal layers need to know about the current UNet call, shared by the hooks of one UNet.

The inflated UNet runs on frames ``[B*T, ...]``. Its temporal layers (MSTA inside the spatial transformers, the 3D
blocks after each down/mid/up block, clip-wide group norms) need the clip length ``T``, the spatial size of the
tokens they see, the UNet's time embedding and the timestep. Forward pre-hooks fill a :class:`VideoContext` as the
UNet runs (:mod:`diffvsr.unet`); the layers read it. Like the core's inflation state, the values stay until the next
call, so activation checkpointing that recomputes a layer in ``backward`` sees the values of its forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["VideoContext"]


@dataclass
class VideoContext:
    """Per-call state of an inflated UNet (plain attributes, not module state: never in a ``state_dict``).

    Attributes:
        num_frames: ``T`` of the current call.
        spatial_size: ``(H, W)`` of the spatial transformer that runs now (its input is ``[B*T, C, H, W]``).
        time_embedding: the UNet's time + noise-level embedding ``[B*T, D]`` (rows repeat per frame).
        timestep: the per-frame timesteps ``[B*T]`` the UNet received.
    """

    num_frames: int | None = None
    spatial_size: tuple[int, int] | None = None
    time_embedding: torch.Tensor | None = None
    timestep: torch.Tensor | None = None

    @property
    def clip_time_embedding(self) -> torch.Tensor | None:
        """``[B, D]``: one time embedding per clip (the rows of a clip are equal)."""
        if self.time_embedding is None or self.num_frames is None:
            return None
        return self.time_embedding[:: self.num_frames]

    @property
    def clip_timestep(self) -> torch.Tensor | None:
        """``[B]`` long: one timestep per clip."""
        if self.timestep is None or self.num_frames is None:
            return None
        return self.timestep[:: self.num_frames].long()
