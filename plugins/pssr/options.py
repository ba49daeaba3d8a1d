"""PS-SR's option groups: every default is the value it runs with (paper unless the issue says release).

Paper-vs-release choices are fields here; docs/methods/pssr.md lists each with its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vsr_core.errors import ConfigError
from vsr_core.options import ColorFix, LoRAOptions, OptionGroup, SamplingOptions

__all__ = [
    "BASE_LORA_TARGETS",
    "DraftOptions",
    "FlowOptions",
    "FrequencyUpdateOptions",
    "FrequencyUpdateMode",
    "LossWeights",
    "PixelLossOptions",
    "PSSRLoRA",
    "PSSRSampling",
    "Stage",
    "TextOptions",
    "VSDOptions",
]

#: LoRA on every DiT block (Sec. 3.3; the release's ``q,k,v,o,ffn.0,ffn.2`` in diffusers' names).
BASE_LORA_TARGETS = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "ffn.net.0.proj",
    "ffn.net.2",
)

#: What one training run trains (Sec. 3.3 latent and pixel phases of the base, Sec. 3.4 the draft).
Stage = Literal["latent", "pixel", "draft"]
#: ``every_step``: Eq. 6 / Fig. 2, FDU after each draft step (paper); ``final``: once, blending the last
#: draft prediction into the base output (release ``inference_step_2.py``); ``off``: Table 3 "w/o FDU".
FrequencyUpdateMode = Literal["every_step", "final", "off"]


@dataclass(frozen=True)
class PSSRLoRA(LoRAOptions):
    """LoRA of the base (and of the VSD fake score): rank 32 on all DiT blocks, ``alpha = rank`` (scale 1, as DiffSynth)."""

    rank: int = 32
    alpha: float = 32.0
    targets: tuple[str, ...] = BASE_LORA_TARGETS


@dataclass(frozen=True)
class PSSRSampling(SamplingOptions):
    """``restore`` defaults: T = 4 (1 base + 3 draft steps), FDU after every draft step with alpha 0.6.

    Args:
        num_inference_steps: T of Eq. 1 (``--steps``); 1 runs the base alone.
        guidance_scale: classifier-free guidance of base and draft at inference (release default 1).
        sampler: the flow Euler step of Eq. 3 (the only one).
        color_fix: colour correction against the upsampled input (the release has none).
        alpha: refinement strength of Eq. 14 (paper 0.6; the release's ``inference_step_2.py`` argparse default 1.0).
        frequency_update: ``every_step`` (paper), ``final`` (release) or ``off`` (Table 3 "w/o FDU").
    """

    num_inference_steps: int = 4
    guidance_scale: float = 1.0
    sampler: Literal["euler"] = "euler"
    color_fix: ColorFix = "none"
    alpha: float = 0.6
    frequency_update: FrequencyUpdateMode = "every_step"

    def check(self) -> None:
        super().check()
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha (FDU refinement strength, Eq. 14) must be in [0, 1], got {self.alpha}")


@dataclass(frozen=True)
class FlowOptions(OptionGroup):
    """Timesteps of the speculative sampler (model timesteps, ``sigma * 1000``, never shifted).

    Args:
        base_timestep: where the base reads ``z_L`` (release 699, sigma_L = 0.699; 1000 is the paper's
            Eq. 5 reading sigma_T = 1). The x0 conversion and the L2 target follow it (pssr/flow.py).
        last_draft_timestep: the last draft step's timestep (release 399); the T - 1 draft timesteps
            are spread evenly from ``base_timestep`` down to it (599, 499, 399 for T = 4).
        train_steps: the T whose draft timesteps the draft is trained at (uniformly; the paper does
            not say, the release trains at its inference timesteps).
    """

    base_timestep: int = 699
    last_draft_timestep: int = 399
    train_steps: int = 4

    def check(self) -> None:
        if not 0 < self.last_draft_timestep < self.base_timestep <= 1000:
            raise ConfigError(
                "need 0 < last_draft_timestep < base_timestep <= 1000, got "
                f"{self.last_draft_timestep} and {self.base_timestep}"
            )
        if self.train_steps < 2:
            raise ConfigError(f"train_steps must be >= 2 (at least one draft step), got {self.train_steps}")

    @property
    def sigma_lq(self) -> float:
        """sigma at which the flow reaches z_L: ``base_timestep / 1000``."""
        return self.base_timestep / 1000.0


@dataclass(frozen=True)
class DraftOptions(OptionGroup):
    """The draft's size (Table 6): ``pruned`` of every ``out_of`` base blocks are removed uniformly.

    Args:
        pruned, out_of: 20 of 30 (paper default: keeps blocks 2, 5, ..., 29 of Wan2.1-1.3B); Table 6
            rows: 0/30, 10/30, 20/30, 25/30.
        input: ``interpolated`` trains on ``z_t = sigma_t z_L + (1 - sigma_t) z_H`` (paper Sec. 3.4);
            ``trajectory`` on the sampler's own states (base step, then the draft's own steps, all
            detached, as the release's ``train_draft.py``; their losses are summed into one update).
    """

    pruned: int = 20
    out_of: int = 30
    input: Literal["interpolated", "trajectory"] = "interpolated"


@dataclass(frozen=True)
class LossWeights(OptionGroup):
    """Loss weights (Sec. 4.1). Which terms a stage uses is fixed by the paper:

    * ``latent`` (Eq. 10): ``l2 * L_L2 (Eq. 7) + vsd * L_vsd (Eq. 8) + adv * L_adv (Eq. 9)``;
    * ``pixel`` (Eq. 11): ``pixel_l2 * ||x^ - x||^2 + lpips * LPIPS`` on decoded latent crops;
    * ``draft`` (Eq. 12): ``l2 * L_L2 + pixel * L_pixel (Eq. 11)``.

    Args:
        adv: 0.1 (paper); the release's scripts train with 0.
    """

    l2: float = 1.0
    vsd: float = 1.0
    adv: float = 0.1
    pixel_l2: float = 1.0
    lpips: float = 2.0
    pixel: float = 1.0

    def check(self) -> None:
        negative = [name for name, value in self.as_dict().items() if value < 0]
        if negative:
            raise ConfigError(f"loss weights must be >= 0; {', '.join(negative)} is negative")


@dataclass(frozen=True)
class PixelLossOptions(OptionGroup):
    """The pixel loss of Eq. 11: random latent crops decoded by the VAE (Sec. 3.3, patch-wise training).

    Args:
        crop: side of the latent crop (20 latents = 160 px with the Wan VAE, Sec. 4.1); a latent
            smaller than that is used whole.
        perceptual: the perceptual distance (LPIPS with VGG as the release's ``lpips.LPIPS(net="vgg")``;
            ``tiny`` is a weight-free stand-in for CPU tests).
    """

    crop: int = 20
    perceptual: Literal["lpips-vgg", "lpips-alex", "dists", "tiny"] = "lpips-vgg"

    def check(self) -> None:
        if self.crop < 1:
            raise ConfigError(f"pixel.crop must be >= 1 latent, got {self.crop}")


@dataclass(frozen=True)
class VSDOptions(OptionGroup):
    """Variational score distillation (Eq. 8) with the core's distribution matching.

    Args:
        guidance_scale: CFG of the frozen real score (release ``--cfg_scale 5``).
        t_min, t_max: noising timesteps ``[t_min, t_max)`` (release: 20 .. 980).
        shift: shift of the training sigma grid the noising times are drawn from (release scheduler: 5).
        weighting: ``dmd`` (OSEDiff / the release: ``1 / mean|z - x0_real|``) or ``none``.
    """

    guidance_scale: float = 5.0
    t_min: float = 20.0
    t_max: float = 980.0
    shift: float = 5.0
    weighting: Literal["dmd", "none"] = "dmd"

    def check(self) -> None:
        if not 0 <= self.t_min < self.t_max <= 1000:
            raise ConfigError(f"VSD needs 0 <= t_min < t_max <= 1000, got {self.t_min}, {self.t_max}")


@dataclass(frozen=True)
class FrequencyUpdateOptions(OptionGroup):
    """The Butterworth high-pass of Eq. 13-14 (release ``inference_step_2.py``): cut-off 0.20, order 2.

    Args:
        alpha_scales: ``blend`` multiplies the whole Eq. 14 blend by alpha (as printed; the release's
            code); ``draft`` only the draft's share, ``alpha w Y~_H + (1 - alpha w) Y_H`` (the reading
            the paper's Tables 5 and 7 behave like; pssr/frequency.py).
    """

    cutoff: float = 0.20
    order: int = 2
    border: int = 2
    eps: float = 1e-6
    alpha_scales: Literal["blend", "draft"] = "blend"

    def check(self) -> None:
        if not 0 < self.cutoff or self.order < 1 or self.border < 0 or self.eps <= 0:
            raise ConfigError(
                f"frequency update needs cutoff > 0, order >= 1, border >= 0, eps > 0; got {self.as_dict()}"
            )


@dataclass(frozen=True)
class TextOptions(OptionGroup):
    """Prompt conditioning with Wan's umT5 (the core's prompt encoder).

    Args:
        encoder: ``auto`` (umT5 when ``pretrained`` has ``text_encoder/``, else zeros), ``umt5``,
            ``empty`` (umT5's embedding of ""), ``none`` (zeros; tiny presets).
        template: appended to every prompt (the release's default training/inference prompt; it
            also appends RAM tags of the LQ video, which are not reproduced here).
        negative_prompt: the unconditional prompt of guidance (release default).
        cache: a caption-embedding cache directory (``vsr precompute``): cached prompts are read
            from it and umT5 runs only for the others.
    """

    encoder: Literal["auto", "umt5", "empty", "none"] = "auto"
    template: str = "4K Ultra-clear, Sharp, Fine Details Restored, Temporal Consistency, Natural Colors"
    negative_prompt: str = (
        "painting, oil painting, illustration, drawing, art, sketch, cartoon, CG Style, 3D render, unreal engine, "
        "blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, jpeg artifacts, deformed, "
        "lowres, over-smooth"
    )
    cache: str | None = None
