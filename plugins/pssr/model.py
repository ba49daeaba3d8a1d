"""``PSSR``: PS-SR (Wu et al., CVPR 2026), pseudo-single-step VSR by speculative diffusion.

Inference (Eq. 1, 5, 6, Fig. 2): the LQ video is bicubic-upsampled to the target size and encoded
(``z_L``); the **base** model (Wan2.1 DiT + LoRA, reading ``cat([z_L, z_L])``) takes one big step
along the LQ -> HQ flow; the lightweight **draft** model (pruned base, fed with the base's hidden
states) takes the remaining ``T - 1`` steps; after each draft step its clean prediction is decoded
and only its high luminance frequencies are blended into the video (the frequency-domain update,
Eq. 13-14).

Training, one stage per run (``stage``), each starting from the previous with ``init_from``:

* ``latent`` (Eq. 10): base trained with ``L2`` (Eq. 7) + VSD (Eq. 8; frozen Wan = real score,
  a "fake" LoRA on the same Wan = fake score) + a latent adversarial loss (Eq. 9); three optimizers.
* ``pixel`` (Eq. 11): base trained with pixel L2 + LPIPS on decoded random latent crops.
* ``draft`` (Eq. 12): the draft, initialised from the fine-tuned base (LoRA merged) and fully
  trained with ``L2`` + the pixel loss on ``z_t`` interpolated between ``z_L`` and ``z_H``.

Layout: ``transformer`` is the (frozen, pretrained) Wan DiT shared by the base (LoRA adapter
``base``, its own widened patch embedding and head in ``base_io``), the VSD real score (no adapter)
and the fake score (adapter ``fake``); ``draft`` is a separate, smaller DiT.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanTransformerBlock
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from pssr.discriminator import LatentVGGDiscriminator
from pssr.dit import embed, run_blocks, unembed, widen_patch_embedding
from pssr.draft import PSSRDraft, kept_blocks
from pssr.flow import draft_timesteps, landing_velocity, paired_state, velocity_target
from pssr.frequency import frequency_update
from pssr.fusion import TemporalPositionAveraging
from pssr.options import (
    DraftOptions,
    FlowOptions,
    FrequencyUpdateOptions,
    LossWeights,
    PixelLossOptions,
    PSSRLoRA,
    PSSRSampling,
    Stage,
    TextOptions,
    VSDOptions,
)
from pssr.presets import PresetName, get_preset
from pssr.weights import load_release, save_release
from vsr_core.benchmark import PaperBenchmark
from vsr_core.diffusion import FlowMatchingSchedule
from vsr_core.errors import CheckpointError, ConfigError, PretrainedError
from vsr_core.frames import frames_at_least, frames_at_most
from vsr_core.inference import COLOR_FIXES, sample_window
from vsr_core.latent import PixelUnshuffleCodec, WanCodec
from vsr_core.lora import add_lora
from vsr_core.losses import DistributionMatching, PerceptualLoss, adapter_scores, d_loss, g_loss, use_adapters
from vsr_core.method import VSRMethod
from vsr_core.options import TilingOptions
from vsr_core.pretrained import as_dtype, locate_component, resolve_pretrained
from vsr_core.text import PromptEncoder, cfg_active, cfg_batch, cfg_split_combine
from vsr_core.video_ops import pad_spatial, pad_temporal, padded_size, upsample_frames

__all__ = ["PSSR", "SpeculativeState"]


@dataclass
class SpeculativeState:
    """One window being restored (:meth:`PSSR.prepare_window` -> :meth:`PSSR.denoise_step` -> :meth:`PSSR.finish_window`).

    Attributes:
        z_lq: LQ latents ``[B, c, t, h, w]`` (the flow's start, at sigma_L).
        text: prompt embeddings ``[B, L, D]`` (``[2B, L, D]`` = [negative; positive] with guidance).
        timesteps: ``[base, draft_1, ..., draft_{T-1}]`` model timesteps.
        guidance: the guidance scale (used when ``cfg``).
        alpha, mode: FDU strength (Eq. 14) and when it applies.
        size: ``(frames, height, width)`` of the output before padding.
        reference: the upsampled LQ video (colour correction), cropped.
        color_fix: ``none`` / ``wavelet`` / ``adain``.
        features: the base's hidden states entering the kept blocks (set by the base step).
        video: ``x_t`` in pixels ``[B, 3, T, H, W]`` (set by the base step, updated by FDU).
        x0: the latest clean-latent estimate ``[B, c, t, h, w]``.

    ``latents`` (the initial latents, ``z_L``) and ``num_steps`` (``T``) are the attributes the core's
    latent window protocol reads from a state.
    """

    z_lq: torch.Tensor
    text: torch.Tensor
    timesteps: list[int]
    guidance: float
    cfg: bool
    alpha: float
    mode: str
    size: tuple[int, int, int]
    reference: torch.Tensor
    color_fix: str
    features: list[torch.Tensor] | None = None
    video: torch.Tensor | None = None
    x0: torch.Tensor | None = None

    @property
    def latents(self) -> torch.Tensor:
        """The initial latents ``[B, c, t, h, w]``: the flow starts at ``z_L`` (no noise is drawn)."""
        return self.z_lq

    @property
    def num_steps(self) -> int:
        """``T``: one base step and ``T - 1`` draft steps."""
        return len(self.timesteps)


class PSSR(VSRMethod):
    """PS-SR: a one-step Wan2.1 base, a pruned draft fed by the base's features, frequency-domain updates.

    ``restore(lq [B,3,T,h,w], prompt, num_inference_steps=T, alpha=, frequency_update=)`` ->
    ``[B,3,T,h*scale,w*scale]`` in ``[-1, 1]``; any ``T`` (padded to ``4k+1`` frames and cropped back).

    Args:
        scale: upscaling factor (the LQ video is bicubic-upsampled before the VAE encodes it).
        preset: ``tiny`` (CPU, weight-free codec), ``tiny-wan`` (CPU, tiny Wan VAE) or ``real``
            (Wan2.1-T2V-1.3B shapes, random unless ``pretrained``); see pssr/presets.py.
        pretrained: a Wan2.1-T2V-1.3B diffusers folder (``transformer/``, ``vae/``; ``text_encoder/`` +
            ``tokenizer/`` for prompts) or hub id.
        pssr_weights: a folder with the authors' ``base.safetensors`` and ``draft.safetensors`` (their
            DiffSynth key names) — also what ``vsr export`` writes for this class.
        stage: what this run trains: ``latent`` / ``pixel`` (the base, Sec. 3.3) or ``draft`` (Sec. 3.4).
        torch_dtype: dtype of the frozen weights (Wan, VAE, umT5; ``bfloat16`` halves their memory at
            full size); what trains stays fp32.
        lora: the base's LoRA (rank 32 on every block's attention and FFN projections).
        flow: base / draft timesteps (699 -> 599, 499, 399 as the release; 1000 = the paper's sigma_T = 1).
        draft: draft size (20 of 30 blocks pruned) and its training input.
        losses: loss weights of Eq. 10-12.
        vsd: VSD settings (CFG 5 real score, t in [20, 980), DMD weighting).
        pixel: latent crop and perceptual loss of Eq. 11.
        gan_loss: ``hinge`` (release) or ``non_saturating`` (Eq. 9's log loss).
        sampling: ``restore`` defaults (T = 4, alpha = 0.6, FDU after every draft step).
        frequency: the Butterworth filter of the FDU (cut-off 0.2, order 2, release).
        text: prompt encoder (umT5), template and negative prompt.
        vae_tiling: spatial tiling of the VAE (pixels) for large frames.
        learning_rate: AdamW learning rate of every group (paper 5e-5; configs set the discriminator's).
    """

    fsdp_block_classes = (WanTransformerBlock,)
    frames_rule = (4, 1)  # Wan's causal VAE: 4k+1 frames (kept for the weight-free tiny codec too)
    temporal_window = 33  # the release's windows (overlap 8 = the engine's default quarter)
    #: The three sampler calls keep the speculative steps' *pixel* state: x_t is built from decoded
    #: predictions by the frequency-domain update (Eq. 6, 13-14) and is what finish_window returns, so
    #: fusing the latents of overlapping windows would not fuse the output. Windows are fused in
    #: pixels by the release's temporal position-aware averaging (make_window_fusion) instead, and
    #: the flow draws no noise for a shared timeline noise to matter. vsr restore runs ``restore``.
    latent_layout = None
    generator_groups: ClassVar[tuple[str, ...]] = ("generator",)
    training_only_modules: ClassVar[tuple[str, ...]] = ("discriminator", "perceptual")
    export_init_arg: ClassVar[str | None] = "pssr_weights"
    tiny_init_args: ClassVar[dict[str, Any]] = {"preset": "tiny", "learning_rate": 1e-3}
    # Table 4: 21.11 s per 29-frame 720x1280 clip with 1 + 3 steps on an A800; the release's 33-frame
    # windows at 720x1280; one latent-phase training step at the release's 33x720x1280 clips.
    paper_benchmarks: ClassVar[tuple[PaperBenchmark, ...]] = (
        PaperBenchmark(
            "1+3 steps, 29x720x1280", "infer", 29, 720, 1280, 4, 21.11, "clip", "A800", {"preset": "real"}, "Table 4"
        ),
        PaperBenchmark(
            "1 step, 29x720x1280", "infer", 29, 720, 1280, 1, None, "clip", None, {"preset": "real"}, "Table 5 T=1"
        ),
        PaperBenchmark(
            "1+3 steps, 33x720x1280",
            "infer",
            33,
            720,
            1280,
            4,
            None,
            "clip",
            None,
            {"preset": "real"},
            "release window",
        ),
        PaperBenchmark(
            "train step (latent), 33x720x1280",
            "train",
            33,
            720,
            1280,
            init_args={"preset": "real"},
            source="release train_base.sh",
        ),
    )
    base_adapter: ClassVar[str] = "base"
    fake_adapter: ClassVar[str] = "fake"

    def __init__(
        self,
        scale: int = 4,
        preset: PresetName = "tiny",
        pretrained: str | None = None,
        pssr_weights: str | None = None,
        stage: Stage = "latent",
        torch_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        lora: PSSRLoRA = PSSRLoRA(),
        flow: FlowOptions = FlowOptions(),
        draft: DraftOptions = DraftOptions(),
        losses: LossWeights = LossWeights(),
        vsd: VSDOptions = VSDOptions(),
        pixel: PixelLossOptions = PixelLossOptions(),
        gan_loss: Literal["hinge", "non_saturating"] = "hinge",
        sampling: PSSRSampling = PSSRSampling(),
        frequency: FrequencyUpdateOptions = FrequencyUpdateOptions(),
        text: TextOptions = TextOptions(),
        vae_tiling: TilingOptions = TilingOptions(),
        learning_rate: float = 5e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, learning_rate=learning_rate, **kwargs)
        if stage not in ("latent", "pixel", "draft"):
            raise ConfigError(f"stage must be latent, pixel or draft; got {stage!r}")
        if gan_loss not in ("hinge", "non_saturating"):
            raise ConfigError(f"gan_loss must be hinge or non_saturating; got {gan_loss!r}")
        self.automatic_optimization = False
        self.stage = stage
        self.gan_loss = gan_loss
        self.spec = get_preset(preset)
        self.lora = PSSRLoRA.coerce(lora)
        self.flow = FlowOptions.coerce(flow)
        self.draft_options = DraftOptions.coerce(draft)
        self.losses = LossWeights.coerce(losses)
        self.vsd = VSDOptions.coerce(vsd)
        self.pixel = PixelLossOptions.coerce(pixel)
        self.sampling = PSSRSampling.coerce(sampling)
        self.frequency = FrequencyUpdateOptions.coerce(frequency)
        self.text = TextOptions.coerce(text)
        self.vae_tiling = TilingOptions.coerce(vae_tiling)
        dtype = as_dtype(torch_dtype)
        self._said_frames = False

        # The flow-matching schedule: explicit timesteps (base, draft) are used as given; its shifted
        # training grid (shift 5 as the release's scheduler) is what VSD draws noising times from.
        self.schedule = FlowMatchingSchedule("flow", {"shift": self.vsd.shift})
        self.codec = self._build_codec(pretrained, dtype)
        self.transformer = self._build_transformer(pretrained, dtype)
        c = self.codec.latent_channels
        patch = tuple(self.transformer.config.patch_size)
        self._multiple = self.codec.spatial_factor * patch[1]

        # Base (Sec. 3.3): its own input layer reads cat([z_L, z_L]) (new half zero, release), its own head.
        self.base_io = nn.ModuleDict(
            {
                "patch_embedding": widen_patch_embedding(self.transformer.patch_embedding, 2),
                "proj_out": copy.deepcopy(self.transformer.proj_out),
            }
        )
        self.base_io.float()  # trained: fp32 master weights even when the frozen Wan is bf16
        if self.spec.zero_head and not pretrained:
            with torch.no_grad():
                self.base_io["proj_out"].weight.zero_()
                self.base_io["proj_out"].bias.zero_()
        lora_args = (self.lora.rank, self.lora.alpha, self.lora.targets)
        add_lora(self.transformer, *lora_args, adapter_name=self.base_adapter, dropout=self.lora.dropout)
        self.uses_vsd = stage == "latent" and self.losses.vsd > 0
        self.uses_adversarial = stage == "latent" and self.losses.adv > 0
        if self.uses_vsd:  # Eq. 8's phi'_reg: a LoRA on the same frozen Wan that is the real score phi_reg
            with warnings.catch_warnings():  # peft warns about a second adapter: two on one base is the point
                warnings.filterwarnings("ignore", message=".*multiple adapters.*")
                add_lora(self.transformer, *lora_args, adapter_name=self.fake_adapter, dropout=self.lora.dropout)

        # Draft (Sec. 3.4): the kept blocks of the base (LoRA merged), built now, re-initialised from
        # the fine-tuned base when a draft stage starts.
        kept = kept_blocks(self.transformer.config.num_layers, self.draft_options.pruned, self.draft_options.out_of)
        draft_config = {**dict(self.transformer.config), "in_channels": 2 * c}
        draft_config = {k: v for k, v in draft_config.items() if not k.startswith("_")}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(2)
            self.draft = PSSRDraft(draft_config, kept)
        if dtype not in (None, torch.float32) and stage != "draft":  # a trained draft keeps fp32 weights
            self.draft.to(dtype)
        self.draft.initialise_from(
            self.transformer, self.base_io["patch_embedding"], self.base_io["proj_out"], self.base_adapter
        )
        self._draft_from_file = False

        self.prompt_encoder = self._build_prompts(pretrained, dtype)
        if pssr_weights:
            load_release(self, pssr_weights)
            self._draft_from_file = True
        self._set_trainable()

        # Frozen weights that init arguments rebuild: the pretrained Wan (its LoRA adapters stay in
        # checkpoints), the VAE, the text encoder; in the base stages also the (untrained) draft.
        rebuildable = [self.transformer, self.codec, self.prompt_encoder]
        if stage != "draft":
            rebuildable.append(self.draft)
        self.mark_rebuildable(*rebuildable)
        self.discriminator: nn.Module | None = None
        self.perceptual: PerceptualLoss | None = None
        self.distribution_matching: DistributionMatching | None = None

    # ------------------------------------------------------------------ construction

    def _build_codec(self, pretrained: str | None, dtype: torch.dtype | None):
        tiles = (
            dict(tile_size=self.vae_tiling.tile_size, tile_overlap=self.vae_tiling.tile_overlap)
            if self.vae_tiling.enabled
            else {}
        )
        if pretrained:
            return WanCodec.from_pretrained(pretrained, torch_dtype=dtype, **tiles)
        if self.spec.codec == "wan":
            return WanCodec(preset=self.spec.codec_preset, torch_dtype=dtype, **tiles)
        return PixelUnshuffleCodec(factor=self.spec.codec_factor, scaling=self.spec.codec_scaling, **tiles)

    def _build_transformer(self, pretrained: str | None, dtype: torch.dtype | None) -> WanTransformer3DModel:
        c = self.codec.latent_channels
        if pretrained:
            folder = resolve_pretrained(pretrained, "transformer")
            found = json.loads((folder / "config.json").read_text()).get("_class_name")
            if found != "WanTransformer3DModel":
                raise PretrainedError(
                    f"{folder} holds a {found}, not Wan2.1's WanTransformer3DModel; pass a Wan2.1 folder"
                )
            model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)
            if model.config.in_channels != c or model.config.out_channels != c:
                raise PretrainedError(
                    f"{folder} reads {model.config.in_channels} latent channels, its VAE gives {c}; pass a Wan2.1 folder"
                )
        else:
            with torch.random.fork_rng(devices=[]):  # identical "pretrained" weights in every run (rebuildable)
                torch.manual_seed(1)
                model = WanTransformer3DModel(**{**self.spec.transformer, "in_channels": c, "out_channels": c})
            if dtype not in (None, torch.float32):
                model.to(dtype)
        model.requires_grad_(False)
        return model

    def _build_prompts(self, pretrained: str | None, dtype: torch.dtype | None) -> PromptEncoder:
        mode = self.text.encoder
        width = self.transformer.config.text_dim
        has_encoder = bool(pretrained) and locate_component(pretrained, "text_encoder") is not None
        if mode == "auto":
            mode = "umt5" if has_encoder else "none"
        if mode == "none":
            return PromptEncoder.zeros(width, self.spec.text_tokens, ignore_prompts=True, owner="PSSR")
        if not pretrained:
            raise ConfigError(
                f"text.encoder={mode} needs pretrained= a Wan2.1 folder with text_encoder/ and tokenizer/"
            )
        return PromptEncoder.from_pretrained(
            pretrained,
            kind="umt5",
            empty=mode == "empty",
            width=width,
            negative_prompt=self.text.negative_prompt,
            cache=self.text.cache,
            owner="PSSR",
            torch_dtype=dtype,
        )

    def _base_parameters(self) -> list[nn.Parameter]:
        lora = [p for n, p in self.transformer.named_parameters() if f".{self.base_adapter}." in n and "lora_" in n]
        return lora + list(self.base_io.parameters())

    def _fake_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.transformer.named_parameters() if f".{self.fake_adapter}." in n and "lora_" in n]

    def _set_trainable(self) -> None:
        """Stage ``latent`` / ``pixel``: the base's LoRA, patch embedding and head (+ the fake LoRA); ``draft``: the draft."""
        self.transformer.requires_grad_(False)
        self.base_io.requires_grad_(False)
        self.draft.requires_grad_(False)
        if self.stage == "draft":
            self.draft.requires_grad_(True)
            return
        for p in self._base_parameters():
            p.requires_grad_(True)
        if self.uses_vsd:
            for p in self._fake_parameters():
                p.requires_grad_(True)

    def build_training_modules(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            if self.uses_adversarial:
                self.discriminator = LatentVGGDiscriminator(self.codec.latent_channels, **self.spec.discriminator)
                self.discriminator.to(self.device)
        uses_pixel = (self.stage == "pixel") or (self.stage == "draft" and self.losses.pixel > 0)
        if uses_pixel and self.losses.lpips > 0:
            self.perceptual = PerceptualLoss(self.pixel.perceptual)
        if self.uses_vsd:
            real, fake = adapter_scores(self.transformer, self.fake_adapter, forward=_score_forward)
            # Without a text encoder the negative and positive embeddings are the same zeros and
            # guidance returns the conditional output exactly: one real-score pass instead of two.
            guidance = 1.0 if self.prompt_encoder.mode == "none" else self.vsd.guidance_scale
            self.distribution_matching = DistributionMatching(
                self.schedule,
                real,
                fake,
                t_min=self.vsd.t_min,
                t_max=self.vsd.t_max,
                guidance_scale=guidance,
                weighting=self.vsd.weighting,
            )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``generator`` (the base in the latent / pixel stages, the draft in the draft stage), ``fake_score``, ``discriminator``."""
        if self.stage == "draft":
            return {"generator": list(self.draft.parameters())}
        groups = {"generator": self._base_parameters()}
        if self.uses_vsd:
            groups["fake_score"] = self._fake_parameters()
        if self.uses_adversarial:
            self.ensure_training_modules()
            groups["discriminator"] = list(self.discriminator.parameters())
        return groups

    def make_window_fusion(self) -> TemporalPositionAveraging:
        """Long videos: the release's temporal position-aware averaging of overlapping windows."""
        return TemporalPositionAveraging()

    @property
    def native_tile(self) -> int:  # type: ignore[override]
        """LQ tile side: output tiles of 1280 pixels (the release's 720x1280 frames are one tile)."""
        return _round_up(1280 // self.scale, self.spatial_multiple)

    @property
    def native_tile_overlap(self) -> int:  # type: ignore[override]
        """LQ pixels neighbouring tiles share: the release's 128 output pixels."""
        return _round_up(128 // self.scale, self.spatial_multiple)

    @property
    def spatial_multiple(self) -> int:  # type: ignore[override]
        """LQ sizes are padded so that the HQ size is a multiple of VAE factor x patch size."""
        return self._multiple // math.gcd(self._multiple, self.scale)

    # ------------------------------------------------------------------ the networks

    def _text(self, prompts: list[str] | None, batch: int, like: torch.Tensor) -> torch.Tensor:
        return self.prompt_encoder(prompts, batch, like.device, like.dtype, suffix=self.text.template)

    def base_velocity(
        self, z_lq: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, capture: list[int] | tuple = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """phi_base(z_L) ``[B, c, t, h, w]`` on ``cat([z_L, z_L])`` and the hidden states entering blocks ``capture``."""
        with use_adapters(self.transformer, self.base_adapter):
            tokens, context = embed(
                self.transformer, torch.cat([z_lq, z_lq], dim=1), timestep, text, self.base_io["patch_embedding"]
            )
            tokens, features = run_blocks(self.transformer.blocks, tokens, context, capture)
            return unembed(self.transformer, tokens, context, self.base_io["proj_out"]), features

    def draft_velocity(
        self,
        z_t: torch.Tensor,
        z_lq: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        features: list[torch.Tensor],
    ) -> torch.Tensor:
        """phi_draft(z_t) ``[B, c, t, h, w]``: the draft reads ``cat([z_t, z_L])`` (as at inference) and the base's features."""
        return self.draft(torch.cat([z_t, z_lq], dim=1), timestep, text, features)

    def _timestep(self, value: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32, device=like.device).expand(batch).clone()

    # ------------------------------------------------------------------ latents of a training batch

    def _training_clip(self, video: torch.Tensor, multiple: int) -> torch.Tensor:
        """Crop a training clip to ``4k+1`` frames and spatial multiples of ``multiple`` (no invented pixels)."""
        frames = frames_at_most(video.shape[2], self.frames_rule)
        if frames > video.shape[2]:
            raise ConfigError(f"PS-SR trains on clips of at least {frames} frames, got {video.shape[2]}")
        h, w = video.shape[-2:]
        return video[:, :, :frames, : h - h % multiple, : w - w % multiple]

    def encode_pair(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(hq [B,3,T,H,W], z_H, z_L)``: ground-truth latents and latents of the bicubic-upsampled LQ video."""
        hq_multiple = _lcm(self._multiple, self.scale)
        hq = self._training_clip(batch["hq"], hq_multiple)
        lq = self._training_clip(batch["lq"], hq_multiple // self.scale)
        with torch.no_grad():
            z_hq = self.codec.encode(hq)
            z_lq = self.codec.encode(upsample_frames(lq, self.scale))
        return hq, z_hq, z_lq

    # ------------------------------------------------------------------ training (Sec. 3.3, 3.4)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hq, z_hq, z_lq = self.encode_pair(batch)
        text = self._text(batch.get("prompt"), z_hq.shape[0], z_hq)
        step = {"latent": self._latent_step, "pixel": self._pixel_step, "draft": self._draft_step}[self.stage]
        losses = step(hq, z_hq, z_lq, text)
        self.log_losses(
            {name: value for name, value in losses.items() if value is not None and name != "total"},
            total=losses["total"],
        )

    def _base_prediction(self, z_lq: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(phi_base, z^_H)``: the base's velocity and clean estimate ``x0 = z_L - sigma_L phi`` (Eq. 5)."""
        sigma = self.flow.sigma_lq
        v, _ = self.base_velocity(z_lq, self._timestep(self.flow.base_timestep, z_lq.shape[0], z_lq), text)
        return v, self.schedule.to_x0(v, z_lq, sigma)

    def _latent_step(self, hq, z_hq, z_lq, text) -> dict[str, torch.Tensor | None]:
        """Eq. 10: ``l2 * L2 + vsd * VSD + adv * L_adv`` for the base; then the discriminator and the fake score."""
        w = self.losses
        v, z_hat = self._base_prediction(z_lq, text)
        l2 = F.mse_loss(v.float(), velocity_target(self.schedule, z_hq, z_lq, self.flow.sigma_lq).float())  # Eq. 7
        parts: dict[str, torch.Tensor | None] = {"l2": l2}
        total = w.l2 * l2
        negative = None
        if self.uses_vsd:  # Eq. 8 (noised as Eq. 2: (1 - sigma) z^_H + sigma eps)
            negative = self.prompt_encoder.negative_embeddings(z_hq.shape[0], z_hq.device, text.dtype)
            vsd = self.distribution_matching.generator_loss(
                z_hat, condition=text, uncond_condition=negative, generator=self.step_generator(0, z_hq.device)
            )
            parts["vsd"] = vsd.loss
            total = total + w.vsd * vsd.loss
        adversarial = self.uses_adversarial and self.is_due("discriminator")
        if adversarial:  # Eq. 9, the generator's side
            parts["adv"] = g_loss(self.discriminator(z_hat), self.gan_loss)
            total = total + w.adv * parts["adv"]
        parts["generator"] = self.optimize("generator", total)
        if adversarial:
            fake = z_hat.detach()
            parts["discriminator"] = self.optimize(
                "discriminator", lambda: d_loss(self.discriminator(z_hq), self.discriminator(fake), self.gan_loss)
            )
        if self.uses_vsd:  # the fake score learns the generator's distribution (flow-matching loss on z^_H)
            parts["fake_score"] = self.optimize(
                "fake_score",
                lambda: self.distribution_matching.fake_score_loss(
                    z_hat, condition=text, generator=self.step_generator(1, z_hq.device)
                ),
            )
        parts["total"] = total.detach()
        return parts

    def _crop(self, z: torch.Tensor, generator: torch.Generator) -> tuple[slice, slice, slice, slice]:
        """A random square latent crop of ``pixel.crop`` (whole axes when smaller) and its pixel window."""
        h, w = z.shape[-2:]
        ch, cw = min(self.pixel.crop, h), min(self.pixel.crop, w)
        top = int(torch.randint(0, h - ch + 1, (1,), generator=generator, device=generator.device))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=generator, device=generator.device))
        f = self.codec.spatial_factor
        return (
            slice(top, top + ch),
            slice(left, left + cw),
            slice(top * f, (top + ch) * f),
            slice(left * f, (left + cw) * f),
        )

    def pixel_loss(self, z_hat: torch.Tensor, hq: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Eq. 11 on one random crop: ``pixel_l2 * ||E^-1(z^_crop) - x_crop||^2 + lpips * LPIPS``; parts and their sum."""
        rows, cols, pixel_rows, pixel_cols = self._crop(z_hat, generator)
        decoded = self.codec.decode(z_hat[..., rows, cols])
        target = hq[..., pixel_rows, pixel_cols]
        parts = {"pixel_l2": F.mse_loss(decoded.float(), target.float())}
        total = self.losses.pixel_l2 * parts["pixel_l2"]
        if self.perceptual is not None:
            parts["lpips"] = self.perceptual(decoded, target)
            total = total + self.losses.lpips * parts["lpips"]
        parts["pixel"] = total
        return parts

    def _pixel_step(self, hq, z_hq, z_lq, text) -> dict[str, torch.Tensor | None]:
        """Eq. 11: the base's clean estimate, decoded on a random latent crop, against the ground truth."""
        _, z_hat = self._base_prediction(z_lq, text)
        parts: dict[str, torch.Tensor | None] = dict(self.pixel_loss(z_hat, hq, self.step_generator(2, z_hq.device)))
        total = parts.pop("pixel")
        parts["generator"] = self.optimize("generator", total)
        parts["total"] = total.detach()
        return parts

    def draft_training_timesteps(self) -> list[int]:
        """The timesteps the draft trains at: the draft timesteps of ``flow.train_steps`` (599, 499, 399)."""
        f = self.flow
        return draft_timesteps(f.base_timestep, f.last_draft_timestep, f.train_steps)

    def _draft_step(self, hq, z_hq, z_lq, text) -> dict[str, torch.Tensor | None]:
        """Eq. 12: ``l2 * L2 + pixel * L_pixel`` for the draft, fed ``cat([z_t, z_L])`` and the base's features."""
        b = z_hq.shape[0]
        sigma_lq = self.flow.sigma_lq
        generator = self.step_generator(2, z_hq.device)
        with torch.no_grad():  # the base is fixed: its hidden states are inputs of the draft
            base_v, features = self.base_velocity(
                z_lq, self._timestep(self.flow.base_timestep, b, z_lq), text, self.draft.kept
            )
        timesteps = self.draft_training_timesteps()
        terms: list[dict[str, torch.Tensor]] = []
        if self.draft_options.input == "interpolated":  # Sec. 3.4: z_t on the LQ -> HQ line (Eq. 4), t drawn uniformly
            pick = torch.randint(0, len(timesteps), (b,), generator=generator, device=generator.device)
            t = torch.tensor(timesteps, dtype=torch.float32)[pick.cpu()].to(z_hq.device)
            z_t = paired_state(self.schedule, z_hq, z_lq, t / 1000, sigma_lq)
            terms.append(
                self._draft_losses(
                    z_t, t, z_lq, text, features, velocity_target(self.schedule, z_hq, z_lq, sigma_lq), hq, generator
                )
            )
        else:  # the release's trajectory: the base's step, then the draft's own steps (all detached)
            sigmas = [sigma_lq] + [s / 1000 for s in timesteps]
            z_t = self.schedule.step(z_lq, base_v, sigmas[0], sigmas[1])
            for k, timestep in enumerate(timesteps):
                t = self._timestep(timestep, b, z_hq)
                terms.append(
                    self._draft_losses(
                        z_t, t, z_lq, text, features, landing_velocity(z_t, z_hq, sigmas[k + 1]), hq, generator
                    )
                )
                if k + 1 < len(timesteps):
                    z_t = self.schedule.step(
                        z_t, terms[-1].pop("velocity").detach(), sigmas[k + 1], sigmas[k + 2]
                    ).detach()
        parts: dict[str, torch.Tensor | None] = {}
        for name in terms[0]:
            if name != "velocity":
                parts[name] = sum(term[name] for term in terms)
        total = self.losses.l2 * parts["l2"]
        if "pixel" in parts:
            total = total + self.losses.pixel * parts.pop("pixel")
        parts["generator"] = self.optimize("generator", total)
        parts["total"] = total.detach()
        return parts

    def _draft_losses(self, z_t, t, z_lq, text, features, target, hq, generator) -> dict[str, torch.Tensor]:
        """``l2`` (Eq. 7 form) and the pixel terms (Eq. 11) of one draft prediction at ``z_t``, timesteps ``t [B]``."""
        v = self.draft_velocity(z_t, z_lq, t, text, features)
        terms = {"velocity": v, "l2": F.mse_loss(v.float(), target.float())}
        if self.losses.pixel > 0:
            terms.update(self.pixel_loss(self.schedule.to_x0(v, z_t, t / 1000), hq, generator))
        return terms

    def on_fit_start(self) -> None:
        super().on_fit_start()  # applies init_from (the previous stage's weights) first
        if self.stage == "draft" and self.trainer.ckpt_path is None and not self._draft_from_file:
            # Sec. 3.4: the draft starts from the fine-tuned base, LoRA merged, fusion = identity on the base half.
            self.draft.initialise_from(
                self.transformer, self.base_io["patch_embedding"], self.base_io["proj_out"], self.base_adapter
            )
            rank_zero_info(
                f"PS-SR draft initialised from the base: blocks {self.draft.kept} of {self.transformer.config.num_layers}"
            )

    # ------------------------------------------------------------------ inference (Eq. 1, 5, 6)

    def _say_frames_once(self, frames: int, padded: int) -> None:
        if not self._said_frames and padded != frames:
            self._said_frames = True
            rank_zero_info(
                f"PS-SR: {frames} frames padded to {padded} (4k+1, repeating the last frame), cropped back after"
            )

    def prepare_window(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        alpha: float | None = None,
        frequency_update: str | None = None,
        color_fix: str | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> SpeculativeState:
        """Encode one LQ window ``[B, 3, T, h, w]``; ``state.latents`` is ``z_L [B, c, t, h', w']``, the flow's start.

        ``noise`` and ``generator`` are accepted (the latent window protocol's vocabulary) and unused:
        the LQ -> HQ flow of Eq. 4 starts from ``z_L``, not from noise.
        """
        options = self.sampling.replace(
            **{
                k: v
                for k, v in {
                    "num_inference_steps": num_inference_steps,
                    "guidance_scale": guidance_scale,
                    "alpha": alpha,
                    "frequency_update": frequency_update,
                    "color_fix": color_fix,
                }.items()
                if v is not None
            }
        )
        f = self.flow
        timesteps = [
            f.base_timestep,
            *draft_timesteps(f.base_timestep, f.last_draft_timestep, options.num_inference_steps),
        ]
        b, _, frames, h, w = lq.shape
        padded = frames_at_least(frames, self.frames_rule)
        self._say_frames_once(frames, padded)
        up = upsample_frames(pad_temporal(lq, padded), self.scale)
        reference = up[:, :, :frames]
        height, width = h * self.scale, w * self.scale
        up = pad_spatial(up, padded_size(height, self._multiple), padded_size(width, self._multiple))
        z_lq = self.codec.encode(up)
        text = self._text(prompt, b, z_lq)
        cfg = cfg_active(options.guidance_scale) and self.prompt_encoder.mode != "none"
        if cfg:  # [negative; positive]
            text = cfg_batch(self.prompt_encoder.negative_embeddings(b, z_lq.device, z_lq.dtype), text)
        state = SpeculativeState(
            z_lq=z_lq,
            text=text,
            timesteps=timesteps,
            guidance=options.guidance_scale,
            cfg=cfg,
            alpha=options.alpha,
            mode=options.frequency_update,
            size=(frames, height, width),
            reference=reference,
            color_fix=options.color_fix,
        )
        return state

    def _velocity(self, state: SpeculativeState, i: int, latents: torch.Tensor) -> torch.Tensor:
        """phi at step ``i`` (0: the base on z_L, Eq. 5; else the draft, Eq. 6), guided when ``state.cfg``."""
        x, z_lq = latents, state.z_lq
        if state.cfg:
            x, z_lq = cfg_batch(x, x), cfg_batch(z_lq, z_lq)
        timestep = self._timestep(state.timesteps[i], x.shape[0], x)
        if i == 0:
            v, state.features = self.base_velocity(z_lq, timestep, state.text, self.draft.kept)
        else:
            v = self.draft_velocity(x, z_lq, timestep, state.text, state.features)
        return cfg_split_combine(v, state.guidance) if state.cfg else v

    def denoise_step(self, state: SpeculativeState, i: int, latents: torch.Tensor) -> torch.Tensor:
        """One speculative step at ``state.timesteps[i]``: ``z_{t-1} = z_t - (sigma_t - sigma_{t-1}) phi`` (Eq. 3, 5, 6).

        The clean estimate ``z_{t-1} - sigma_{t-1} phi = z_t - sigma_t phi`` is decoded: after the base
        step it is ``x_{T-1}`` (Eq. 5); after a draft step ``x~_{t-1}``, whose high luminance
        frequencies update ``x_t`` (Eq. 6, 13, 14) when the FDU runs every step.
        """
        sigma = state.timesteps[i] / 1000
        sigma_next = state.timesteps[i + 1] / 1000 if i + 1 < len(state.timesteps) else 0.0
        v = self._velocity(state, i, latents)
        state.x0 = self.schedule.to_x0(v, latents, sigma)
        if i == 0:
            state.video = self.codec.decode(state.x0)  # x_{T-1} (Eq. 5)
        elif state.mode == "every_step":
            prediction = self.codec.decode(state.x0)  # x~_{t-1}
            state.video = self._frequency_update(state.video, prediction, state.alpha)
        return self.schedule.step(latents, v, sigma, sigma_next)

    def _frequency_update(self, current: torch.Tensor, prediction: torch.Tensor, alpha: float) -> torch.Tensor:
        q = self.frequency
        return frequency_update(current, prediction, alpha, q.cutoff, q.order, q.border, q.eps, q.alpha_scales)

    def finish_window(self, state: SpeculativeState, latents: torch.Tensor) -> torch.Tensor:
        """The restored window ``[B, 3, T, H, W]`` in [-1, 1], cropped to the input's size."""
        video = state.video
        if (
            len(state.timesteps) > 1 and state.mode == "final"
        ):  # release: base output + the last draft's high frequencies
            video = self._frequency_update(state.video, self.codec.decode(state.x0), state.alpha)
        elif len(state.timesteps) > 1 and state.mode == "off":  # Table 3 "w/o FDU": the last prediction
            video = self.codec.decode(state.x0)
        frames, height, width = state.size
        video = video[:, :, :frames, :height, :width].clamp(-1, 1)
        color_fix = COLOR_FIXES.get(state.color_fix)  # "none": no fix
        if color_fix is not None:
            video = color_fix(video, state.reference)
        return video.clamp(-1, 1)

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        alpha: float | None = None,
        frequency_update: str | None = None,
        color_fix: str | None = None,
    ) -> torch.Tensor:
        """Restore one window: ``[B,3,T,h,w]`` -> ``[B,3,T,h*scale,w*scale]`` in ``[-1, 1]`` (Eq. 1).

        Args:
            num_inference_steps: T (default 4): 1 base step + T - 1 draft steps; at most
                ``base_timestep - last_draft_timestep + 1``.
            guidance_scale: classifier-free guidance of base and draft (needs a text encoder).
            generator: unused — the LQ -> HQ flow draws no noise, restores are deterministic.
            alpha: FDU refinement strength in [0, 1] (Eq. 14; default 0.6).
            frequency_update: ``every_step`` (paper), ``final`` (release) or ``off`` (Table 3 "w/o FDU").
            color_fix: ``none`` / ``wavelet`` / ``adain`` against the upsampled input.
        """
        return sample_window(
            self,
            lq,
            prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            alpha=alpha,
            frequency_update=frequency_update,
            color_fix=color_fix,
        )

    # ------------------------------------------------------------------ checkpoints and export

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        blocks = {k.split(".")[3] for k in state_dict if k.startswith("draft.transformer.blocks.")}
        if blocks and len(blocks) != len(self.draft.kept):
            raise CheckpointError(
                f"the checkpoint's draft has {len(blocks)} blocks, this configuration keeps {len(self.draft.kept)} "
                f"(draft.pruned={self.draft_options.pruned}, draft.out_of={self.draft_options.out_of}); use the checkpoint's"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def export_pretrained(self, directory: str | Path) -> None:
        """``vsr export``: ``base.safetensors`` + ``draft.safetensors`` in the authors' layout (read back with ``pssr_weights``)."""
        save_release(self, directory)


def _score_forward(module: nn.Module, x_t: torch.Tensor, timestep: torch.Tensor, condition: Any) -> torch.Tensor:
    """The plain Wan forward (16-channel input, Wan's head) the real and fake scores of Eq. 8 run."""
    return module(hidden_states=x_t, timestep=timestep, encoder_hidden_states=condition, return_dict=False)[0]


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-value // multiple) * multiple)


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)
