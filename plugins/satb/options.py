"""SATB-VR's knobs, grouped: every default is the paper's recipe (Sec. 3.3, 4.1) or the authors' release.

Each group is one init argument of :class:`~satb.SATBVR` (``--model.training.blend none`` on the
command line, a nested mapping in YAML) and shows its real default in ``--print_config``. The tiny
CPU recipe sets some of them differently in ``configs/tiny.yaml``; the paper-scale one is
``configs/cogvideox1.5-5b.yaml``.

===============  ============================================================================
group            what it sets
===============  ============================================================================
``training``     how training inputs are drawn (Sec. 3.3), the blend (Eq. 4), Eq. 5's weighting
``predictor_options``  the auxiliary predictor F_p (Sec. 3.2, Eq. 3)
``denoiser_options``   the LQ-conditioned denoiser F_d (Sec. 3.2)
``ddc``          the Denoiser-Driven Consistency loss (Eq. 6, 7)
``lora``         LoRA of predictor and denoiser blocks
``sampling``     what ``restore`` does by default (the release's sampler, guidance and template)
``text``         the text conditioning (T5, the release's precomputed embeddings, or none)
``vae_tiling``   spatial tiling of the VAE
===============  ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from satb.schedule import max_inference_steps
from vsr_core.errors import ConfigError
from vsr_core.options import LoRAOptions, OptionGroup, SamplingOptions, TilingOptions

__all__ = [
    "DDCOptions",
    "DenoiserOptions",
    "PredictorOptions",
    "SATBLoRA",
    "SATBSampling",
    "SATBText",
    "SATBTiling",
    "TrainingRecipe",
    "check_step_count",
]

BlendKind = Literal["satb", "none", "linear", "cosine"]


def check_step_count(name: str, steps: int) -> None:
    """One line when ``steps`` is not a step count the jump-start schedules (Table 4) can place."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= max_inference_steps():
        raise ConfigError(f"{name} must be an integer between 1 and {max_inference_steps()}, got {steps!r}")


@dataclass(frozen=True)
class TrainingRecipe(OptionGroup):
    """How one training step draws its inputs (Sec. 3.3) and weighs the diffusion loss.

    Args:
        timestep_sampling: ``paper``: ``τ_s ~ U{0..tau_max−1}``, ``t ~ U{0..τ_s}`` (Sec. 3.3, 0-based).
            ``jump_start``: ``τ_s = t =`` the solver's start timestep for a step count drawn from
            ``train_step_counts`` (there ``x_b = x_p``, so the blend plays no part); a model trained
            so restores only from those start points.
        tau_max: ``paper`` sampling draws ``τ_s`` below this (1000 = every training timestep, as the
            paper); restoring with a step count that starts at or above it is refused.
        train_step_counts: the step counts ``jump_start`` trains the start points of.
        blend: ``satb`` (Eq. 4) or the Table 2 ablations ``none`` (c), ``linear`` (d), ``cosine`` (e).
        diff_weighting: ``v``: Eq. 5 as written, the mean squared v error. ``x0``: each sample's
            error times ``1 − ᾱ_t``, which is the squared error of the clean estimate the v
            prediction implies (a v error of ``e`` is an x0 error of ``√(1−ᾱ_t) e``); it stops small
            ``t`` from dominating the loss of a model that predicts x0.
        diff_grad_to_predictor: let L_diff back-propagate into the predictor through ``x_b`` (Eq. 4).
    """

    timestep_sampling: Literal["paper", "jump_start"] = "paper"
    tau_max: int = 1000
    train_step_counts: tuple[int, ...] = (1, 5)
    blend: BlendKind = "satb"
    diff_weighting: Literal["v", "x0"] = "v"
    diff_grad_to_predictor: bool = True

    def check(self) -> None:
        if self.tau_max < 1:
            raise ConfigError(f"training.tau_max must be >= 1, got {self.tau_max}")
        if not self.train_step_counts:
            raise ConfigError("training.train_step_counts must name at least one step count, e.g. [1, 5]")
        for steps in self.train_step_counts:
            check_step_count("training.train_step_counts", steps)


@dataclass(frozen=True)
class PredictorOptions(OptionGroup):
    """The auxiliary predictor ``x_p = F_p(x_lq, τ_s)`` (Sec. 3.2, Eq. 3): a copy of the base transformer.

    Args:
        enabled: ``False`` jump-starts from the LQ latent itself (Table 2 (f)).
        parameterization: ``v_at_lq`` (the release: the transformer reads ``x_lq`` as a noisy sample
            at ``timestep`` and its v-prediction becomes ``x_p``), ``x0`` (the output is ``x_p``) or
            ``residual`` (``x_p = x_lq + output``, zero-initialized output layer: starts at ``x_lq``).
        timestep: the timestep the transformer reads: 399 (the release) or ``tau_s`` (the paper's
            ``F_p(x_lq, τ_s)``).
        finetune: ``lora`` (the paper) or ``full``.
    """

    enabled: bool = True
    parameterization: Literal["v_at_lq", "x0", "residual"] = "v_at_lq"
    timestep: int | Literal["tau_s"] = 399
    finetune: Literal["lora", "full"] = "lora"

    def check(self) -> None:
        if self.timestep != "tau_s" and (isinstance(self.timestep, bool) or not isinstance(self.timestep, int)):
            raise ConfigError(
                f"predictor_options.timestep must be an integer timestep or tau_s, got {self.timestep!r}"
            )


