"""Shared construction of codecs around a diffusers VAE: pretrained folder, named preset or explicit config."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.latent.base import LatentCodec
from vsr_core.pretrained import as_dtype, resolve_pretrained

__all__ = ["DiffusersVAECodec"]


class DiffusersVAECodec(LatentCodec):
    """A :class:`LatentCodec` whose weights live in a diffusers VAE ``self.vae``.

    The VAE comes from (first that is given) ``vae`` (an already built module), ``pretrained``
    (a local diffusers model folder holding ``<subfolder>/``, or a hub id), or ``preset`` (a named
    architecture of this class, random init with ``seed``) updated by ``config``. Subclasses name
    ``vae_class`` and ``presets`` and read their factors / latent normalization from
    ``self.vae.config`` in :meth:`_configure`.
    """

    vae_class: ClassVar[type[nn.Module]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    #: The preset :meth:`real` builds when no variant is named.
    default_real: ClassVar[str]

    def __init__(
        self,
        pretrained: str | None = None,
        preset: str = "tiny",
        config: dict[str, Any] | None = None,
        subfolder: str = "vae",
        torch_dtype: str | None = None,
        seed: int | None = 0,
        vae: nn.Module | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        dtype = as_dtype(torch_dtype)
        if vae is None:
            vae = self._load(pretrained, subfolder, dtype) if pretrained else self._build(preset, config, seed, dtype)
        elif not isinstance(vae, self.vae_class):
            raise ConfigError(f"{type(self).__name__} wraps a {self.vae_class.__name__}, got a {type(vae).__name__}")
        self.vae = vae
        self._configure()
        self._finish_init()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls, path_or_id: str, subfolder: str = "vae", torch_dtype: str | torch.dtype | None = None, **options: Any
    ) -> DiffusersVAECodec:
        """Load the VAE from a diffusers model folder (``<path>/<subfolder>/``) or hub id."""
        return cls(pretrained=str(path_or_id), subfolder=subfolder, torch_dtype=torch_dtype, **options)

    @classmethod
    def tiny(cls, config: dict[str, Any] | None = None, seed: int | None = 0, **options: Any) -> DiffusersVAECodec:
        """A few-thousand-parameter random VAE of the same architecture (tests, CPU presets)."""
        return cls(preset="tiny", config=config, seed=seed, **options)

    @classmethod
    def real(cls, variant: str | None = None, **options: Any) -> DiffusersVAECodec:
        """The full-size architecture of ``variant`` (random init); build under ``torch.device("meta")`` to size it."""
        return cls(preset=variant or cls.default_real, **options)

    @classmethod
    def preset_config(cls, preset: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The VAE config of a named preset, updated by ``config``."""
        if preset not in cls.presets:
            raise ConfigError(
                f"unknown {cls.__name__} preset {preset!r}; choose one of {', '.join(sorted(cls.presets))}"
            )
        return {**cls.presets[preset], **(config or {})}

    def _build(
        self, preset: str, config: dict[str, Any] | None, seed: int | None, dtype: torch.dtype | None
    ) -> nn.Module:
        kwargs = self.preset_config(preset, config)
        if seed is None:
            vae = self.vae_class(**kwargs)
        else:
            # Identical random weights on every rank / run without touching the global RNG stream.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                vae = self.vae_class(**kwargs)
        return vae.to(dtype) if dtype is not None else vae

    def _load(self, pretrained: str, subfolder: str, dtype: torch.dtype | None) -> nn.Module:
        folder = resolve_pretrained(pretrained, subfolder)
        config_file = folder / "config.json"
        found = json.loads(config_file.read_text()).get("_class_name") if config_file.is_file() else None
        expected = self.vae_class.__name__
        if found and found != expected:
            raise PretrainedError(f"{folder} holds an {found}, not an {expected}; use the codec made for {found}")
        return self.vae_class.from_pretrained(folder, torch_dtype=dtype)

    def encoder_modules(self) -> Iterable[nn.Module]:
        return [
            m for m in (getattr(self.vae, "encoder", None), getattr(self.vae, "quant_conv", None)) if m is not None
        ]

    def _configure(self) -> None:
        """Read factors and latent normalization from ``self.vae.config`` (subclasses)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- shared helpers
    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _posterior_latents(self, dist: Any, sample_posterior: bool, generator: torch.Generator | None) -> torch.Tensor:
        return dist.sample(generator=generator) if sample_posterior else dist.mode()

    def _register_channel_stats(self, mean: Iterable[float] | None, std: Iterable[float] | None) -> None:
        # Per-channel latent statistics as [1, c, 1, 1, 1] buffers (derived from the config, not saved).
        shape = (1, -1, 1, 1, 1)
        m = torch.tensor(list(mean), dtype=torch.float32).reshape(shape) if mean is not None else None
        s = torch.tensor(list(std), dtype=torch.float32).reshape(shape) if std is not None else None
        self.register_buffer("latents_mean", m, persistent=False)
        self.register_buffer("latents_std", s, persistent=False)
