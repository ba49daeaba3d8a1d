"""``SATBVR``: the SATB-VR method (Bai et al., 2026) as a :class:`~vsr_core.method.VSRMethod`.

Inference (Fig. 2a): the auxiliary predictor estimates the clean latent from the LQ latent, noise is
added at the jump-start timestep τ_s (Eq. 3), and the LQ-conditioned denoiser runs DPM-Solver++ over
the few jump-start timesteps of Table 4. Training (Fig. 2b/c): τ_s and t ≤ τ_s are drawn per sample,
the denoiser input is the SATB blend of predictor output and ground truth (Eq. 4) noised with the
forward process (Eq. 1), the loss is the v-prediction loss (Eq. 5) plus λ times the Denoiser-Driven
Consistency loss (Eq. 6, 7) that trains the predictor through the denoiser's block features.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from lightning.pytorch.utilities import rank_zero_info

from satb.controlnet import SATBControlNet
from satb.denoiser import LQConditionedTransformer
from satb.finetune import DEFAULT_LORA_TARGETS, add_lora, apply_trainability, check_mode
from satb.losses import ddc_loss, diffusion_loss, input_only_loss
from satb.predictor import PARAMETERIZATIONS, AuxiliaryPredictor
from satb.presets import get_preset
from satb.rotary import rotary_embeddings
from satb.schedule import (
    BLEND_KINDS,
    TIMESTEP_SAMPLINGS,
    jump_start_timesteps,
    sample_jump_start_timesteps,
    sample_training_timesteps,
    satb_blend,
)
from satb.text import POSITIVE_TEMPLATE, build_prompt_encoder
from satb.video_ops import pad_latent_frames
from satb.weights import (
    EXTRA_MODULES,
    check_release_folder,
    load_base_transformer,
    load_controlnet_folder,
    load_release_parts,
    save_release,
)
from vsr_core.benchmark import PaperBenchmark
from vsr_core.diffusion import DDPMSchedule, sample
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.inference import wavelet_color_fix
from vsr_core.latent import CogVideoXCodec, LatentCodec, PixelUnshuffleCodec
from vsr_core.method import VSRMethod
from vsr_core.pretrained import as_dtype
from vsr_core.text import PromptEncoder, cfg_active, cfg_batch, cfg_split_combine
from vsr_core.video_ops import pad_spatial, pad_temporal, padded_size, upsample_frames

DENOISER_OUTPUTS = ("v", "x0", "lq_residual")


class SATBVR(VSRMethod):
    """SATB-VR: few-step video restoration with an auxiliary predictor, SATB and the DDC loss.

    ``restore(lq [B,3,T,h,w], prompt, num_inference_steps=...)`` → ``[B,3,T,h*scale,w*scale]`` in ``[-1, 1]``;
    any ``T`` (padded to the codec's frame rule and cropped back). Components: ``predictor`` (F_p),
    ``denoiser`` (main transformer of F_d), ``controlnet`` (LQ branch of F_d), ``codec``,
    ``prompt_encoder``, ``schedule``.

    Args:
        scale: upscaling factor (the LQ video is bicubic-upsampled before encoding).
        preset: ``tiny`` (CPU, weight-free codec) or ``real`` (CogVideoX1.5-5B shapes, random init
            unless ``pretrained`` is given).
        pretrained: a CogVideoX diffusers folder (``transformer/``, ``vae/``, ``scheduler/``, and
            ``text_encoder/`` + ``tokenizer/`` for T5 prompts) or hub id.
        satb_weights: the authors' release folder (``controlnet/``, ``lora_*/``, ``connectors.pt``, ...).
        torch_dtype: dtype of the *frozen* weights (``bfloat16`` saves memory at full size).
        blend: ``satb`` (Eq. 4) or the Table 2 ablations ``none`` / ``linear`` / ``cosine``.
        use_predictor: ``False`` jump-starts from the LQ latent itself (Table 2 (f)).
        lq_condition: ``False`` drops the ControlNet branch (Table 2 (a), (b)).
        denoiser_finetune: ``lora`` / ``full`` / ``none`` for the base blocks of the denoiser
            (ControlNet, connectors and LQ embedding always train); default ``lora``, except
            ``full`` for the randomly initialized tiny preset.
        predictor_finetune: ``lora`` / ``full``; same default rule.
        ddc_weight: λ of Eq. 7; 0 disables DDC (Table 2 (g)).
        ddc_blocks: denoiser blocks whose outputs are Φ of Eq. 6 (negative counts from the end);
            default the blocks at 1/4, 1/2, 3/4 of the depth and the last.
        diff_grad_to_predictor: let L_diff back-propagate into the predictor through x_b (Eq. 4);
            default ``True``, except ``False`` for the randomly initialized tiny preset.
        predictor_parameterization: ``v_at_lq`` (the release; default with a pretrained or
            full-size base), ``x0``, or ``residual`` (``x_p = x_lq + F``; the tiny preset's).
        predictor_timestep: fixed timestep the predictor reads (399 in the release); ``None`` = τ_s.
        tau_max: τ_s is drawn from ``{0..tau_max-1}``; default all training timesteps (Sec. 3.3), or
            just above the highest start timestep with ``timestep_sampling=jump_start``.
        timestep_sampling: ``paper`` (τ_s ~ U{0..tau_max−1}, t ~ U{0..τ_s}, Sec. 3.3) or
            ``jump_start`` (τ_s = t = the solver's start timestep for a step count drawn from
            ``train_step_counts``; default for the randomly initialized tiny preset only, see
            docs/methods/satb.md).
        train_step_counts: step counts whose start timesteps ``jump_start`` trains at (default 1 and 5).
        lora_rank, lora_alpha, lora_targets: LoRA of predictor and denoiser.
        controlnet_layers: blocks copied into the ControlNet (preset default: 6 for ``real``).
        text_encoder: ``auto`` / ``t5`` / ``precomputed`` / ``none``.
        ignore_prompts: without a text encoder, drop given prompts (warn once) instead of failing.
        text_cache: a caption-embedding cache directory (T5 only; filled by ``vsr precompute`` or on
            the fly): cached captions are read from it and the T5 is loaded only for the others.
        prompt_template: append the release's quality template to prompts at inference (T5 only).
        num_steps: default few-step budget of :meth:`restore` (5, τ_s = 399, as the paper).
        guidance_scale: classifier-free guidance at inference (6 in the release; 1 disables).
        color_fix: wavelet color correction against the upsampled input (the release does it).
        sampler: ``dpmsolver++`` (diffusers' DPM-Solver++, Sec. 4.1) or ``cogvideox_dpm`` (the
            stochastic CogVideoX DPM-Solver++ variant the release's inference uses).
        denoiser_output: what the denoiser transformer outputs, always converted to v for Eq. 5 and
            the solver: ``v`` (CogVideoX's v-prediction; default with a pretrained or full-size
            base), ``x0`` (a clean estimate) or ``lq_residual`` (``x0 = x_lq + F``; the tiny
            preset's, whose random base gets a zero-initialized output layer, so an untrained
            tiny model restores exactly the bicubic upsampling and training starts from there).
        vae_tile_size, vae_tile_overlap: spatial tiling of the VAE in pixels.
    """

    fsdp_block_classes = (CogVideoXBlock,)
    temporal_window = 81
    frames_rule = (4, 1)
    tiny_init_args: ClassVar[dict[str, Any]] = {"scale": 4, "preset": "tiny", "learning_rate": 5e-4, "num_steps": 2}
    # Table 3: runtime per frame on an NVIDIA H20 at 1024^2 (1 and 5 steps); the training step at the
    # paper's crop (Sec. 4.1: 1024^2 clips, 17-37 frames; 25 as the config).
    paper_benchmarks: ClassVar[tuple[PaperBenchmark, ...]] = tuple(
        PaperBenchmark(f"{steps} step{'s' * (steps > 1)}, {frames}x1024^2", "infer", frames, 1024, 1024, steps,
                       seconds, "frame", "H20", {"preset": "real"}, "Table 3")
        for steps, seconds in ((1, 1.106), (5, 3.247))
        for frames in (17, 37)
    ) + (PaperBenchmark("train step, 25x1024^2", "train", 25, 1024, 1024, init_args={"preset": "real"}, source="Sec. 4.1"),)

    def __init__(
        self,
        scale: int = 4,
        preset: str = "tiny",
        pretrained: str | None = None,
        satb_weights: str | None = None,
        torch_dtype: str | None = None,
        blend: str = "satb",
        use_predictor: bool = True,
        lq_condition: bool = True,
        denoiser_finetune: str | None = None,
        predictor_finetune: str | None = None,
        ddc_weight: float = 1.0,
        ddc_blocks: list[int] | None = None,
        diff_grad_to_predictor: bool | None = None,
        predictor_parameterization: str | None = None,
        predictor_timestep: int | None = 399,
        tau_max: int | None = None,
        timestep_sampling: str | None = None,
        train_step_counts: list[int] | None = None,
        lora_rank: int = 64,
        lora_alpha: float | None = None,
        lora_targets: list[str] | None = None,
        controlnet_layers: int | None = None,
        text_encoder: str = "auto",
        ignore_prompts: bool = True,
        prompt_template: bool = True,
        text_cache: str | None = None,
        num_steps: int = 5,
        guidance_scale: float = 1.0,
        color_fix: bool = True,
        sampler: str = "dpmsolver++",
        denoiser_output: str | None = None,
        vae_tile_size: int | None = None,
        vae_tile_overlap: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, **kwargs)
        spec = get_preset(preset)
        if blend not in BLEND_KINDS:
            raise ConfigError(f"blend must be one of {', '.join(BLEND_KINDS)}; got {blend!r}")
        # A random tiny base gets the preset's output parameterizations; a real base keeps CogVideoX's.
        random_tiny = preset == "tiny" and not pretrained
        predictor_parameterization = predictor_parameterization or (spec.predictor_parameterization if random_tiny else "v_at_lq")
        if predictor_parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"predictor_parameterization must be one of {', '.join(PARAMETERIZATIONS)}")
        # A random tiny base has nothing worth keeping frozen; a pretrained or full-size base gets LoRA.
        default_mode = "full" if random_tiny else "lora"
        self.denoiser_mode = check_mode("denoiser_finetune", denoiser_finetune or default_mode)
        self.predictor_mode = check_mode("predictor_finetune", predictor_finetune or default_mode, ("lora", "full"))
        self.blend = blend
        self.use_predictor = use_predictor
        self.lq_condition = lq_condition
        self.ddc_weight = float(ddc_weight) if use_predictor else 0.0
        if diff_grad_to_predictor is None:
            diff_grad_to_predictor = spec.diff_grad_to_predictor if random_tiny else True
        self.diff_grad_to_predictor = diff_grad_to_predictor
        self.prompt_template = prompt_template
        self.num_steps = num_steps
        self.guidance_scale = guidance_scale
        self.color_fix = color_fix
        if sampler not in ("dpmsolver++", "cogvideox_dpm"):
            raise ConfigError(f"sampler must be dpmsolver++ or cogvideox_dpm, got {sampler!r}")
        self.sampler = sampler
        default_output = spec.denoiser_output if random_tiny else "v"
        if default_output == "lq_residual" and not lq_condition:
            default_output = "x0"  # the LQ latent must not reach an unconditioned denoiser (Tab. 2 a, b)
        self.denoiser_output = denoiser_output or default_output
        if self.denoiser_output not in DENOISER_OUTPUTS:
            raise ConfigError(f"denoiser_output must be one of {', '.join(DENOISER_OUTPUTS)}; got {denoiser_output!r}")
        if self.denoiser_output == "lq_residual" and not lq_condition:
            raise ConfigError("denoiser_output=lq_residual feeds the LQ latent to the denoiser; it needs lq_condition=true")
        self._said_frames = False
        dtype = as_dtype(torch_dtype)
        release = check_release_folder(satb_weights, lq_condition, use_predictor, type(self)) if satb_weights else None

        # Noise schedule of the base model (v-prediction, zero terminal SNR).
        self.schedule = DDPMSchedule.from_pretrained(pretrained) if pretrained else DDPMSchedule("cogvideox")
        if self.schedule.prediction_type != "v_prediction":
            raise PretrainedError(f"{pretrained}/scheduler is not a v-prediction schedule; SATB-VR needs CogVideoX's")
        timestep_sampling = timestep_sampling or (spec.timestep_sampling if random_tiny else "paper")
        if timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ConfigError(f"timestep_sampling must be one of {', '.join(TIMESTEP_SAMPLINGS)}; got {timestep_sampling!r}")
        self.timestep_sampling = timestep_sampling
        self.train_step_counts = list(train_step_counts or [1, 5])
        highest_start = max(jump_start_timesteps(n)[0] for n in self.train_step_counts)
        default_tau_max = highest_start + 1 if timestep_sampling == "jump_start" else self.schedule.num_train_timesteps
        self.tau_max = tau_max or default_tau_max
        if not 1 <= self.tau_max <= self.schedule.num_train_timesteps:
            raise ConfigError(f"tau_max must be in [1, {self.schedule.num_train_timesteps}], got {tau_max}")

        self.codec = self._build_codec(spec, pretrained, vae_tile_size, vae_tile_overlap)
        c = self.codec
        self.frames_rule = (c.temporal_factor, 1) if c.causal else (c.temporal_factor, 0)
        # Long videos: 81-frame windows at full size (the release's 80-frame temporal tiles), 17 on the tiny CPU preset.
        self.temporal_window = 81 if preset == "real" or pretrained else 17

        # The base transformer: pretrained, or the preset's shapes with random weights.
        if pretrained:
            base = load_base_transformer(pretrained)
            if base.config.in_channels != c.latent_channels:
                raise PretrainedError(
                    f"{pretrained}/transformer reads {base.config.in_channels} channels, its VAE gives {c.latent_channels}"
                )
        else:
            config = {**spec.transformer, "in_channels": c.latent_channels, "out_channels": c.latent_channels}
            base = CogVideoXTransformer3DModel(**config)
        self.transformer_config = base.config

        self.prompt_encoder = self._build_prompts(text_encoder, pretrained, release, spec, ignore_prompts, dtype, text_cache)

        self.predictor = None
        if use_predictor:
            self.predictor = AuxiliaryPredictor(copy.deepcopy(base), predictor_parameterization, predictor_timestep)

        self.denoiser = LQConditionedTransformer(
            **dict(base.config),
            enable_connector=lq_condition,
            enable_control_patchemb=lq_condition,
            connector_heads=spec.connector_heads,
            connector_dim=spec.connector_dim,
            control_hidden_channels=spec.control_hidden_channels,
            control_groups=spec.control_groups,
        )
        self._copy_base_weights(base)

        self.controlnet = None
        if lq_condition:
            if release is not None:
                self.controlnet = self._load_release_controlnet(release, base)
            else:
                self.controlnet = SATBControlNet.from_transformer(
                    base, controlnet_layers or spec.controlnet_layers, spec.control_hidden_channels, spec.control_groups
                )
        del base

        targets = tuple(lora_targets or DEFAULT_LORA_TARGETS)
        if release is not None:
            self._load_release_modules(release)
        else:
            if self.denoiser_mode == "lora":
                add_lora(self.denoiser, lora_rank, lora_alpha, targets)
            if self.predictor is not None and self.predictor_mode == "lora":
                add_lora(self.predictor.transformer, lora_rank, lora_alpha, targets)
        apply_trainability(self.denoiser, self.denoiser_mode, always_trainable=EXTRA_MODULES)
        if self.predictor is not None:
            apply_trainability(self.predictor, self.predictor_mode)
        if self.controlnet is not None:
            self.controlnet.requires_grad_(True)
        if dtype is not None:
            for parameter in self.parameters():
                if not parameter.requires_grad:
                    parameter.data = parameter.data.to(dtype)
        self.ddc_blocks = self._ddc_blocks(ddc_blocks)
        if not pretrained and release is None:
            self._zero_residual_heads()

    # ------------------------------------------------------------------ construction helpers

    def _build_codec(self, spec: Any, pretrained: str | None, tile: int | None, overlap: int) -> LatentCodec:
        options = {"tile_size": tile, "tile_overlap": overlap} if tile else {}
        if pretrained:
            return CogVideoXCodec.from_pretrained(pretrained, **options)
        if spec.codec == "cogvideox":
            return CogVideoXCodec.real("cogvideox1.5-5b", **options)
        return PixelUnshuffleCodec(factor=spec.codec_factor, scaling=spec.codec_scaling, **options)

    def _build_prompts(
        self,
        mode: str,
        pretrained: str | None,
        release: Path | None,
        spec: Any,
        ignore_prompts: bool,
        dtype: torch.dtype | None,
        cache: str | None,
    ) -> PromptEncoder:
        cfg = self.transformer_config
        return build_prompt_encoder(
            mode,
            pretrained,
            release,
            cfg.text_embed_dim,
            spec.text_tokens,
            cfg.max_text_seq_length,
            ignore_prompts,
            dtype,
            cache,
        )

    def _copy_base_weights(self, base: CogVideoXTransformer3DModel) -> None:
        if next(base.parameters()).device.type == "meta":
            return
        missing, unexpected = self.denoiser.load_state_dict(base.state_dict(), strict=False)
        foreign = [k for k in missing if not k.startswith(EXTRA_MODULES)]
        if foreign or unexpected:
            raise PretrainedError(f"base transformer does not fit the denoiser: {(foreign or unexpected)[0]}")

    def _load_release_controlnet(self, release: Path, base: CogVideoXTransformer3DModel) -> SATBControlNet:
        controlnet, info = load_controlnet_folder(SATBControlNet, release / "controlnet")
        problems = [(kind, keys) for kind, keys in info.items() if keys]
        if problems:
            kind, keys = problems[0]
            raise PretrainedError(f"{release}/controlnet does not match the ControlNet: {len(keys)} {kind}, e.g. {keys[0]}")
        for key in ("num_attention_heads", "attention_head_dim", "in_channels", "patch_size", "patch_size_t", "text_embed_dim"):
            if controlnet.config[key] != base.config[key]:
                raise PretrainedError(
                    f"{release}/controlnet has {key}={controlnet.config[key]}, the base transformer {base.config[key]}"
                )
        return controlnet

    def _load_release_modules(self, release: Path) -> None:
        """LoRA adapters and extra modules of the release (authors' layout), full weights of a ``vsr export``."""
        self._release_full_parts = load_release_parts(self, release)

    def _zero_residual_heads(self) -> None:
        # Residual outputs of a random base start at zero: predictor x_p = x_lq, denoiser x0 = x_lq.
        heads = []
        if self.denoiser_output == "lq_residual":
            heads.append(self.denoiser.proj_out)
        if self.predictor is not None and self.predictor.parameterization == "residual":
            heads.append(self.predictor.transformer.proj_out)
        for head in heads:
            if head.weight.device.type != "meta":
                torch.nn.init.zeros_(head.weight)
                torch.nn.init.zeros_(head.bias)

    def _ddc_blocks(self, blocks: list[int] | None) -> list[int]:
        depth = self.transformer_config.num_layers
        if blocks is None:
            blocks = sorted({max(0, round(depth * f) - 1) for f in (0.25, 0.5, 0.75, 1.0)})
        resolved = sorted({b % depth for b in blocks if -depth <= b < depth})
        if len(resolved) != len(set(blocks)):
            raise ConfigError(f"ddc_blocks {blocks} must index the denoiser's {depth} blocks")
        return resolved

    def enable_activation_checkpointing(self) -> None:
        # diffusers' own switch: checkpointing inside the transformers' block loops.
        for model in (self.denoiser, self.controlnet, self.predictor.transformer if self.predictor else None):
            if model is not None:
                model.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ latents and conditioning

    def _encode(self, video: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Pixels ``[B,3,T,H,W]`` → latents ``[B,F,C,h,w]`` (CogVideoX layout), padded to whole temporal patches."""
        with torch.no_grad():
            z = self.codec.encode(video).transpose(1, 2)
        return pad_latent_frames(z, self.transformer_config.patch_size_t)

    def _decode(self, latents: torch.Tensor, prepended: int) -> torch.Tensor:
        return self.codec.decode(latents[:, prepended:].transpose(1, 2))

    def _rotary(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        _, f, _, h, w = latents.shape
        return rotary_embeddings(self.transformer_config, f, h, w, latents.device)

    def _text(self, prompts: list[str] | None, batch: int, like: torch.Tensor, suffix: str = "") -> torch.Tensor:
        return self.prompt_encoder(prompts, batch, like.device, like.dtype, suffix)

    def _predict(self, x_lq: torch.Tensor, tau_s: torch.Tensor, text: torch.Tensor, rotary: Any) -> torch.Tensor:
        """``x_p^{τ_s} = F_p(x_lq, τ_s)`` (Eq. 3); the LQ latent itself without a predictor (Tab. 2 (f))."""
        if self.predictor is None:
            return x_lq
        return self.predictor(x_lq, tau_s, text, rotary, self.schedule)

    def _control(self, x_t: torch.Tensor, t: torch.Tensor, x_lq: torch.Tensor, text: torch.Tensor, rotary: Any) -> Any:
        if self.controlnet is None:
            return None
        return self.controlnet(x_t, text, t, x_lq, rotary)

    def _denoise(self, x_t: torch.Tensor, t: torch.Tensor, x_lq: torch.Tensor, text: torch.Tensor, rotary: Any) -> torch.Tensor:
        """``F_d(x_t, x_lq, t)``: v-prediction of the LQ-conditioned denoiser (Eq. 5's F_d)."""
        control = self._control(x_t, t, x_lq, text, rotary)
        out = self.denoiser(
            x_t,
            text,
            t,
            control_latents=x_lq if self.lq_condition else None,
            control_hidden_states=control,
            image_rotary_emb=rotary,
        )
        if self.denoiser_output == "v":
            return out
        # The network's output is a clean-latent estimate (or its offset from x_lq); Eq. 5 compares v's.
        x0 = out.to(x_t.dtype) + (x_lq if self.denoiser_output == "lq_residual" else 0)
        return self.schedule.v_from_x0(x_t, x0, t)

    def _features(
        self, x_t: torch.Tensor, t: torch.Tensor, x_lq: torch.Tensor, text: torch.Tensor, rotary: Any
    ) -> list[torch.Tensor]:
        """Φ(x_t, x_lq, t) of Eq. 6: the denoiser's states after ``ddc_blocks``."""
        control = self._control(x_t, t, x_lq, text, rotary)
        return self.denoiser.block_features(
            x_t,
            text,
            t,
            self.ddc_blocks,
            control_latents=x_lq if self.lq_condition else None,
            control_hidden_states=control,
            image_rotary_emb=rotary,
        )

    def _training_frames(self, video: torch.Tensor) -> torch.Tensor:
        # Training clips are cropped (not padded) to the codec's frame rule: no invented frames.
        frames = video.shape[2]
        valid = self.codec.valid_frames(frames)
        if valid != frames:
            multiple, remainder = self.frames_rule
            valid = max(remainder or multiple, frames - (frames - remainder) % multiple)
            video = video[:, :, :valid]
        return video

    # ------------------------------------------------------------------ training (Sec. 3.3)

    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"diff": L_diff (Eq. 5), "ddc": L_ddc (Eq. 6, when enabled), "total": Eq. 7}`` for one batch.

        ``ddc`` is the (detached) loss value; its gradient to the predictor is inside ``total``.
        """
        hq = self._training_frames(batch["hq"])
        lq = self._training_frames(batch["lq"])
        x_gt, _ = self._encode(hq)
        x_lq, _ = self._encode(upsample_frames(lq, self.scale))
        b = x_gt.shape[0]
        generator = self.step_generator(device=x_gt.device)
        if self.timestep_sampling == "jump_start":
            tau_s, t = sample_jump_start_timesteps(b, self.train_step_counts, generator, x_gt.device)
        else:
            tau_s, t = sample_training_timesteps(b, self.tau_max, generator, x_gt.device)
        noise = torch.randn(x_gt.shape, generator=generator, device=x_gt.device, dtype=x_gt.dtype)
        text = self._text(batch.get("prompt"), b, x_gt)
        rotary = self._rotary(x_gt)

        x_p = self._predict(x_lq, tau_s, text, rotary)
        anchor_p = x_p if self.diff_grad_to_predictor else x_p.detach()
        x_b = satb_blend(x_gt, anchor_p, tau_s, t, self.schedule, self.blend)  # Eq. 4
        x_t = self.schedule.add_noise(x_b, noise, t)  # Eq. 1 on the blended anchor (Eq. 29)
        v = self.schedule.velocity(x_gt, noise, t)  # Eq. 5 target, from x_gt
        losses = {"diff": diffusion_loss(self._denoise(x_t, t, x_lq, text, rotary), v)}
        total = losses["diff"]

        if self.ddc_weight > 0 and self.predictor is not None:
            # Eq. 6: same ε and τ_s for both; the denoiser is a fixed feature extractor whose
            # gradient reaches the predictor through its input only.
            with torch.no_grad():
                target = self._features(self.schedule.add_noise(x_gt, noise, tau_s), tau_s, x_lq, text, rotary)
            l_ddc, to_predictor = input_only_loss(
                self.schedule.add_noise(x_p, noise, tau_s),
                lambda probe: ddc_loss(self._features(probe, tau_s, x_lq, text, rotary), target),
            )
            losses["ddc"] = l_ddc
            total = total + self.ddc_weight * (l_ddc + to_predictor)  # Eq. 7
        losses["total"] = total
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        total = losses.pop("total")
        self.log_losses(losses, total=total)
        return total

    # ------------------------------------------------------------------ inference (Fig. 2a)

    def _check_steps(self, num_steps: int) -> list[int]:
        timesteps = jump_start_timesteps(num_steps)
        if timesteps[0] >= self.tau_max:
            raise ConfigError(
                f"{num_steps} steps start at timestep {timesteps[0]}, above this model's trained range "
                f"(tau_max={self.tau_max}); use fewer steps"
            )
        return timesteps

    def _say_frames_once(self, frames: int, padded: int) -> None:
        if not self._said_frames and padded != frames:
            self._said_frames = True
            rank_zero_info(f"SATB-VR: {frames} frames padded to {padded} (repeating the last frame), cropped back after")

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        color_fix: bool | None = None,
        sampler: str | None = None,
    ) -> torch.Tensor:
        """Restore one window: ``[B,3,T,h,w]`` → ``[B,3,T,h*scale,w*scale]`` in ``[-1, 1]``.

        Args:
            num_inference_steps: denoiser evaluations (Table 4 schedule). Default the model's ``num_steps``.
            guidance_scale: classifier-free guidance (> 1 enables it; needs a text encoder or
                precomputed embeddings).
            generator: source of the jump-start noise and of the stochastic solver's noise
                (default: the global RNG).
            color_fix: wavelet color correction against the upsampled input.
            sampler: ``dpmsolver++`` (diffusers' DPM-Solver++, the default) or ``cogvideox_dpm``
                (CogVideoX's stochastic DPM-Solver++ the release samples with).
        """
        steps_wanted = self.num_steps if num_inference_steps is None else num_inference_steps
        timesteps = self._check_steps(steps_wanted)
        guidance = self.guidance_scale if guidance_scale is None else guidance_scale
        b, _, frames, h, w = lq.shape
        valid = self.codec.valid_frames(frames)
        self._say_frames_once(frames, valid)

        up = upsample_frames(pad_temporal(lq, valid), self.scale)
        reference = up
        multiple = self.codec.spatial_factor * self.transformer_config.patch_size
        x_lq, prepended = self._encode(pad_spatial(up, padded_size(up.shape[-2], multiple), padded_size(up.shape[-1], multiple)))
        rotary = self._rotary(x_lq)
        suffix = POSITIVE_TEMPLATE if self.prompt_template else ""
        text = self._text(prompt, b, x_lq, suffix)
        cfg = cfg_active(guidance) and self.prompt_encoder.mode != "none"
        if cfg:  # [negative; positive] batch, combined after each denoiser call
            text = cfg_batch(self.prompt_encoder.negative_embeddings(b, x_lq.device, x_lq.dtype), text)

        tau_s = torch.full((b,), timesteps[0], device=x_lq.device, dtype=torch.long)
        x_p = self._predict(x_lq, tau_s, text[-b:], rotary)
        # Drawn where the generator lives (a CPU generator also seeds a CUDA restore), then moved.
        noise_device = generator.device if generator is not None else x_p.device
        noise = torch.randn(x_p.shape, generator=generator, device=noise_device, dtype=x_p.dtype).to(x_p.device)
        x = self.schedule.add_noise(x_p, noise, tau_s)  # Eq. 3: resampled noise on the predictor output

        def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x_t = x_t.to(x_lq.dtype)
            t_batch = t.to(x_t.device).long().expand(x_t.shape[0] * (2 if cfg else 1))
            if not cfg:
                return self._denoise(x_t, t_batch, x_lq, text, rotary).float()
            v = self._denoise(cfg_batch(x_t, x_t), t_batch, cfg_batch(x_lq, x_lq), text, rotary)
            return cfg_split_combine(v, guidance).float()

        # DPM-Solver++ (default) over the jump-start timesteps; "cogvideox_dpm" is the release's solver.
        solver = self.schedule.make_sampler(sampler or self.sampler, timesteps=timesteps)
        x = sample(solver, velocity, x.float(), generator=generator).to(x_lq.dtype)

        video = self._decode(x, prepended)[:, :, :frames, : h * self.scale, : w * self.scale]
        use_color_fix = self.color_fix if color_fix is None else color_fix
        if use_color_fix:
            video = wavelet_color_fix(video, reference[:, :, :frames]).clamp(-1, 1)
        return video.clamp(-1, 1)

    # ------------------------------------------------------------------ checkpoints

    def _reloadable_keys(self) -> set[str]:
        """Frozen weights that ``pretrained`` / ``satb_weights`` restore at construction (not saved)."""
        if not self.hparams.get("pretrained"):
            return set()
        return {name for name, p in self.named_parameters() if not p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # At full size the frozen base weights are ~20 GB and already on disk: keep only what trained.
        for key in self._reloadable_keys():
            checkpoint["state_dict"].pop(key, None)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            allowed = self._reloadable_keys()
            missing = [k for k in result.missing_keys if k not in allowed]
            if missing or result.unexpected_keys:
                raise RuntimeError(f"SATBVR state dict mismatch: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")
        return result

    # ------------------------------------------------------------------ export

    export_init_arg = "satb_weights"

    def export_pretrained(self, directory: str | Path) -> None:
        """``vsr export`` hook: the release layout plus full ``transformer/`` / ``predictor/`` where needed.

        ``SATBVR(satb_weights=directory)`` (with the same other arguments) reads it back.
        """
        save_release(self, directory, full=True)
