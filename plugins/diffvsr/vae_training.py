"""``TE3DVAE``: training DiffVSR's temporal-enhanced VAE decoder (paper v2 Sec. 3.4, Table 5) as its own method.

The decoder of :class:`~diffvsr.te3dvae.TemporalEnhancedVAE` learns to reconstruct clips from the frozen per-frame
encoder's latents with ``L1 + lambda_p * perceptual + lambda_adv * adversarial`` against a temporal PatchGAN
discriminator (``vsr_core.losses.TemporalPatchDiscriminator``, hinge loss by default), two networks stepped with
``self.optimize`` (discriminator, then decoder). The paper names the three losses and the discriminator, not their
weights; the defaults here (1 and 0.1) are the usual VAE-GAN choices.

``restore`` reconstructs its input (scale 1): ``decode(encode(x))``. ``vsr export`` writes the VAE as a diffusers
folder ``vae/`` (``config.json`` + safetensors) that ``diffvsr.DiffVSR(vae_weights=FOLDER)`` and
``TE3DVAE(weights=FOLDER)`` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from diffvsr.presets import Preset, te3dvae_config
from diffvsr.te3dvae import TemporalEnhancedVAE
from diffvsr.weights import load_te3dvae_file
from vsr_core.checkpoint import loading_checkpoint
from vsr_core.errors import ConfigError
from vsr_core.latent import TemporalDecoderCodec
from vsr_core.losses import PerceptualLoss, TemporalPatchDiscriminator, d_loss, g_loss
from vsr_core.method import VSRMethod
from vsr_core.optimization import GroupSchedule
from vsr_core.pretrained import resolve_pretrained

__all__ = ["TE3DVAE"]


class TE3DVAE(VSRMethod):
    """Trains the TE-3DVAE (or 3DVAE) decoder: L1 + perceptual + temporal-PatchGAN losses; ``restore`` reconstructs.

    Args:
        scale: must be 1 (the VAE reconstructs its input).
        preset: ``tiny`` or ``real`` (the release's ``vae_config.json``).
        variant: ``te-3dvae`` or ``3dvae`` (no temporal attention in the mid block; Table 5).
        base_vae: a diffusers folder with the SD x4 upscaler's ``vae/``: the encoder and the 2D decoder layers start
            from it, every temporal part at the identity (``TemporalEnhancedVAE.from_autoencoder_kl``).
        weights: the release's ``TE-3DVAE.pt`` or a folder with ``vae/`` (an export of this class); wins over
            ``base_vae``. Neither: random at the preset's size.
        train_encoder: also train the encoder (the paper trains the decoder; the encoder must match the one the
            diffusion model was trained with).
        decode_chunk: frames the decoder sees at once (the release decodes chunks of 4).
        perceptual: ``lpips-vgg`` (LPIPS, the paper's [33]), ``lpips-alex``, ``dists`` or ``tiny`` (tests).
        perceptual_weight, adversarial_weight: ``lambda_p`` and ``lambda_adv``.
        gan_loss: ``hinge``, ``non_saturating`` or ``least_squares``.
        discriminator_channels, discriminator_layers: width and depth of the temporal PatchGAN.
    """

    generator_groups: ClassVar[tuple[str, ...]] = ("decoder",)
    training_only_modules: ClassVar[tuple[str, ...]] = ("discriminator", "perceptual")
    export_init_arg: ClassVar[str | None] = "weights"
    temporal_window: ClassVar[int] = 8
    tiny_init_args: ClassVar[dict[str, Any]] = {
        "preset": "tiny", "perceptual": "tiny", "discriminator_channels": 8, "discriminator_layers": 1,
    }  # fmt: skip

    def __init__(
        self,
        scale: int = 1,
        preset: Preset = "tiny",
        variant: Literal["te-3dvae", "3dvae"] = "te-3dvae",
        base_vae: str | None = None,
        weights: str | None = None,
        train_encoder: bool = False,
        decode_chunk: int = 4,
        perceptual: Literal["lpips-vgg", "lpips-alex", "dists", "tiny"] = "lpips-vgg",
        perceptual_weight: float = 1.0,
        adversarial_weight: float = 0.1,
        gan_loss: Literal["hinge", "non_saturating", "least_squares"] = "hinge",
        discriminator_channels: int = 64,
        discriminator_layers: int = 3,
        learning_rate: float = 1e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, learning_rate=learning_rate, **kwargs)
        if scale != 1:
            raise ConfigError(f"TE3DVAE reconstructs its input: scale must be 1, got {scale}")
        if variant not in ("te-3dvae", "3dvae"):
            raise ConfigError(f"variant must be te-3dvae or 3dvae, got {variant!r}")
        self.automatic_optimization = False
        # The generator meets the discriminator only once it trains (group_schedules' discriminator start).
        schedule = (self.hparams.get("group_schedules") or {}).get("discriminator")
        self.adversarial_start = GroupSchedule.coerce(schedule).start
        self.perceptual_kind, self.perceptual_weight = perceptual, perceptual_weight
        self.adversarial_weight, self.gan_loss = adversarial_weight, gan_loss
        self.discriminator_channels, self.discriminator_layers = discriminator_channels, discriminator_layers
        temporal_attention = variant == "te-3dvae"
        options = {"decode_chunk_size": decode_chunk, "trainable": True}
        reading = not loading_checkpoint()  # a checkpoint brings every weight itself
        if weights and reading and Path(weights).is_dir():
            self.codec = TemporalDecoderCodec(pretrained=weights, vae_class=TemporalEnhancedVAE, **options)
            if self.codec.vae.config.temporal_attention != temporal_attention:
                raise ConfigError(f"{weights}/vae is not a {variant} (temporal_attention differs)")
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                if base_vae and reading and not weights:
                    vae_2d = AutoencoderKL.from_pretrained(resolve_pretrained(base_vae, "vae"))
                    vae = TemporalEnhancedVAE.from_autoencoder_kl(vae_2d, temporal_attention=temporal_attention)
                else:
                    vae = TemporalEnhancedVAE(**te3dvae_config(preset), temporal_attention=temporal_attention)
            if weights and reading:
                load_te3dvae_file(vae, weights)
            self.codec = TemporalDecoderCodec(vae=vae, **options)
        if not train_encoder:
            for module in self.codec.encoder_modules():
                module.requires_grad_(False)
        self.discriminator: TemporalPatchDiscriminator | None = None
        self.perceptual: PerceptualLoss | None = None

    def build_training_modules(self) -> None:
        # Seeded apart from the run's RNG, so building them never shifts anything else.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            self.discriminator = TemporalPatchDiscriminator(
                base_channels=self.discriminator_channels, num_layers=self.discriminator_layers
            ).to(self.device)
        self.perceptual = PerceptualLoss(self.perceptual_kind)

    def parameter_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        self.ensure_training_modules()
        return {
            "decoder": [p for p in self.codec.parameters() if p.requires_grad],
            "discriminator": list(self.discriminator.parameters()),
        }

    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """``decode(encode(video))``: ``[B, 3, T, H, W]`` -> same, in ``[-1, 1]`` (gradients into the decoder)."""
        with torch.set_grad_enabled(
            torch.is_grad_enabled() and any(p.requires_grad for p in self.codec.vae.encoder.parameters())
        ):
            latents = self.codec.encode(video)
        return self.codec.decode(latents)

    def discriminator_loss(self, restored: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
        """The temporal PatchGAN's loss on real ``hq`` and (detached) reconstructions ``[B, 3, T, H, W]``."""
        return d_loss(self.discriminator(hq), self.discriminator(restored.detach()), self.gan_loss)

    def decoder_losses(self, restored: torch.Tensor, hq: torch.Tensor) -> dict[str, torch.Tensor]:
        """``l1``, ``perceptual``, ``adversarial`` and ``total = l1 + lambda_p perceptual + lambda_adv adversarial``.

        The adversarial term counts from the discriminator's first training step (``group_schedules``) on.
        """
        terms = {
            "l1": F.l1_loss(restored, hq),
            "perceptual": self.perceptual(restored, hq),
            "adversarial": g_loss(self.discriminator(restored), self.gan_loss),
        }
        weight = self.adversarial_weight if self.global_step >= self.adversarial_start else 0.0
        terms["total"] = terms["l1"] + self.perceptual_weight * terms["perceptual"] + weight * terms["adversarial"]
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hq = batch["hq"]
        restored = self.reconstruct(hq)
        losses = {"discriminator": self.optimize("discriminator", lambda: self.discriminator_loss(restored, hq))}
        parts: dict[str, torch.Tensor] = {}

        def decoder_loss() -> torch.Tensor:
            parts.update(self.decoder_losses(restored, hq))
            return parts["total"]

        losses["decoder"] = self.optimize("decoder", decoder_loss)
        losses.update({k: v.detach() for k, v in parts.items() if k != "total"})
        self.log_losses({k: v for k, v in losses.items() if v is not None})

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reconstruct ``[B, 3, T, H, W]`` (one pass: no steps, guidance or noise)."""
        if num_inference_steps not in (None, 1):
            raise ConfigError(
                f"TE3DVAE reconstructs in one pass; num_inference_steps={num_inference_steps} does not apply"
            )
        return self.reconstruct(lq)

    def export_pretrained(self, directory: str | Path) -> None:
        """``vsr export``: the VAE as a diffusers folder ``<directory>/vae/`` (read back by ``weights=``)."""
        self.codec.vae.save_pretrained(Path(directory) / "vae", safe_serialization=True)
