"""UltraVSR's option groups: every knob with its real default, choices as ``Literal``.

Each group is one init argument of :class:`ultravsr.UltraVSR` (``--model.init_args.sjd.temporal_weight 0``
on the command line, a nested mapping in YAML). Defaults follow the paper where it says, the authors'
release where their weights need it (docs/methods/ultravsr.md lists each choice), and otherwise run
offline on a CPU (the DEM and the perceptual network; ``configs/sd2.1-base.yaml`` selects CLIP-IQA and LPIPS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vsr_core.errors import ConfigError
from vsr_core.options import ColorFix, LoRAOptions, OptionGroup, SamplingOptions

__all__ = [
    "DEMOptions",
    "DRSOptions",
    "GeneratorLossOptions",
    "RELEASE_UNET_PATTERNS",
    "RELEASE_VAE_PATTERNS",
    "RTSOptions",
    "SJDOptions",
    "TAIOptions",
    "UltraVSRLoRA",
    "UltraVSRSampling",
]

#: Name fragments the release's ``initialize_unet`` gives LoRA (any parameter whose name contains one,
#: biases, norms and RTS modules excluded), split into three adapters by down/up/other blocks.
RELEASE_UNET_PATTERNS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out",
    "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip
#: Name fragments the release's ``initialize_vae`` gives LoRA inside the VAE *encoder* (and ``quant_conv``).
RELEASE_VAE_PATTERNS = (
    "conv1",
    "conv2",
    "conv_in",
    "conv_shortcut",
    "conv",
    "conv_out",
    "to_k",
    "to_q",
    "to_v",
    "to_out.0",
)


@dataclass(frozen=True)
class UltraVSRSampling(SamplingOptions):
    """Restore defaults: one step (DRS, Eq. 3) and the release's wavelet colour fix.

    Args:
        num_inference_steps: always 1 (UltraVSR is a one-step model).
        guidance_scale: always 1 (no classifier-free guidance at inference).
        sampler: ``drs``, the degradation-aware one-step reconstruction.
        color_fix: colour correction against the bicubic-upsampled input (release: ``wavelet``).
    """

    num_inference_steps: Literal[1] = 1
    guidance_scale: float = 1.0
    sampler: Literal["drs"] = "drs"
    color_fix: ColorFix = "wavelet"

    def check(self) -> None:
        super().check()
        if self.guidance_scale != 1.0:
            raise ConfigError(f"UltraVSR restores without guidance (guidance_scale 1), got {self.guidance_scale}")


@dataclass(frozen=True)
class UltraVSRLoRA(LoRAOptions):
    """LoRA on the UNet (three adapters, as the release) and the VAE encoder (Sec. 3.1, 4.1.2).

    Args:
        rank, alpha: UNet adapters (release: rank 4; peft's default ``lora_alpha`` 8, i.e. scale 2).
        targets: UNet name fragments (release rule, see :data:`RELEASE_UNET_PATTERNS`).
        dropout: adapter dropout.
        vae_rank, vae_alpha: the VAE encoder's adapter (release: rank 4, alpha 8).
        vae_targets: VAE encoder name fragments (:data:`RELEASE_VAE_PATTERNS`).
        finetune: ``lora`` (the paper: spatial weights frozen) or ``full`` (every UNet and VAE weight
            trains, no adapters; for the randomly initialised tiny preset, whose frozen base knows nothing).
        train_conv_in: the UNet's ``conv_in`` trains fully besides its adapter (the release stores it).
    """

    rank: int = 4
    alpha: float = 8.0
    targets: tuple[str, ...] = RELEASE_UNET_PATTERNS
    dropout: float = 0.0
    vae_rank: int = 4
    vae_alpha: float = 8.0
    vae_targets: tuple[str, ...] = RELEASE_VAE_PATTERNS
    finetune: Literal["lora", "full"] = "lora"
    train_conv_in: bool = True

    def check(self) -> None:
        super().check()
        if self.vae_rank < 1 or not self.vae_targets:
            raise ConfigError(f"the VAE encoder's LoRA needs vae_rank >= 1 and vae_targets, got {self.vae_rank}")


@dataclass(frozen=True)
class RTSOptions(OptionGroup):
    """Where RTS modules go and which reading of Eq. 5-8 they compute (sizes come from the preset).

    Args:
        conv: the RTS-convolution unit (Eq. 5-6; Table 3 row C adds it).
        attention_unit: the RTS-attention unit (Eq. 7-8; row D adds it).
        unet: after each UNet down block and before each up block (the release's sites).
        vae_decoder: before each VAE decoder up block.
        activation: Eq. 6's activation: ``silu`` (release) or ``relu`` (paper).
        middle: the unshifted middle third of Eq. 5: ``zero`` (release) or ``keep`` (paper).
        attention: Eq. 7 as ``channel`` attention (release, Restormer-style) or ``spatial`` (paper's MutualSA).
    """

    conv: bool = True
    attention_unit: bool = True
    unet: bool = True
    vae_decoder: bool = True
    activation: Literal["silu", "relu"] = "silu"
    middle: Literal["zero", "keep"] = "zero"
    attention: Literal["channel", "spatial"] = "channel"

    @property
    def enabled(self) -> bool:
        return self.conv or self.attention_unit


@dataclass(frozen=True)
class DRSOptions(OptionGroup):
    """Degradation-aware reconstruction scheduling (Sec. 3.2, Eq. 2-4).

    Args:
        schedule: ``drs`` (``d`` from the DEM, ``t_rec`` by Eq. 4) or ``fixed`` (``t = fixed_timestep`` and
            ``d = sqrt(abar_t)``: Table 3 row A, the one-step baseline at ``t = 999``).
        fixed_timestep: the timestep of ``schedule="fixed"``.
        match: Eq. 4 as ``alpha_bar`` (``argmin_t |d^2 - abar_t|``, the release and the reading consistent
            with ``d = sqrt(abar_t)``) or ``sqrt_alpha_bar`` (``argmin_t |d - sqrt(abar_t)|``).
    """

    schedule: Literal["drs", "fixed"] = "drs"
    fixed_timestep: int = 999
    match: Literal["alpha_bar", "sqrt_alpha_bar"] = "alpha_bar"

    def check(self) -> None:
        if self.fixed_timestep < 0:
            raise ConfigError(f"fixed_timestep must be >= 0, got {self.fixed_timestep}")


@dataclass(frozen=True)
class DEMOptions(OptionGroup):
    """The degradation estimation module ``d = DEM(V_LR)`` (Eq. 2); never part of a checkpoint or export.

    Args:
        kind: ``clipiqa`` (pyiqa CLIP-IQA on local weights: the paper and release), ``constant`` (``d = constant``)
            or ``tiny`` (a seeded, frozen few-parameter CNN whose ``d`` depends on the content; CPU tests).
        constant: ``d`` of ``kind="constant"``.
        frame_step, max_frames: frames scored: ``linspace(0, T - 1, max(1, T // frame_step))[:max_frames]`` of the
            bicubic-upsampled input in ``[0, 1]``, averaged (the release: 10 and 5).
    """

    kind: Literal["clipiqa", "constant", "tiny"] = "tiny"
    constant: float = 0.5
    frame_step: int = 10
    max_frames: int = 5

    def check(self) -> None:
        if not 0.0 < self.constant <= 1.0:
            raise ConfigError(f"the constant degradation factor must be in (0, 1], got {self.constant}")
        if self.frame_step < 1 or self.max_frames < 1:
            raise ConfigError(f"frame_step and max_frames must be >= 1, got {self.frame_step}, {self.max_frames}")


@dataclass(frozen=True)
class SJDOptions(OptionGroup):
    """Spatio-temporal joint distillation (Sec. 3.4, Eq. 9-11) with real and fake Temporal Regularized UNets.

    Args:
        weight: weight of ``L_SJD`` in the generator's loss (OSEDiff's VSD weight 1; not in the paper).
        temporal_weight: lambda of Eq. 9 (0.5); 0 is plain VSD (Table 3 row D).
        latent: what is noised: ``reencode`` (``z_0 = E(V_HR)`` with the pretrained encoder, as Eq. 10 writes)
            or ``generator`` (the generator's latent ``z_HR``, no re-encoding).
        t_min, t_max: noising timesteps ``[t_min, t_max)`` of the generator's SJD loss (OSEDiff: 20, 980).
        weighting: ``omega(t)``: ``dmd`` (``1 / mean|z - x0_real|``, DMD/OSEDiff) or ``none``.
        guidance_scale: classifier-free guidance of the real TRU (1: a single conditional pass).
        real_tru: what of the real TRU trains on ground-truth latents: ``rts`` (its RTS modules; the SD
            prior stays as it is), ``rts+lora`` (RTS and a LoRA of ``lora.rank``) or ``frozen``.
    """

    weight: float = 1.0
    temporal_weight: float = 0.5
    latent: Literal["reencode", "generator"] = "reencode"
    t_min: int = 20
    t_max: int = 980
    weighting: Literal["dmd", "none"] = "dmd"
    guidance_scale: float = 1.0
    real_tru: Literal["rts", "rts+lora", "frozen"] = "rts"

    def check(self) -> None:
        if self.weight < 0 or self.temporal_weight < 0:
            raise ConfigError(f"SJD weights must be >= 0, got {self.weight}, {self.temporal_weight}")
        if not 0 <= self.t_min < self.t_max:
            raise ConfigError(f"SJD needs 0 <= t_min < t_max, got {self.t_min}, {self.t_max}")


@dataclass(frozen=True)
class GeneratorLossOptions(OptionGroup):
    """The generator's other losses (Sec. 4.1.2 names them; weights from OSEDiff and ProPainter).

    Args:
        mse: weight of the pixel MSE (OSEDiff 1).
        perceptual: weight of the perceptual distance (OSEDiff's LPIPS 2).
        perceptual_kind: ``lpips-vgg`` (OSEDiff), ``lpips-alex``, ``dists`` or ``tiny`` (offline, tests).
        adversarial: weight of the temporal PatchGAN loss (ProPainter 0.01).
        gan_loss: ``hinge`` (ProPainter), ``non-saturating`` or ``least-squares``.
    """

    mse: float = 1.0
    perceptual: float = 2.0
    perceptual_kind: Literal["lpips-vgg", "lpips-alex", "dists", "tiny"] = "tiny"
    adversarial: float = 0.01
    gan_loss: Literal["hinge", "non-saturating", "least-squares"] = "hinge"

    def check(self) -> None:
        if min(self.mse, self.perceptual, self.adversarial) < 0:
            raise ConfigError("loss weights must be >= 0")


@dataclass(frozen=True)
class TAIOptions(OptionGroup):
    """Temporally asynchronous inference (Sec. 3.5) and tiling, as the release's inference defaults.

    Args:
        frames_per_batch: ``b``: frames per call of the spatial layers of the VAE encoder, UNet and VAE
            decoder (release 1 each); RTS propagation always sees the whole interval. 0: all frames at once.
        interval_frames, interval_min_size: windows longer than ``interval_frames`` whose upsampled height or
            width exceeds ``interval_min_size`` pixels are restored in consecutive intervals of that many
            frames (release: 30 above 1440 px); 0 frames never splits.
        latent_tile, latent_tile_overlap: UNet tiles in latent pixels, Gaussian-blended (release 96, 32).
        decoder_tile, decoder_tile_overlap: VAE decoder tiles in latent pixels (release 96, 10).
        encoder_tile, encoder_tile_overlap: VAE encoder tiles in image pixels (release 3000, 32).
        A stage is tiled only when ``height * width > tile**2`` (the release's rule).
    """

    frames_per_batch: int = 1
    interval_frames: int = 30
    interval_min_size: int = 1440
    latent_tile: int = 96
    latent_tile_overlap: int = 32
    decoder_tile: int = 96
    decoder_tile_overlap: int = 10
    encoder_tile: int = 3000
    encoder_tile_overlap: int = 32

    def check(self) -> None:
        if self.frames_per_batch < 0 or self.interval_frames < 0 or self.interval_min_size < 0:
            raise ConfigError("frames_per_batch, interval_frames and interval_min_size must be >= 0")
        for name in ("latent", "decoder", "encoder"):
            tile, overlap = getattr(self, f"{name}_tile"), getattr(self, f"{name}_tile_overlap")
            if tile < 1 or not 0 <= overlap < tile:
                raise ConfigError(
                    f"{name}_tile must be >= 1 and {name}_tile_overlap in [0, tile), got {tile}, {overlap}"
                )