@dataclass(frozen=True)
class DenoiserOptions(OptionGroup):
    """The LQ-conditioned denoiser ``F_d`` (Sec. 3.2): base transformer + LoRA + LQ ControlNet.

    Args:
        lq_condition: the ControlNet branch and LQ patch embedding; ``False`` is Table 2 (a), (b).
        output: what the transformer outputs, always converted to v for Eq. 5 and the solver: ``v``
            (CogVideoX's v-prediction), ``x0`` (a clean estimate) or ``lq_residual``
            (``x0 = x_lq + output``, zero-initialized output layer: an untrained model restores
            the bicubic upsampling; needs ``lq_condition``).
        finetune: the base blocks: ``lora`` (the paper), ``full`` or ``none`` (frozen, Table 2 (a));
            the ControlNet, connectors and LQ embedding always train.
    """

    lq_condition: bool = True
    output: Literal["v", "x0", "lq_residual"] = "v"
    finetune: Literal["lora", "full", "none"] = "lora"

    def check(self) -> None:
        if self.output == "lq_residual" and not self.lq_condition:
            raise ConfigError(
                "denoiser_options.output=lq_residual feeds the LQ latent to the denoiser; it needs lq_condition=true"
            )


@dataclass(frozen=True)
class DDCOptions(OptionGroup):
    """Denoiser-Driven Consistency (Eq. 6) and its weight in the total loss (Eq. 7).

    Args:
        weight: ``λ`` of Eq. 7 (1 in the paper); 0 disables DDC (Table 2 (g)).
        blocks: the denoiser blocks whose video-token states are ``Φ`` (negative counts from the
            end), or ``quarters``: the blocks at 1/4, 1/2, 3/4 of the depth and the last
            (9, 20, 31, 41 of CogVideoX1.5-5B's 42).
    """

    weight: float = 1.0
    blocks: tuple[int, ...] | Literal["quarters"] = "quarters"

    def check(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"ddc.weight must be >= 0, got {self.weight}")
        if self.blocks != "quarters" and not self.blocks:
            raise ConfigError("ddc.blocks must name at least one block (or be quarters)")

    def resolve(self, depth: int) -> list[int]:
        """The block indices ``0 … depth−1`` this option names for a denoiser of ``depth`` blocks."""
        if self.blocks == "quarters":
            return sorted({max(0, round(depth * f) - 1) for f in (0.25, 0.5, 0.75, 1.0)})
        if any(not -depth <= b < depth for b in self.blocks):
            raise ConfigError(f"ddc.blocks {list(self.blocks)} must index the denoiser's {depth} blocks")
        resolved = sorted({b % depth for b in self.blocks})
        if len(resolved) != len(set(self.blocks)):
            raise ConfigError(f"ddc.blocks {list(self.blocks)} names a block twice")
        return resolved


@dataclass(frozen=True)
class SATBLoRA(LoRAOptions):
    """LoRA of the predictor's and the denoiser's blocks: attention and feed-forward projections.

    The connectors, embeddings and the ControlNet train fully. The release's LoRA files carry their
    own rank and alpha and load as they are.
    """

    rank: int = 64
    alpha: float = 64.0
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")


@dataclass(frozen=True)
class SATBSampling(SamplingOptions):
    """What :meth:`~satb.SATBVR.restore` does by default: the authors' release inference.

    Args:
        num_inference_steps: denoiser evaluations ``s`` (5, ``τ_s = 399``, Sec. 4.1; Table 4).
        guidance_scale: classifier-free guidance against the release's negative prompt (6 in the
            release; 1 disables it). Without a text encoder or the release's embeddings it has no
            effect (said once).
        sampler: ``cogvideox_dpm`` (CogVideoX's stochastic DPM-Solver++, the release's) or
            ``dpmsolver++`` (diffusers' deterministic multistep DPM-Solver++).
        color_fix: ``wavelet``: the decoded video is clamped to [-1, 1] and takes its low
            frequencies from the upsampled input (the release); ``none``.
        prompt_template: append the release's quality template to the caption (T5 only).
        vae_posterior: ``mode`` of the VAE encoder's posterior, or ``sample`` from it (the release
            samples; with the weight-free tiny codec both are the same).
    """

    num_inference_steps: int = 5
    guidance_scale: float = 6.0
    sampler: Literal["cogvideox_dpm", "dpmsolver++"] = "cogvideox_dpm"
    color_fix: Literal["wavelet", "none"] = "wavelet"
    prompt_template: bool = True
    vae_posterior: Literal["mode", "sample"] = "mode"

    def check(self) -> None:
        super().check()
        check_step_count("sampling.num_inference_steps", self.num_inference_steps)


#: The authors' release samples this way (``inference.py`` of github chenxx89/SATB-VR).
RELEASE_SAMPLING = {"sampler": "cogvideox_dpm", "guidance_scale": 6.0, "prompt_template": True, "color_fix": "wavelet"}


@dataclass(frozen=True)
class SATBText(OptionGroup):
    """Text conditioning (the paper: CogVLM2-Video captions through the base model's T5).

    Args:
        encoder: ``auto`` picks ``t5`` when ``pretrained`` has ``text_encoder/`` + ``tokenizer/``,
            else ``precomputed`` when ``satb_weights`` has the release's two embedding files, else
            ``none`` (an all-zero empty prompt).
        ignore_prompts: without a text encoder, drop given prompts (one warning) instead of failing.
        cache: a caption-embedding cache directory (T5 only; ``vsr precompute``); ``null``: no cache.
    """

    encoder: Literal["auto", "t5", "precomputed", "none"] = "auto"
    ignore_prompts: bool = True
    cache: str | None = None


@dataclass(frozen=True)
class SATBTiling(TilingOptions):
    """Spatial tiling of the VAE encode and decode, in pixels; ``0`` encodes whole frames.

    The paper-scale config tiles 512-px tiles with 64 px of overlap (1024² frames).
    """

    tile_size: int = 0
    tile_overlap: int = 0
