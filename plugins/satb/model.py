"""``SATBVR``: the SATB-VR method (Bai et al., 2026) as a :class:`~vsr_core.method.VSRMethod`.

Read it top to bottom: the constructor builds the networks of Sec. 3.2, :meth:`SATBVR.compute_losses`
is one training step (Sec. 3.3: Eq. 4, 5, 6, 7) and :meth:`SATBVR.restore` is the few-step
inference of Fig. 2a in three parts, :meth:`~SATBVR.prepare_window` (encode, predictor, jump-start
state of Eq. 3), :meth:`~SATBVR.denoise_step` (one solver step) and :meth:`~SATBVR.finish_window`
(decode, colour fix). Every knob is in an option group of :mod:`satb.options`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from diffusers import CogVideoXDPMScheduler
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from lightning.pytorch.utilities import rank_zero_info

from satb.build import (
    add_block_lora,
    apply_trainability,
    build_controlnet,
    build_denoiser,
    build_predictor_transformer,
    cast_frozen,
    is_meta,
    random_base,
)
from satb.controlnet import SATBControlNet
from satb.denoiser import pad_latent_frames, rotary_embeddings
from satb.legacy import FLAT_ARGUMENTS, upgrade_flat_arguments
from satb.losses import ddc_loss, diffusion_loss, input_only_loss
from satb.options import (
    RELEASE_SAMPLING,
    DDCOptions,
    DenoiserOptions,
    PredictorOptions,
    SATBLoRA,
    SATBSampling,
    SATBText,
    SATBTiling,
    TrainingRecipe,
)
from satb.predictor import AuxiliaryPredictor
from satb.presets import Preset, get_preset
from satb.schedule import jump_start_timesteps, sample_jump_start_timesteps, sample_training_timesteps, satb_blend
from satb.solver import cogvideox_dpm_step
from satb.text import POSITIVE_TEMPLATE, build_prompt_encoder
from satb.weights import (
    EXTRA_MODULES,
    check_release_folder,
    load_base_transformer,
    load_controlnet_folder,
    load_release_parts,
    save_release,
)
from vsr_core.benchmark import PaperBenchmark
from vsr_core.diffusion import DDPMSchedule
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.frames import frames_at_most
from vsr_core.inference import LatentLayout, sample_window, wavelet_color_fix
from vsr_core.latent import CogVideoXCodec, LatentCodec, PixelUnshuffleCodec
from vsr_core.method import VSRMethod
from vsr_core.pretrained import as_dtype
from vsr_core.text import PromptEncoder, cfg_active, cfg_batch, cfg_split_combine
from vsr_core.video_ops import pad_spatial, pad_temporal, padded_size, upsample_frames

__all__ = ["SATBVR", "WindowState"]

TorchDtype = Literal["float32", "bfloat16", "float16"]


@dataclass
class WindowState:
    """What one window (or latent tile) carries from :meth:`SATBVR.prepare_window` through the solver steps to the decode.

    ``latents`` is in the engine's order ``[B, c, t, h, w]`` (``t`` latent frames of the window).
    The transformer reads CogVideoX-ordered ``[B, F, C, h, w]`` with ``prepended`` copies of the first
    latent frame in front (whole temporal patches); those frames belong to this window alone and live
    in ``prefix``. ``prefix``, ``solver`` and ``previous_x0`` change at every step; the engine fuses
    only ``latents`` across overlapping tiles and windows, so ``previous_x0`` (CogVideoX DPM-Solver++'s
    carried clean estimate; the release fuses it across tiles too) and the multistep solver's history
    stay per tile.
    """

    latents: torch.Tensor  #: the jump-start state ``x_{τ_s}`` of Eq. 3, fp32 ``[B, c, t, h, w]``
    num_steps: int  #: solver steps (``len(timesteps)``)
    prefix: torch.Tensor  #: the prepended latent frames, fp32 ``[B, prepended, C, h, w]`` at the current step
    x_lq: torch.Tensor  #: the LQ latent ``[B, F, C, h, w]`` (the denoiser's condition)
    text: torch.Tensor  #: ``[B, L, D]``, or ``[2B, L, D]`` (negative; positive) with guidance
    rotary: Any
    timesteps: list[int]  #: ``[τ_s, …, τ_1]`` (Table 4)
    solver: Any  #: the diffusers scheduler stepping through ``timesteps``
    guidance_scale: float
    guided: bool
    generator: torch.Generator | None
    lq: torch.Tensor  #: the LQ window ``[B,3,T,h,w]``; its upsampling is the colour reference
    frames: int  #: output frames ``T``
    height: int  #: output height ``h·scale``
    width: int  #: output width ``w·scale``
    prepended: int  #: latent frames prepended for the temporal patches
    color_fix: str
    previous_x0: torch.Tensor | None = None  #: CogVideoX DPM-Solver++'s carried clean estimate ``[B, F, C, h, w]``


class SATBVR(VSRMethod):
    """SATB-VR: few-step video restoration with an auxiliary predictor, SATB and the DDC loss.

    ``restore(lq [B,3,T,h,w], prompt, num_inference_steps=...)`` → ``[B,3,T,h*scale,w*scale]`` in ``[-1, 1]``;
    any ``T`` (padded to the codec's frame rule and cropped back). Components: ``predictor`` (F_p),
    ``denoiser`` (main transformer of F_d), ``controlnet`` (LQ branch of F_d), ``codec``,
    ``prompt_encoder``, ``schedule``.

    The defaults are the paper's recipe (Sec. 3.3, 4.1) and the authors' release inference; the
    tiny CPU recipe is ``configs/tiny.yaml``, the paper-scale one ``configs/cogvideox1.5-5b.yaml``.

    Args:
        scale: upscaling factor (the LQ video is bicubic-upsampled before encoding).
        preset: the architecture: ``tiny`` (CPU, weight-free codec) or ``real`` (CogVideoX1.5-5B
            shapes, random weights unless ``pretrained`` is given).
        pretrained: a CogVideoX diffusers folder (``transformer/``, ``vae/``, ``scheduler/``, and
            ``text_encoder/`` + ``tokenizer/`` for T5 prompts) or hub id; ``null``: random weights.
        satb_weights: the authors' release folder (``controlnet/``, ``lora_*/``, ``connectors.pt``, ...)
            or a ``vsr export`` of this class; ``null``: none.
        torch_dtype: dtype of the *frozen* weights (``bfloat16`` halves host memory at full size);
            trainable ones stay fp32 and ``restore`` computes in this dtype.
        recipe: how training draws its inputs and weighs L_diff (:class:`~satb.options.TrainingRecipe`).
        predictor_options: the auxiliary predictor (:class:`~satb.options.PredictorOptions`).
        denoiser_options: the LQ-conditioned denoiser (:class:`~satb.options.DenoiserOptions`).
        ddc: the DDC loss (:class:`~satb.options.DDCOptions`).
        lora: LoRA of predictor and denoiser (:class:`~satb.options.SATBLoRA`).
        sampling: what ``restore`` does by default (:class:`~satb.options.SATBSampling`).
        text: the text conditioning (:class:`~satb.options.SATBText`).
        vae_tiling: spatial tiling of the VAE (:class:`~satb.options.SATBTiling`).
    """

    fsdp_block_classes = (CogVideoXBlock,)
    export_init_arg = "satb_weights"
    #: The tiny CPU recipe of ``configs/tiny-paper.yaml`` (its model part: the paper's sampling, so the
    #: smoke tests run SATB's blend), restoring with 2 steps.
    tiny_init_args: ClassVar[dict[str, Any]] = {
        "scale": 4,
        "preset": "tiny",
        "learning_rate": 3e-4,
        "recipe": {"timestep_sampling": "paper", "tau_max": 400, "diff_grad_to_predictor": False},
        "predictor_options": {"parameterization": "residual", "finetune": "full"},
        "denoiser_options": {"output": "lq_residual", "finetune": "full"},
        "sampling": {"num_inference_steps": 2, "guidance_scale": 1.0, "sampler": "dpmsolver++"},
    }
    #: Output-pixel tiles (side, overlap) ``vsr restore`` cuts larger frames into: the release's 1024 px
    #: with stride 768 at full size; 64 px with stride 48 (the same 3/4) on the CPU-sized tiny preset,
    #: about the 48-px crops it trains on.
    OUTPUT_TILES: ClassVar[dict[str, tuple[int, int]]] = {"full": (1024, 256), "tiny": (64, 16)}

    @property
    def latent_layout(self) -> LatentLayout:
        """The engine's latent protocol: the codec's factors, tile sides in whole transformer patches.

        ``vsr restore`` fuses every solver step across overlapping latent tiles and windows
        (the release tiles latents and blends them after each step); output pixels per latent
        pixel are the codec's (the LQ video is upsampled before encoding).
        """
        return LatentLayout.from_codec(self.codec, latent_multiple=int(self.transformer_config.patch_size))

    @property
    def native_tile(self) -> int:
        """LQ tile side of the engine's automatic tiling (:attr:`OUTPUT_TILES` divided by the scale)."""
        full = self.hparams.get("preset") == "real" or bool(self.hparams.get("pretrained"))
        return self.OUTPUT_TILES["full" if full else "tiny"][0] // self.scale

    @property
    def native_tile_overlap(self) -> int:
        """LQ pixels neighbouring native tiles share."""
        full = self.hparams.get("preset") == "real" or bool(self.hparams.get("pretrained"))
        return self.OUTPUT_TILES["full" if full else "tiny"][1] // self.scale

    # Table 3: runtime per frame on an NVIDIA H20 at 1024^2 (1 and 5 steps); the training step at the
    # paper's crop (Sec. 4.1: 1024^2 clips, 17-37 frames; 25 as the config).
    paper_benchmarks: ClassVar[tuple[PaperBenchmark, ...]] = tuple(
        PaperBenchmark(
            f"{steps} step{'s' * (steps > 1)}, {frames}x1024^2",
            "infer",
            frames,
            1024,
            1024,
            steps,
            seconds,
            "frame",
            "H20",
            {"preset": "real"},
            "Table 3",
        )
        for steps, seconds in ((1, 1.106), (5, 3.247))
        for frames in (17, 37)
    ) + (
        PaperBenchmark(
            "train step, 25x1024^2", "train", 25, 1024, 1024, init_args={"preset": "real"}, source="Sec. 4.1"
        ),
    )

    def __init__(
        self,
        scale: int = 4,
        preset: Literal["tiny", "real"] = "tiny",
        pretrained: str | None = None,
        satb_weights: str | None = None,
        torch_dtype: TorchDtype = "float32",
        recipe: TrainingRecipe = TrainingRecipe(),
        predictor_options: PredictorOptions = PredictorOptions(),
        denoiser_options: DenoiserOptions = DenoiserOptions(),
        ddc: DDCOptions = DDCOptions(),
        lora: SATBLoRA = SATBLoRA(),
        sampling: SATBSampling = SATBSampling(),
        text: SATBText = SATBText(),
        vae_tiling: SATBTiling = SATBTiling(),
        **kwargs: Any,
    ) -> None:
        flat = {name: kwargs.pop(name) for name in FLAT_ARGUMENTS if name in kwargs}
        if flat:  # a checkpoint or export written before the option groups: the same model, read as it was
            groups = upgrade_flat_arguments(flat, preset, pretrained, get_preset(preset).controlnet_layers)
            recipe, predictor_options, denoiser_options = (
                groups["recipe"],
                groups["predictor_options"],
                groups["denoiser_options"],
            )
            ddc, lora, sampling, text, vae_tiling = (
                groups[k] for k in ("ddc", "lora", "sampling", "text", "vae_tiling")
            )
            torch_dtype = torch_dtype or "float32"
        super().__init__(scale=scale, **kwargs)
        self.spec: Preset = get_preset(preset)
        # The release's temporal tiles: 80 frames with a stride of 64, so a fifth of a window is shared
        # (16 of 81 frames at full size: windows start 64 frames apart; 3 of the tiny preset's 17).
        self.temporal_overlap = (self.spec.temporal_window - 1) // 5
        # RoPE tables by (grid, device, inference mode): a plain dict, never in a state dict (see _rotary)
        self._rotary_cache: dict[tuple, Any] = {}
        self.recipe = TrainingRecipe.coerce(recipe)
        self.predictor_options = PredictorOptions.coerce(predictor_options)
        self.denoiser_options = DenoiserOptions.coerce(denoiser_options)
        self.ddc = DDCOptions.coerce(ddc)
        self.lora = SATBLoRA.coerce(lora)
        self.sampling = SATBSampling.coerce(sampling)
        self.text = SATBText.coerce(text)
        self.vae_tiling = SATBTiling.coerce(vae_tiling)
        if torch_dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"torch_dtype must be float32, bfloat16 or float16; got {torch_dtype!r}")
        self.frozen_dtype = as_dtype(torch_dtype)
        release = (
            check_release_folder(
                satb_weights, self.denoiser_options.lq_condition, self.predictor_options.enabled, type(self)
            )
            if satb_weights
            else None
        )
        self._said: set[str] = set()  # one-time notes already given

        # The base model's noise schedule (v-prediction, zero terminal SNR) and its VAE (or the tiny codec).
        self.schedule = DDPMSchedule.from_pretrained(pretrained) if pretrained else DDPMSchedule("cogvideox")
        if self.schedule.prediction_type != "v_prediction":
            raise PretrainedError(f"{pretrained}/scheduler is not a v-prediction schedule; SATB-VR needs CogVideoX's")
        if self.recipe.tau_max > self.schedule.num_train_timesteps:
            raise ConfigError(
                f"recipe.tau_max must be in [1, {self.schedule.num_train_timesteps}], got {self.recipe.tau_max}"
            )
        self.codec = self._build_codec(pretrained, torch_dtype)

        # The base transformer, in the dtype its frozen parts keep (fp32 where a copy of it trains fully).
        trains_base_fully = self.denoiser_options.finetune == "full" or (
            self.predictor_options.enabled and self.predictor_options.finetune == "full"
        )
        load_dtype = torch.float32 if trains_base_fully else self.frozen_dtype
        base = (
            load_base_transformer(pretrained, load_dtype)
            if pretrained
            else random_base(self.spec, self.codec.latent_channels)
        )
        if base.config.in_channels != self.codec.latent_channels:
            raise PretrainedError(
                f"{pretrained}/transformer reads {base.config.in_channels} channels, its VAE gives {self.codec.latent_channels}"
            )
        self.transformer_config = base.config
        self.ddc_blocks = self.ddc.resolve(base.config.num_layers)
        self.prompt_encoder = self._build_prompts(pretrained, release, torch_dtype)

        # F_p (Sec. 3.2): a copy of the base; F_d: the base itself + LQ modules; the LQ ControlNet.
        self.predictor = None
        if self.predictor_options.enabled:
            transformer = build_predictor_transformer(base)
            self.predictor = AuxiliaryPredictor(
                transformer, self.predictor_options.parameterization, self.predictor_options.timestep
            )
        self.controlnet = None
        if self.denoiser_options.lq_condition:
            self.controlnet = (
                self._load_release_controlnet(release, base) if release else build_controlnet(base, self.spec)
            )
        self.denoiser = build_denoiser(base, self.spec, self.denoiser_options.lq_condition)
        del base
        self._zero_residual_heads()

        # Which weights train: LoRA on the blocks (the paper), or full; then the release's / export's weights.
        if release is None:
            if self.denoiser_options.finetune == "lora":
                add_block_lora(self.denoiser, self.lora)
            if self.predictor is not None and self.predictor_options.finetune == "lora":
                add_block_lora(self.predictor.transformer, self.lora)
        else:
            self._release_full_parts = load_release_parts(self, release)
        apply_trainability(self.denoiser, self.denoiser_options.finetune, always_trainable=EXTRA_MODULES)
        if self.predictor is not None:
            apply_trainability(self.predictor, self.predictor_options.finetune)
        if self.controlnet is not None:
            self.controlnet.requires_grad_(True)
        cast_frozen([self.predictor, self.denoiser, self.controlnet], self.frozen_dtype)
        if pretrained:  # the frozen base weights (~22 GB at full size) are re-read from `pretrained`
            self.mark_rebuildable(self.codec, self.predictor, self.denoiser, self.controlnet)

    @classmethod
    def init_argument_names(cls) -> list[str]:
        """The init arguments, plus the flat ones of records written before the option groups (:mod:`satb.legacy`)."""
        return [*super().init_argument_names(), *FLAT_ARGUMENTS]

    @property
    def temporal_window(self) -> int:  # type: ignore[override]
        """Frames per window of long-video inference: the preset's (81 at full size, 17 tiny)."""
        return self.spec.temporal_window

    # ------------------------------------------------------------------ training (Sec. 3.3)

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"diff": L_diff (Eq. 5), "ddc": L_ddc (Eq. 6, when enabled), "total": Eq. 7}`` for one batch.

        ``ddc`` is the (detached) loss value; its gradient to the predictor is inside ``total``.
        """
        with self._compute_precision():
            # 1. Latents of the clip and of its bicubic-upsampled LQ input ([B, F, C, h, w]).
            hq, lq = self._training_frames(batch["hq"]), self._training_frames(batch["lq"])
            x_gt, _ = self._encode(hq)
            x_lq, _ = self._encode(upsample_frames(lq, self.scale))
            b = x_gt.shape[0]
            text, rotary = self._text(batch.get("prompt"), b, x_gt), self._rotary(x_gt)

            # 2. Timesteps t <= τ_s and one noise draw ε for the whole step (Sec. 3.3).
            tau_s, t, noise = self.draw_training_noise(x_gt)

            # 3. The predictor's estimate x_p = F_p(x_lq, τ_s) (Eq. 3) and the SATB anchor x_b^t (Eq. 4).
            x_p = self._predict(x_lq, tau_s, text, rotary)
            anchor = x_p if self.recipe.diff_grad_to_predictor else x_p.detach()
            x_b = satb_blend(x_gt, anchor, tau_s, t, self.schedule, self.recipe.blend)

            # 4. L_diff (Eq. 5): the denoiser at x_t = N(x_b^t, t, ε) (Eq. 29) against v of x_gt.
            x_t = self.schedule.add_noise(x_b, noise, t)
            v = self.schedule.velocity(x_gt, noise, t)
            weight = (1.0 - self.schedule.alpha_bar(t)).to(x_gt.device) if self.recipe.diff_weighting == "x0" else None
            losses = {"diff": diffusion_loss(self._denoise(x_t, t, x_lq, text, rotary), v, weight)}
            total = losses["diff"]

            # 5. L_ddc (Eq. 6): the denoiser's block states for N(x_p, τ_s, ε) vs N(x_gt, τ_s, ε), same ε
            #    and τ_s; F_d is a fixed feature extractor whose gradient reaches F_p through its input only.
            if self.ddc.weight > 0 and self.predictor is not None:
                with torch.no_grad():
                    target = self._features(self.schedule.add_noise(x_gt, noise, tau_s), tau_s, x_lq, text, rotary)
                l_ddc, to_predictor = input_only_loss(
                    self.schedule.add_noise(x_p, noise, tau_s),
                    lambda probe: ddc_loss(self._features(probe, tau_s, x_lq, text, rotary), target),
                )
                losses["ddc"] = l_ddc
                total = total + self.ddc.weight * (l_ddc + to_predictor)  # Eq. 7
        losses["total"] = total
        return losses

    def draw_training_noise(self, x_gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(τ_s [B], t [B], ε like x_gt)`` from this step's generator (so a resumed run draws the same).

        ``recipe.timestep_sampling``: ``paper`` draws ``τ_s ~ U{0..tau_max−1}``, ``t ~ U{0..τ_s}``;
        ``jump_start`` sets ``τ_s = t`` to the start timestep of a step count from ``train_step_counts``.
        """
        generator = self.step_generator(device=x_gt.device)
        b = x_gt.shape[0]
        if self.recipe.timestep_sampling == "jump_start":
            tau_s, t = sample_jump_start_timesteps(b, list(self.recipe.train_step_counts), generator, x_gt.device)
        else:
            tau_s, t = sample_training_timesteps(b, self.recipe.tau_max, generator, x_gt.device)
        noise = torch.randn(x_gt.shape, generator=generator, device=x_gt.device, dtype=x_gt.dtype)
        return tau_s, t, noise

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        total = losses.pop("total")
        if "ddc" in losses:
            # The DDC term is a mean over wide block states (3072 channels at full size): show its scale.
            losses["ddc_over_diff"] = losses["ddc"].detach() / losses["diff"].detach().clamp_min(1e-12)
        self.log_losses(losses, total=total)
        return total

    def _training_frames(self, video: torch.Tensor) -> torch.Tensor:
        # Training clips are cropped (never padded) to the codec's frame rule: no invented frames.
        return video[:, :, : frames_at_most(video.shape[2], self.frames_rule)]

    # ------------------------------------------------------------------ inference (Fig. 2a)

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        color_fix: Literal["wavelet", "none"] | None = None,
        sampler: Literal["cogvideox_dpm", "dpmsolver++"] | None = None,
        vae_posterior: Literal["mode", "sample"] | None = None,
    ) -> torch.Tensor:
        """Restore one window: ``[B,3,T,h,w]`` → ``[B,3,T,h*scale,w*scale]`` in ``[-1, 1]``.

        Every option left ``None`` takes the model's ``sampling`` default (the release's inference).

        Args:
            num_inference_steps: denoiser evaluations (Table 4 schedule).
            guidance_scale: classifier-free guidance against the release's negative prompt (> 1 enables it).
            generator: source of the jump-start noise, the stochastic solver's noise and a sampled
                VAE posterior (default: the global RNG).
            color_fix: ``wavelet`` (clamp, then low frequencies from the upsampled input) or ``none``.
            sampler: ``cogvideox_dpm`` (the release's stochastic DPM-Solver++) or ``dpmsolver++``.
            vae_posterior: ``mode`` or ``sample`` of the VAE encoder's posterior.
        """
        return sample_window(
            self,
            lq,
            prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            color_fix=color_fix,
            sampler=sampler,
            vae_posterior=vae_posterior,
        )

    def prepare_window(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        noise: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        color_fix: str | None = None,
        sampler: str | None = None,
        vae_posterior: str | None = None,
    ) -> WindowState:
        """Encode one LQ window ``[B,3,T,h,w]``, condition it and build the jump-start state ``x_{τ_s}`` (Eq. 3).

        ``noise``: the ε of Eq. 3 in the engine's order ``[B, c, t, h', w']`` (the latent of the
        window, ``t`` latent frames; the engine's shared noise, so overlapping tiles start alike);
        the prepended frames take the first frame's noise. ``None`` draws ε ``[B, F, C, h', w']``
        (prepended frames included) from ``generator``.
        """
        s = self.sampling
        steps = s.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance = s.guidance_scale if guidance_scale is None else guidance_scale
        solver_kind = sampler or s.sampler
        timesteps = self._check_steps(steps)
        self._say_sampling_once(solver_kind, guidance)
        b, _, frames, h, w = lq.shape
        valid = self.codec.valid_frames(frames)
        self._say_once(
            "frames",
            valid != frames,
            f"{frames} frames padded to {valid} (repeating the last frame), cropped back after",
        )

        # The LQ latent: bicubic upsampling to the output size, padded to whole latent patches.
        up = upsample_frames(pad_temporal(lq, valid), self.scale)
        multiple = self.codec.spatial_factor * self.transformer_config.patch_size
        padded = pad_spatial(up, padded_size(up.shape[-2], multiple), padded_size(up.shape[-1], multiple))
        x_lq, prepended = self._encode(
            padded, sample_posterior=(vae_posterior or s.vae_posterior) == "sample", generator=generator
        )
        rotary = self._rotary(x_lq)

        # Text: the caption (or the empty prompt) + the release's template; [negative; positive] with guidance.
        self._say_absent_prompt_once(prompt)
        text = self._text(prompt, b, x_lq, POSITIVE_TEMPLATE if s.prompt_template else "")
        guided = cfg_active(guidance) and self.prompt_encoder.mode != "none"
        if guided:
            text = cfg_batch(self.prompt_encoder.negative_embeddings(b, x_lq.device, x_lq.dtype), text)

        # Eq. 3: x_{τ_s} = √ᾱ_{τ_s} x_p + √(1−ᾱ_{τ_s}) ε, with a fresh ε (drawn where the generator lives).
        tau_s = torch.full((b,), timesteps[0], device=x_lq.device, dtype=torch.long)
        with self._compute_precision():
            x_p = self._predict(x_lq, tau_s, text[-b:], rotary)
        if noise is None:
            noise_device = generator.device if generator is not None else x_p.device
            epsilon = torch.randn(x_p.shape, generator=generator, device=noise_device, dtype=torch.float32)
        else:
            epsilon = self._transformer_order(noise, x_p, prepended, "noise")
        full = self.schedule.add_noise(x_p.float(), epsilon.to(x_p.device, torch.float32), tau_s)
        solver = self.schedule.make_sampler(solver_kind, timesteps=timesteps)
        return WindowState(
            latents=full[:, prepended:].transpose(1, 2),
            num_steps=len(timesteps),
            prefix=full[:, :prepended].clone(),  # a view would keep all of ``full`` alive with the state
            x_lq=x_lq,
            text=text,
            rotary=rotary,
            timesteps=timesteps,
            solver=solver,
            guidance_scale=guidance,
            guided=guided,
            generator=generator,
            lq=lq,  # not ``up``: a frame's tiles all live at once, and this is 1/scale² of it
            frames=frames,
            height=h * self.scale,
            width=w * self.scale,
            prepended=prepended,
            color_fix=color_fix or s.color_fix,
        )

    def denoise_step(
        self, state: WindowState, i: int, latents: torch.Tensor, *, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One solver step from ``state.timesteps[i]`` to the next: fp32 ``[B, c, t, h, w]`` in and out.

        ``noise`` (``[B, c, t, h, w]``, the engine's shared noise of this step) is the stochastic
        CogVideoX solver's step noise (the prepended frames take the first frame's); ``None`` draws
        it from the window's generator as diffusers does. The deterministic ``dpmsolver++`` ignores it.
        """
        t = state.solver.timesteps[i]
        full = torch.cat([state.prefix, latents.transpose(1, 2).float()], dim=1)  # [B, F, C, h, w]
        b = full.shape[0]
        x_t = full.to(state.x_lq.dtype)
        with self._compute_precision():
            if state.guided:
                t_batch = t.to(x_t.device).long().expand(2 * b)
                v = self._denoise(
                    cfg_batch(x_t, x_t), t_batch, cfg_batch(state.x_lq, state.x_lq), state.text, state.rotary
                )
                v = cfg_split_combine(v, state.guidance_scale)
            else:
                v = self._denoise(x_t, t.to(x_t.device).long().expand(b), state.x_lq, state.text, state.rotary)
        v = v.float()
        if isinstance(state.solver, CogVideoXDPMScheduler):
            # CogVideoX's DPM-Solver++(2M) carries the previous clean estimate and timestep itself.
            back = state.solver.timesteps[i - 1] if i > 0 else None
            if noise is None:
                full, state.previous_x0 = state.solver.step(
                    v, state.previous_x0, t, back, full, generator=state.generator, return_dict=False
                )
            else:
                following = int(state.solver.timesteps[i + 1]) if i + 1 < state.num_steps else -1
                step_noise = self._transformer_order(noise, full, state.prepended, "step noise")
                full, state.previous_x0 = cogvideox_dpm_step(
                    state.solver,
                    v,
                    state.previous_x0,
                    int(t),
                    None if back is None else int(back),
                    following,
                    full,
                    step_noise,
                )
        else:
            full = state.solver.step(v, t, full, generator=state.generator, return_dict=False)[0]
        state.prefix = full[:, : state.prepended].clone()  # not a view: the step's output is fused and dropped
        return full[:, state.prepended :].transpose(1, 2)

    def finish_window(self, state: WindowState, latents: torch.Tensor) -> torch.Tensor:
        """Decode ``[B, c, t, h, w]``, crop to the window's size, clamp and colour-fix (the release's order): ``[B,3,T,H,W]``."""
        with self._compute_precision():
            video = self._decode(latents.to(state.x_lq.dtype))
        video = video.float()[:, :, : state.frames, : state.height, : state.width].clamp(-1, 1)
        if state.color_fix == "wavelet":
            reference = upsample_frames(state.lq, self.scale)  # prepare_window's ``up``, recomputed
            video = wavelet_color_fix(video, reference.float())
        return video.clamp(-1, 1)

    @staticmethod
    def _transformer_order(noise: torch.Tensor, like: torch.Tensor, prepended: int, what: str) -> torch.Tensor:
        """The engine's ``[B, c, t, h, w]`` as CogVideoX's ``[B, F, C, h, w]``, the first frame repeated in front."""
        b, f, c, h, w = like.shape
        if tuple(noise.shape) != (b, c, f - prepended, h, w):
            raise ConfigError(
                f"SATB-VR {what} must be [B, c, t, h, w] = {[b, c, f - prepended, h, w]} for this window, "
                f"got {list(noise.shape)}"
            )
        frames = noise.transpose(1, 2)
        return torch.cat([frames[:, :1].expand(-1, prepended, -1, -1, -1), frames], dim=1)

    def _check_steps(self, num_steps: int) -> list[int]:
        """Table 4's timesteps for ``num_steps``, refused when they start where this model never trained."""
        timesteps = jump_start_timesteps(num_steps)
        start = timesteps[0]
        if self.recipe.timestep_sampling == "jump_start":
            trained = {jump_start_timesteps(n)[0]: n for n in self.recipe.train_step_counts}
            if start not in trained:
                raise ConfigError(
                    f"{num_steps} steps start at timestep {start}, which this model never trained at "
                    f"(recipe.timestep_sampling=jump_start trained the start points {sorted(trained)}); "
                    f"use {' or '.join(str(n) for n in sorted(self.recipe.train_step_counts))} steps"
                )
        elif start >= self.recipe.tau_max:
            raise ConfigError(
                f"{num_steps} steps start at timestep {start}, above this model's trained range "
                f"(recipe.tau_max={self.recipe.tau_max}); use fewer steps"
            )
        return timesteps

    # ------------------------------------------------------------------ the networks of one step

    def _encode(
        self, video: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, int]:
        """Pixels ``[B,3,T,H,W]`` → latents ``[B,F,C,h,w]`` (CogVideoX layout), padded to whole temporal patches."""
        with torch.no_grad():
            z = self.codec.encode(video, sample_posterior=sample_posterior, generator=generator).transpose(1, 2)
        return pad_latent_frames(z, self.transformer_config.patch_size_t)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, c, t, h, w]`` (the engine's order, no prepended frames) → pixels ``[B, 3, T, H, W]``."""
        return self.codec.decode(latents)

    def _rotary(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """RoPE ``(cos, sin)`` for ``latents [B, F, C, h, w]``, shared by every call with the same grid.

        They depend only on the grid, so the latent tiles of a frame (all alive at once during
        ``vsr restore``) share one copy instead of holding one each; a few grids are kept.
        """
        _, f, _, h, w = latents.shape
        key = (f, h, w, latents.device, torch.is_inference_mode_enabled())  # inference tensors stay in inference
        if key not in self._rotary_cache:
            if len(self._rotary_cache) >= 4:
                self._rotary_cache.pop(next(iter(self._rotary_cache)))
            self._rotary_cache[key] = rotary_embeddings(self.transformer_config, f, h, w, latents.device)
        return self._rotary_cache[key]

    def _text(self, prompts: list[str] | None, batch: int, like: torch.Tensor, suffix: str = "") -> torch.Tensor:
        return self.prompt_encoder(prompts, batch, like.device, like.dtype, suffix)

    def _predict(self, x_lq: torch.Tensor, tau_s: torch.Tensor, text: torch.Tensor, rotary: Any) -> torch.Tensor:
        """``x_p^{τ_s} = F_p(x_lq, τ_s)`` (Eq. 3); the LQ latent itself without a predictor (Tab. 2 (f))."""
        if self.predictor is None:
            return x_lq
        return self.predictor(x_lq, tau_s, text, rotary, self.schedule).to(x_lq.dtype)

    def _control(self, x_t: torch.Tensor, t: torch.Tensor, x_lq: torch.Tensor, text: torch.Tensor, rotary: Any) -> Any:
        if self.controlnet is None:
            return None
        return self.controlnet(x_t, text, t, x_lq, rotary)

    def _denoise(
        self, x_t: torch.Tensor, t: torch.Tensor, x_lq: torch.Tensor, text: torch.Tensor, rotary: Any
    ) -> torch.Tensor:
        """``F_d(x_t, x_lq, t)`` as a v-prediction (Eq. 5's F_d), whatever ``denoiser_options.output`` is."""
        out = self.denoiser(
            x_t,
            text,
            t,
            control_latents=x_lq if self.denoiser_options.lq_condition else None,
            control_hidden_states=self._control(x_t, t, x_lq, text, rotary),
            image_rotary_emb=rotary,
        ).to(x_t.dtype)
        if self.denoiser_options.output == "v":
            return out
        # The network's output is a clean-latent estimate (or its offset from x_lq); Eq. 5 compares v's.
        x0 = out + (x_lq if self.denoiser_options.output == "lq_residual" else 0)
        return self.schedule.v_from_x0(x_t, x0, t)

    def _features(
        self, x_t: torch.Tensor, t: torch.Tensor, x_lq: torch.Tensor, text: torch.Tensor, rotary: Any
    ) -> list[torch.Tensor]:
        """Φ(x_t, x_lq, t) of Eq. 6: the denoiser's video-token states after ``ddc.blocks``."""
        return self.denoiser.block_features(
            x_t,
            text,
            t,
            self.ddc_blocks,
            control_latents=x_lq if self.denoiser_options.lq_condition else None,
            control_hidden_states=self._control(x_t, t, x_lq, text, rotary),
            image_rotary_emb=rotary,
        )

    def _compute_precision(self) -> contextlib.AbstractContextManager:
        """Autocast to the frozen weights' dtype when they are not fp32 (the trainable ones are fp32)."""
        device = next(self.denoiser.parameters()).device
        if self.frozen_dtype == torch.float32 or device.type == "meta" or torch.is_autocast_enabled(device.type):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.frozen_dtype)

    # ------------------------------------------------------------------ one-time notes

    def _say_once(self, key: str, condition: bool, message: str) -> None:
        if condition and key not in self._said:
            self._said.add(key)
            rank_zero_info(f"SATB-VR: {message}")

    def _say_sampling_once(self, sampler: str, guidance: float) -> None:
        if self.hparams.get("satb_weights"):
            used = {"sampler": sampler, "guidance_scale": guidance}
            used |= {"prompt_template": self.sampling.prompt_template, "color_fix": self.sampling.color_fix}
            differs = {k: v for k, v in used.items() if RELEASE_SAMPLING[k] != v}
            how = ", ".join(f"{k}={v}" for k, v in (differs or used).items())
            self._say_once(
                "sampling", True, f"sampling {'differs from' if differs else 'as'} the authors' release: {how}"
            )
        self._say_once(
            "guidance",
            cfg_active(guidance) and self.prompt_encoder.mode == "none",
            f"guidance_scale {guidance} has no effect: no text encoder or precomputed embeddings (text.encoder none)",
        )

    def _say_absent_prompt_once(self, prompt: list[str] | None) -> None:
        absent = not prompt or not any(p.strip() for p in prompt)
        template = " + the release's quality template" if self.sampling.prompt_template else ""
        self._say_once(
            "prompt",
            absent and self.prompt_encoder.accepts_prompts,
            f"no caption given (the release captions with CogVLM2, not part of vsr): empty prompt{template}",
        )

    # ------------------------------------------------------------------ construction helpers

    def _build_codec(self, pretrained: str | None, torch_dtype: str) -> LatentCodec:
        tiling = self.vae_tiling
        options = {"tile_size": tiling.tile_size, "tile_overlap": tiling.tile_overlap} if tiling.enabled else {}
        if pretrained:
            return CogVideoXCodec.from_pretrained(pretrained, torch_dtype=torch_dtype, **options)
        if self.spec.codec == "cogvideox":
            return CogVideoXCodec.real("cogvideox1.5-5b", torch_dtype=torch_dtype, **options)
        return PixelUnshuffleCodec(factor=self.spec.codec_factor, scaling=self.spec.codec_scaling, **options)

    def _build_prompts(self, pretrained: str | None, release: Path | None, torch_dtype: str) -> PromptEncoder:
        cfg = self.transformer_config
        return build_prompt_encoder(
            self.text.encoder,
            pretrained,
            release,
            cfg.text_embed_dim,
            self.spec.text_tokens,
            cfg.max_text_seq_length,
            self.text.ignore_prompts,
            self.frozen_dtype,
            self.text.cache,
        )

    def _load_release_controlnet(self, release: Path, base: Any) -> SATBControlNet:
        controlnet, info = load_controlnet_folder(SATBControlNet, release / "controlnet")
        problems = [(kind, keys) for kind, keys in info.items() if keys]
        if problems:
            kind, keys = problems[0]
            raise PretrainedError(
                f"{release}/controlnet does not match the ControlNet: {len(keys)} {kind}, e.g. {keys[0]}"
            )
        for key in (
            "num_attention_heads",
            "attention_head_dim",
            "in_channels",
            "patch_size",
            "patch_size_t",
            "text_embed_dim",
        ):
            if controlnet.config[key] != base.config[key]:
                raise PretrainedError(
                    f"{release}/controlnet has {key}={controlnet.config[key]}, the base transformer {base.config[key]}"
                )
        return controlnet

    def _zero_residual_heads(self) -> None:
        # Residual outputs start at zero: predictor x_p = x_lq, denoiser x0 = x_lq (the release's weights replace them).
        heads = []
        if self.denoiser_options.output == "lq_residual":
            heads.append(self.denoiser.proj_out)
        if self.predictor is not None and self.predictor.parameterization == "residual":
            heads.append(self.predictor.transformer.proj_out)
        for head in heads:
            if not is_meta(head):
                torch.nn.init.zeros_(head.weight)
                torch.nn.init.zeros_(head.bias)

    def enable_activation_checkpointing(self) -> None:
        # diffusers' own switch: checkpointing inside the transformers' block loops.
        for model in (self.denoiser, self.controlnet, self.predictor.transformer if self.predictor else None):
            if model is not None:
                model.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ export

    def export_pretrained(self, directory: str | Path) -> None:
        """``vsr export`` hook: the release layout plus full ``transformer/`` / ``predictor/`` where needed.

        ``SATBVR(satb_weights=directory)`` (with the same other arguments) reads it back.
        """
        save_release(self, directory, full=True)
