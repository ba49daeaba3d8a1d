"""DiffVSR's option groups: temporal layers, sampling, interweaved latent transition, text, training.

Every default is the value that takes effect (shown by ``--print_config``); where the paper and the authors' release
differ, the release is the default when its weights need it and the paper's reading is the other choice
(docs/methods/diffvsr.md lists each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vsr_core.errors import ConfigError
from vsr_core.options import ColorFix, OptionGroup, SamplingOptions

__all__ = [
    "RELEASE_NEGATIVE_PROMPT",
    "RELEASE_PROMPT_SUFFIX",
    "DiffVSRSampling",
    "ILTOptions",
    "TemporalLayers",
    "TextOptions",
    "TrainingOptions",
]

#: What the release appends to every caption (``inference_tile.py``), and its negative prompt.
RELEASE_PROMPT_SUFFIX = "clear, high quality, high-resolution, 4K"
RELEASE_NEGATIVE_PROMPT = "low quality, blurry, low-resolution, noisy, unsharp, weird textures, worst quality"


@dataclass(frozen=True)
class TemporalLayers(OptionGroup):
    """The temporal layers added to the image UNet (all zero-initialised; the release's layout by default).

    Args:
        resnet_3d: a (3,1,1) 3D residual block before every spatial transformer (release ``resblock_temporal``).
        temporal_modules: a 3D residual module after every down block, the mid block and every up block
            (release ``TemporalModule3D``: kernel-5 temporal and 3x3 spatial residual blocks, zero 1x1 conv).
        msta: multi-scale temporal attention in every spatial transformer block (Sec. 3.4, Eq. 3-4).
        msta_alpha: Eq. 4's fusion weight ``alpha``.
        msta_norm: MSTA's normalisation, ``layer`` (release) or ``ada`` (the paper's AdaLN on the timestep).
        shift_attention: add a temporally shifted attention (fold 1/2) to each temporal module; the release's
            config names the shift, but with ``attention_block_types ["", ""]`` it builds no such attention.
        group_norm: ``frame`` normalises the image UNet's resnets per frame, as the image model does (so the
            inflated model reproduces it exactly at initialisation); ``clip`` over all frames of a clip, as the
            release's 5D group norms do (use it with the released weights).
    """

    resnet_3d: bool = True
    temporal_modules: bool = True
    msta: bool = True
    msta_alpha: float = 0.5
    msta_norm: Literal["layer", "ada"] = "layer"
    shift_attention: bool = False
    group_norm: Literal["frame", "clip"] = "frame"


@dataclass(frozen=True)
class DiffVSRSampling(SamplingOptions):
    """How ``restore`` samples by default: the release's settings.

    Args:
        num_inference_steps: DDIM steps on the SD x4 upscaler's grid (50: ``[981, 961, ..., 1]``).
        guidance_scale: classifier-free guidance (release 5; 1 runs one conditional pass).
        sampler: DDIM (the SD x4 upscaler's own scheduler class).
        color_fix: colour correction against the upsampled input (the release does none).
        noise_level: the noise level the LR input is noised at and conditioned on (release 50, at most 350).
        eta: DDIM's eta (0: deterministic steps, as the release).
    """

    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    sampler: Literal["ddim"] = "ddim"
    color_fix: ColorFix = "none"
    noise_level: int = 50
    eta: float = 0.0

    def check(self) -> None:
        super().check()
        if not 0 <= self.noise_level <= 350:
            raise ConfigError(
                f"noise_level must be in [0, 350] (the SD x4 upscaler's max_noise_level), got {self.noise_level}"
            )
        if self.eta < 0:
            raise ConfigError(f"eta must be >= 0, got {self.eta}")


@dataclass(frozen=True)
class ILTOptions(OptionGroup):
    """Interweaved latent transition with noise rescheduling (Sec. 3.3, Eq. 2): DiffVSR's long-video scheme.

    Overlapping windows are denoised, and the latents of each overlap are fused as
    ``alpha_j F_i[s + j] + (1 - alpha_j) F_{i+1}[j]``: before every DDIM step and before decoding (default, all
    windows advanced together by the engine's latent window protocol), or once after each window is fully denoised
    (the release). The initial noise of a window reuses the previous window's: the overlap frames keep theirs, the
    new frames take the noise of the frames that left, in a random order.

    Args:
        window: frames per window (``N_test = 8``).
        overlap: frames shared by consecutive windows (``P = 4``); ``window`` must be at least ``2 * overlap``.
        weights: ``paper`` (``alpha_j = 1 - j / (P - 1)``) or ``release`` (``0.2 + 0.6 * (1 - j / (P - 1))``).
        noise: ``rescheduled`` (above) or ``independent`` (the new frames of a window get fresh noise; shared frames
            still share theirs).
        fuse: ``every_step`` (the paper: Eq. 2 at every solver step, :mod:`diffvsr.ilt_latent`) or
            ``after_denoising`` (the release: Eq. 2 once per overlap after each window's solver, :mod:`diffvsr.ilt`).
    """

    window: int = 8
    overlap: int = 4
    weights: Literal["paper", "release"] = "paper"
    noise: Literal["rescheduled", "independent"] = "rescheduled"
    fuse: Literal["every_step", "after_denoising"] = "every_step"

    def check(self) -> None:
        if self.overlap < 1:
            raise ConfigError(f"ILT needs windows that overlap: overlap must be >= 1, got {self.overlap}")
        if self.window < 2 * self.overlap:
            raise ConfigError(
                f"ILT window {self.window} is shorter than twice the overlap {self.overlap}: each overlap is fused "
                f"between two windows only, so use overlap <= {self.window // 2} (or a longer window)"
            )


@dataclass(frozen=True)
class TextOptions(OptionGroup):
    """Text conditioning (OpenCLIP-H through the core's CLIP path) and the release's prompt templates.

    Args:
        encoder: ``clip`` (the ``text_encoder/`` + ``tokenizer/`` of ``pretrained``), ``empty`` (the real embedding
            of ``""`` for every clip) or ``none`` (zero embeddings: no text encoder, tiny presets).
        prompt_suffix: appended to every prompt at inference (the release's ``", clear, high quality, ..."``).
        negative_prompt: the unconditional branch of classifier-free guidance (the release's).
        ignore_prompts: without a text encoder, drop given prompts with one warning instead of refusing them.
        cache: a caption-embedding cache directory (``vsr precompute``); ``None``: no cache.
    """

    encoder: Literal["none", "clip", "empty"] = "none"
    prompt_suffix: str = RELEASE_PROMPT_SUFFIX
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT
    ignore_prompts: bool = True
    cache: str | None = None


@dataclass(frozen=True)
class TrainingOptions(OptionGroup):
    """What trains and how the LR input is noised in training (Sec. 3.1-3.2).

    Args:
        trainable: ``temporal`` (the temporal layers only: PLS stages 1 and 2), ``temporal+resnets`` (also the image
            UNet's ResNet blocks and input convolution), ``spatial`` (the image UNet only: image pretraining of a tiny
            model), ``all`` (PLS stage 3).
        lr_noise: the LR noise level per training clip, ``uniform`` in ``[0, max_noise_level)`` (how the SD x4
            upscaler was trained) or ``fixed`` at the sampling ``noise_level``.
        max_noise_level: the upper end of ``uniform`` levels (350, the upscaler's ``max_noise_level``).
    """

    trainable: Literal["temporal", "temporal+resnets", "spatial", "all"] = "all"
    lr_noise: Literal["uniform", "fixed"] = "uniform"
    max_noise_level: int = 350

    def check(self) -> None:
        if not 1 <= self.max_noise_level <= 350:
            raise ConfigError(f"max_noise_level must be in [1, 350], got {self.max_noise_level}")
