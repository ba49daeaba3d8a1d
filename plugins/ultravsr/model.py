"""``UltraVSR``: one-step video super-resolution on Stable Diffusion 2.1 (Liu et al., ACM MM 2025).

Restore (Fig. 3, Sec. 3.2, 3.5): the LR video is upsampled (bicubic), the DEM gives a degradation factor
``d`` (Eq. 2) and with it the timestep ``t_rec`` (Eq. 4); the VAE encoder (LoRA) gives ``z_LR``, the UNet with
RTS modules (LoRA) predicts ``est`` at ``t_rec``, Eq. 3 turns it into ``z_HR`` in one step and the VAE decoder
with RTS modules gives ``V_HR``; a wavelet colour fix against the upsampled input ends it. Spatial layers run
on ``b`` frames at a time while RTS propagation sees the whole interval (TAI).

Training (Sec. 3.4, 4.1.2), four networks with their own Adam: the *generator* (LoRA + RTS + the UNet's
``conv_in``) learns from ``MSE + perceptual + temporal GAN + SJD`` (Eq. 9-11); the *fake TRU* (SD UNet + LoRA
+ RTS) denoises the generator's latents, the *real TRU* (SD UNet + RTS) ground-truth latents, both with the
standard denoising loss; the *temporal discriminator* (3D PatchGAN) tells real clips from generated ones.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_blocks import (
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
)
from torch import nn

from ultravsr.dem import DegradationEstimator
from ultravsr.drs import degradation_range, fixed_schedule, reconstruct, reconstruction_timestep
from ultravsr.options import (
    DEMOptions,
    DRSOptions,
    GeneratorLossOptions,
    RTSOptions,
    SJDOptions,
    TAIOptions,
    UltraVSRLoRA,
    UltraVSRSampling,
)
from ultravsr.presets import get_preset
from ultravsr.rts import rts_factory
from ultravsr.tai import interval_bounds, tiled
from ultravsr.unet import UNET_ADAPTERS, attach_unet_rts, check_sd_unet, release_unet_targets, run_unet
from ultravsr.vae import VAE_ADAPTER, attach_decoder_rts, decode_latents, encode_frames, release_vae_targets
from ultravsr.weights import RELEASE_FILE, load_release, read_release, release_record, write_release
from vsr_core.checkpoint import loading_checkpoint
from vsr_core.diffusion import DDPMSchedule
from vsr_core.errors import ConfigError, PretrainedError
from vsr_core.inference import adain_color_fix, wavelet_color_fix
from vsr_core.latent import AutoencoderKLCodec
from vsr_core.lora import add_lora
from vsr_core.losses import (
    DistributionMatching,
    ModuleScore,
    PerceptualLoss,
    TemporalPatchDiscriminator,
    activate_adapters,
    d_loss,
    denoising_loss,
    g_loss,
    use_adapters,
)
from vsr_core.method import VSRMethod
from vsr_core.pretrained import as_dtype, locate_component, resolve_pretrained
from vsr_core.text import PromptEncoder
from vsr_core.video_ops import pad_spatial, padded_size, upsample_frames

__all__ = ["UltraVSR", "WindowState"]

COLOR_FIXES = {"wavelet": wavelet_color_fix, "adain": adain_color_fix}
_COLOR_FIX_FRAMES = 8


@dataclass
class WindowState:
    """What :meth:`UltraVSR.prepare_window` hands to the step and the decoder for one window.

    ``reference`` ``[B,3,T,H,W]`` the bicubic-upsampled input (colour fix); ``latents`` ``[B,c,T,h,w]`` ``z_LR``
    (padded); ``context`` ``[B,L,D]``; ``d``, ``t`` ``[B]``; ``size`` the output ``(H, W)``; ``frames_per_batch``
    TAI's ``b``.
    """

    reference: torch.Tensor
    latents: torch.Tensor
    context: torch.Tensor
    d: torch.Tensor
    t: torch.Tensor
    size: tuple[int, int]
    frames_per_batch: int | None


def _tru_forward(module: nn.Module, x_t: torch.Tensor, timestep: torch.Tensor, context: Any) -> torch.Tensor:
    """A Temporal Regularized UNet as a score model: ``[B,c,T,h,w]`` noised latents -> epsilon."""
    return run_unet(module, x_t, timestep, context)


@contextlib.contextmanager
def _no_weight_grads(module: nn.Module) -> Iterator[None]:
    """Within the block ``module``'s weights take no gradient (its input still does); restored after."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class UltraVSR(VSRMethod):
    """UltraVSR: DRS one-step reconstruction, RTS modules, SJD training, temporally asynchronous inference.

    ``restore(lq [B,3,T,h,w]) -> [B,3,T,h*scale,w*scale]`` in ``[-1, 1]``, one UNet evaluation per window.
    Components: ``unet`` (diffusers ``UNet2DConditionModel`` with LoRA adapters ``default_encoder`` /
    ``default_decoder`` / ``default_others`` and RTS modules), ``codec`` (``AutoencoderKLCodec``; its ``vae`` has
    the encoder LoRA ``default_encoder`` and the decoder RTS modules), ``prompt_encoder`` (CLIP), ``schedule``;
    for fit also ``fake_tru``, ``real_tru``, ``discriminator``, ``perceptual``. The DEM is a helper held outside.

    Args:
        scale: upscaling factor (the LR video is bicubic-upsampled before the VAE, as the release does).
        preset: ``tiny`` (CPU) or ``real`` (SD 2.1-base shapes; random weights unless ``pretrained``).
        pretrained: a local Stable Diffusion 2.x diffusers folder (``unet/``, ``vae/``, ``scheduler/``, and
            ``text_encoder/`` + ``tokenizer/`` for prompts) or hub id; its shapes replace the preset's.
        weights: the release's ``model_vsr.pkl`` or a ``vsr export`` folder of this class (LoRA, RTS, ``conv_in``).
        torch_dtype: dtype of the frozen weights (``bfloat16`` at full size).
        seed: seed of the random base weights of a preset (without ``pretrained``).
        text_encoder: ``auto`` (CLIP when ``pretrained`` has one, else ``none``), ``clip`` (prompts), ``empty``
            (the real embedding of ``""``) or ``none`` (a zero embedding, no text encoder).
        ignore_prompts: without a text encoder, drop given prompts (warn once) instead of failing.
        lora, rts, drs, dem, sjd, losses, tai, sampling: the option groups of :mod:`ultravsr.options`.
        adam_betas: betas of every network's Adam (the paper: 0.9, 0.99).
        learning_rate: of every network (the paper: 5e-5).
        **kwargs: the core's arguments (``optimizer``, ``optimizer_overrides``, ``group_schedules``,
            ``val_sampling``, ...).
    """

    fsdp_block_classes = (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D)
    generator_groups: ClassVar[tuple[str, ...]] = ("generator",)
    training_only_modules: ClassVar[tuple[str, ...]] = ("fake_tru", "real_tru", "discriminator", "perceptual")
    export_init_arg: ClassVar[str | None] = "weights"
    #: prepare_window / denoise_step / finish_window serve ``restore`` only: a window is scored by the DEM once
    #: (one ``d`` and ``t_rec`` for all its frames and tiles, Eq. 2 and 4), split into TAI's intervals and tiled
    #: in latents with Gaussian weights inside; engine-level latent fusion would score each tile apart.
    #: ``vsr restore`` fuses UltraVSR's windows in pixels.
    latent_layout = None
    tiny_init_args: ClassVar[dict[str, Any]] = {"scale": 4, "preset": "tiny"}

    def __init__(
        self,
        scale: int = 4,
        preset: Literal["tiny", "real"] = "tiny",
        pretrained: str | None = None,
        weights: str | None = None,
        torch_dtype: str | None = None,
        seed: int = 0,
        text_encoder: Literal["auto", "clip", "empty", "none"] = "auto",
        ignore_prompts: bool = True,
        lora: UltraVSRLoRA = UltraVSRLoRA(),
        rts: RTSOptions = RTSOptions(),
        drs: DRSOptions = DRSOptions(),
        dem: DEMOptions = DEMOptions(),
        sjd: SJDOptions = SJDOptions(),
        losses: GeneratorLossOptions = GeneratorLossOptions(),
        tai: TAIOptions = TAIOptions(),
        sampling: UltraVSRSampling = UltraVSRSampling(),
        adam_betas: tuple[float, float] = (0.9, 0.99),
        learning_rate: float = 5e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(scale=scale, learning_rate=learning_rate, **kwargs)
        self.automatic_optimization = False
        self.lora, self.rts, self.drs = UltraVSRLoRA.coerce(lora), RTSOptions.coerce(rts), DRSOptions.coerce(drs)
        self.dem, self.sjd, self.losses = (
            DEMOptions.coerce(dem),
            SJDOptions.coerce(sjd),
            GeneratorLossOptions.coerce(losses),
        )
        self.tai, self.sampling = TAIOptions.coerce(tai), UltraVSRSampling.coerce(sampling)
        self.adam_betas = tuple(adam_betas)
        self.preset, self.pretrained, self.seed = preset, pretrained, seed
        self.spec = get_preset(preset)
        self.temporal_window = self.spec.temporal_window
        self.frozen_dtype = as_dtype(torch_dtype)
        if pretrained:
            resolve_pretrained(pretrained, "unet")  # one line naming a missing component, before anything loads
            resolve_pretrained(pretrained, "vae")
            self.schedule = DDPMSchedule.from_pretrained(pretrained)
        else:
            self.schedule = DDPMSchedule.preset("sd2.1-base")
        if self.schedule.prediction_type != "epsilon":
            raise PretrainedError(
                f"{pretrained}/scheduler predicts {self.schedule.prediction_type}; "
                "UltraVSR needs SD 2.1-base's epsilon"
            )
        if self.drs.fixed_timestep >= self.schedule.num_train_timesteps:
            raise ConfigError(
                f"drs.fixed_timestep {self.drs.fixed_timestep} is outside the schedule's "
                f"0..{self.schedule.num_train_timesteps - 1}"
            )

        self.codec = self._build_codec()
        self.unet = self._build_unet()
        self.prompt_encoder = self._build_prompt_encoder(text_encoder, ignore_prompts)
        self.mark_rebuildable(self.unet, self.codec)  # frozen weights come back from `pretrained` / the seed
        self._estimators: dict[str, DegradationEstimator] = {}
        self._said_clamp = False
        self.fake_tru: nn.Module | None = None
        self.real_tru: nn.Module | None = None
        self.discriminator: nn.Module | None = None
        self.perceptual: nn.Module | None = None
        self._sjd: DistributionMatching | None = None
        if weights and not loading_checkpoint():  # a checkpoint carries the trained weights itself
            self.load_weights(weights)

    # ------------------------------------------------------------------ construction

    @property
    def full_finetune(self) -> bool:
        return self.lora.finetune == "full"

    def _random_init(self, build: Any) -> Any:
        # Seeded apart from the run's RNG: the same random base on every rank, in every rebuild.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return build()

    def _cast_frozen(self, module: nn.Module) -> None:
        if self.frozen_dtype is not None:
            for p in module.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(self.frozen_dtype)

    def _build_codec(self) -> AutoencoderKLCodec:
        trainable = self.full_finetune
        if self.pretrained:
            codec = AutoencoderKLCodec.from_pretrained(self.pretrained, trainable=trainable)
        else:
            codec = AutoencoderKLCodec(
                preset=self.spec.vae_preset, config=self.spec.vae_config, seed=self.seed, trainable=trainable
            )
        vae = codec.vae
        if not self.full_finetune:
            add_lora(
                vae,
                self.lora.vae_rank,
                self.lora.vae_alpha,
                self.vae_lora_targets(vae),
                VAE_ADAPTER,
                self.lora.dropout,
            )
        if self.rts.enabled and self.rts.vae_decoder:
            attach_decoder_rts(vae, rts_factory(self.rts, self.spec.rts))
        for name, p in vae.named_parameters():
            p.requires_grad_(self.full_finetune or "lora_" in name or "RTS" in name)
        self._cast_frozen(vae)
        return codec

    def base_unet(self) -> UNet2DConditionModel:
        """The SD UNet without LoRA or RTS: ``pretrained/unet`` or the preset's config with seeded random weights."""
        if self.pretrained:
            folder = resolve_pretrained(self.pretrained, "unet")
            unet = UNet2DConditionModel.from_pretrained(folder)
        else:
            unet = self._random_init(lambda: UNet2DConditionModel(**self.spec.unet))
            # A random base's noise estimate is noise: its output layer starts at zero instead, so the untrained
            # generator is the VAE on z_LR / d (Eq. 3 with est = 0) and the TRUs start equal.
            if unet.conv_out.weight.device.type != "meta":
                nn.init.zeros_(unet.conv_out.weight)
                nn.init.zeros_(unet.conv_out.bias)
        check_sd_unet(unet, f"{self.pretrained}/unet" if self.pretrained else "the preset UNet")
        if unet.config.in_channels != self.codec.latent_channels:
            raise PretrainedError(
                f"the UNet reads {unet.config.in_channels} channels, the VAE gives {self.codec.latent_channels}"
            )
        return unet

    def unet_lora_targets(self, unet: nn.Module) -> dict[str, list[str]]:
        """The three adapters' target modules (the release's rule on ``lora.targets``); empty when fully fine-tuned."""
        return {} if self.full_finetune else release_unet_targets(unet, self.lora.targets)

    def vae_lora_targets(self, vae: nn.Module) -> list[str]:
        """The VAE encoder adapter's target modules (the release's rule on ``lora.vae_targets``)."""
        return [] if self.full_finetune else release_vae_targets(vae, self.lora.vae_targets)

    def _add_unet_lora(self, unet: nn.Module, targets: dict[str, list[str]]) -> None:
        used = [name for name in UNET_ADAPTERS if targets.get(name)]
        with warnings.catch_warnings():  # peft warns that a second adapter is added: the release has three
            warnings.filterwarnings("ignore", message=".*Already found a `peft_config` attribute.*")
            for name in used:
                add_lora(unet, self.lora.rank, self.lora.alpha, targets[name], name, self.lora.dropout)
        if used:
            activate_adapters(unet, used)  # add_lora activates only the newest adapter

    def _build_unet(self) -> UNet2DConditionModel:
        unet = self.base_unet()
        self._add_unet_lora(unet, self.unet_lora_targets(unet))
        if self.rts.enabled and self.rts.unet:
            attach_unet_rts(unet, rts_factory(self.rts, self.spec.rts))
        conv_in = self.lora.train_conv_in
        for name, p in unet.named_parameters():
            p.requires_grad_(
                self.full_finetune or "lora_" in name or "RTS" in name or (conv_in and name.startswith("conv_in."))
            )
        self._cast_frozen(unet)
        return unet

    def _build_prompt_encoder(self, mode: str, ignore_prompts: bool) -> PromptEncoder:
        width = int(self.unet.config.cross_attention_dim)
        if mode == "auto":
            has_text = bool(self.pretrained) and locate_component(self.pretrained, "text_encoder") is not None
            mode = "clip" if has_text else "none"
        if mode in ("clip", "empty"):
            if not self.pretrained:
                raise ConfigError(
                    f"text_encoder={mode} reads pretrained/text_encoder; give pretrained= or use text_encoder=none"
                )
            return PromptEncoder.from_pretrained(
                self.pretrained,
                kind="clip",
                empty=mode == "empty",
                width=width,
                ignore_prompts=ignore_prompts,
                owner="UltraVSR",
            )
        if mode != "none":
            raise ConfigError(f"text_encoder must be auto, clip, empty or none; got {mode!r}")
        return PromptEncoder.zeros(width, self.spec.text_tokens, ignore_prompts=ignore_prompts, owner="UltraVSR")

    # ------------------------------------------------------------------ training-only networks

    def _tru(self, lora: bool) -> UNet2DConditionModel:
        """A Temporal Regularized UNet (Sec. 3.4): the SD UNet with RTS modules; trainable RTS (and LoRA)."""
        unet = self.base_unet()
        if lora:
            targets = release_unet_targets(unet, self.lora.targets)
            self._add_unet_lora(unet, targets)
        attach_unet_rts(unet, rts_factory(self.rts.replace(conv=True, attention_unit=True), self.spec.rts))
        # A random base's output layer starts at zero (base_unet): frozen and without an adapter of its own (the
        # real TRU's), it would block every gradient to the RTS modules under it; without `pretrained` it trains.
        head = () if self.pretrained else ("conv_out.weight", "conv_out.bias")
        for name, p in unet.named_parameters():
            p.requires_grad_("lora_" in name or "RTS" in name or name in head)
        self._cast_frozen(unet)
        return unet

    def build_training_modules(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.fake_tru = self._tru(lora=True)
            self.real_tru = self._tru(lora=self.sjd.real_tru == "rts+lora")
            if self.sjd.real_tru == "frozen":
                self.real_tru.requires_grad_(False)
            self.discriminator = TemporalPatchDiscriminator(
                3, kernel_size=(3, 5, 5), spectral_norm=True, norm="none", **self.spec.discriminator
            )
        self.perceptual = PerceptualLoss(self.losses.perceptual_kind)
        self.mark_rebuildable(self.fake_tru, self.real_tru)
        for module in (self.fake_tru, self.real_tru, self.discriminator):
            module.to(self.device)
        self.estimator().check_available()  # a missing CLIP-IQA file fails before the first step
        self._sjd = DistributionMatching(
            self.schedule,
            ModuleScore(self.real_tru, _tru_forward),
            ModuleScore(self.fake_tru, _tru_forward),
            t_min=self.sjd.t_min,
            t_max=min(self.sjd.t_max, self.schedule.num_train_timesteps),
            guidance_scale=self.sjd.guidance_scale,
            weighting=self.sjd.weighting,
            temporal_weight=self.sjd.temporal_weight,  # lambda of Eq. 9 on the Eq. 11 term
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        self.ensure_training_modules()
        trainable = lambda module: [p for p in module.parameters() if p.requires_grad]  # noqa: E731
        groups = {
            "generator": trainable(self.unet) + trainable(self.codec),
            "fake_tru": trainable(self.fake_tru),
            "real_tru": trainable(self.real_tru),
            "discriminator": trainable(self.discriminator),
        }
        if not groups["real_tru"]:
            del groups["real_tru"]  # sjd.real_tru = frozen
        return groups

    def configure_optimizers(self) -> Any:
        configs = super().configure_optimizers()
        if self.optimizer_factory is None:  # the core's AdamW without weight decay is Adam: give it the paper's betas
            listed = configs if isinstance(configs, list) else [configs]
            for name, config in zip(self.parameter_groups(), listed, strict=True):
                if "betas" not in self.optimizer_overrides.get(name, {}):
                    for group in config["optimizer"].param_groups:
                        group["betas"] = self.adam_betas
        return configs

    # ------------------------------------------------------------------ DRS (Sec. 3.2)

    def estimator(self, kind: str | None = None) -> DegradationEstimator:
        """The DEM of ``dem`` (or of another ``kind``), built once."""
        options = self.dem if kind is None else self.dem.replace(kind=kind)
        if options.kind not in self._estimators:
            self._estimators[options.kind] = DegradationEstimator(options)
        return self._estimators[options.kind]

    def degradation(self, lq_up: torch.Tensor, dem: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d [B], t_rec [B])`` for upsampled LR videos ``[B,3,T,H,W]`` (Eq. 2 and 4, or Table 3 row A's fixed t)."""
        alphas = self.schedule.alphas_cumprod.to(lq_up.device)
        if self.drs.schedule == "fixed":
            return fixed_schedule(self.drs.fixed_timestep, alphas, lq_up.shape[0])
        d = self.estimator(dem)(lq_up).to(lq_up.device)  # Eq. 2
        low, high = degradation_range(alphas)
        if ((d < low) | (d > high)).any() and not self._said_clamp:
            self._said_clamp = True
            warnings.warn(
                f"UltraVSR: degradation factor d={d.min().item():.4g}..{d.max().item():.4g} clamped to the schedule's "
                f"[{low:.4g}, {high:.4g}] (d = sqrt(alpha_bar_t) must be a noise level of the schedule)",
                stacklevel=2,
            )
        d = d.clamp(low, high)
        return d.float(), reconstruction_timestep(d, alphas, self.drs.match)  # Eq. 4

    # ------------------------------------------------------------------ the generator, in three steps

    @property
    def spatial_multiple(self) -> int:
        """LR sizes the engine pads to: the VAE factor times the UNet's downsampling, over the scale."""
        multiple = self.codec.spatial_factor * 2 ** int(self.unet.num_upsamplers)
        return max(1, -(-multiple // self.scale))

    def _pretrained_encode(self, video: torch.Tensor) -> torch.Tensor:
        """``E(video)`` with the pretrained encoder (adapters off, weights taking no gradient; Eq. 10's E)."""
        adapters = use_adapters(self.codec.vae, None) if not self.full_finetune else contextlib.nullcontext()
        with adapters, _no_weight_grads(self.codec):
            return self.codec.encode(video)

    def _frames_per_batch(self, value: int | None) -> int | None:
        b = self.tai.frames_per_batch if value is None else int(value)
        if b < 0:
            raise ConfigError(f"frames_per_batch must be >= 0 (0: all frames at once), got {b}")
        return b or None

    def prepare_window(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        frames_per_batch: int | None = None,
        dem: str | None = None,
        degradation: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> WindowState:
        """Upsample, DEM (unless ``degradation`` is given), VAE encoder (TAI, tiles), text: ``lq [B,3,T,h,w]``."""
        b = self._frames_per_batch(frames_per_batch)
        up = upsample_frames(lq, self.scale)
        height, width = up.shape[-2:]
        d, t = degradation if degradation is not None else self.degradation(up, dem)
        multiple = self.spatial_multiple * self.scale
        padded = pad_spatial(up, padded_size(height, multiple), padded_size(width, multiple))
        f = self.codec.spatial_factor
        tai = self.tai
        grid = (padded.shape[-2] // f, padded.shape[-1] // f)
        latents = tiled(
            lambda x: encode_frames(self.codec, x, b),
            padded,
            tai.encoder_tile // f,
            tai.encoder_tile_overlap // f,
            grid,
            in_scale=f,
        )
        context = self.prompt_encoder(prompt, lq.shape[0], lq.device, latents.dtype)
        return WindowState(up, latents, context, d, t, (height, width), b)

    def denoise_step(self, state: WindowState, i: int, latents: torch.Tensor) -> torch.Tensor:
        """The one step: ``est = UNet(z_LR, t_rec)`` (TAI, tiles); Eq. 3: ``z_HR = (z_LR - sqrt(1-d^2) est) / d``."""
        if i != 0:
            raise ConfigError(f"UltraVSR takes exactly one step (step 0), got step {i}")
        tai = self.tai

        def unet(z: torch.Tensor) -> torch.Tensor:
            return run_unet(self.unet, z, state.t, state.context, state.frames_per_batch)

        est = tiled(unet, latents, tai.latent_tile, tai.latent_tile_overlap, latents.shape[-2:])
        return reconstruct(latents, est, state.d)  # Eq. 3

    def finish_window(self, state: WindowState, latents: torch.Tensor, color_fix: str | None = None) -> torch.Tensor:
        """VAE decoder with RTS (TAI, tiles), crop, colour fix: ``z_HR`` -> ``[B,3,T,H,W]`` in ``[-1, 1]``."""
        tai, f = self.tai, self.codec.spatial_factor
        video = tiled(
            lambda z: decode_latents(self.codec, z, state.frames_per_batch),
            latents,
            tai.decoder_tile,
            tai.decoder_tile_overlap,
            latents.shape[-2:],
            out_scale=f,
        )
        height, width = state.size
        video = video[..., :height, :width]
        fix = self.sampling.color_fix if color_fix is None else color_fix
        if fix == "none":
            return video.clamp(-1, 1)
        if fix not in COLOR_FIXES:
            raise ConfigError(f"color_fix must be none, {', '.join(COLOR_FIXES)}; got {fix!r}")
        out = torch.empty_like(video)
        step = _COLOR_FIX_FRAMES  # a per-frame operation: a few frames at a time bound its working memory
        for start in range(0, video.shape[2], step):
            part = slice(start, start + step)
            out[:, :, part] = COLOR_FIXES[fix](video[:, :, part], state.reference[:, :, part]).clamp(-1, 1)
        return out

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        prompt: list[str] | None = None,
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        frames_per_batch: int | None = None,
        interval_frames: int | None = None,
        dem: Literal["clipiqa", "constant", "tiny"] | None = None,
        color_fix: Literal["none", "wavelet", "adain"] | None = None,
    ) -> torch.Tensor:
        """Restore one window ``[B,3,T,h,w] -> [B,3,T,h*scale,w*scale]`` in ``[-1, 1]`` with one UNet evaluation.

        Args:
            num_inference_steps: must be 1 (the default).
            guidance_scale: must be 1 (the default).
            generator: unused: the one-step reconstruction draws no noise (the posterior mean is encoded).
            frames_per_batch: TAI's ``b``: frames per spatial call of encoder, UNet and decoder (0: all at once);
                default ``tai.frames_per_batch`` (1, the release).
            interval_frames: frames per interval for large, long windows (default ``tai.interval_frames``, 30).
            dem: the DEM for this call (``constant`` when CLIP-IQA weights are missing); default ``dem.kind``.
            color_fix: default ``sampling.color_fix`` (``wavelet``, the release).
        """
        steps = self.sampling.num_inference_steps if num_inference_steps is None else num_inference_steps
        if steps != 1:
            raise ConfigError(f"UltraVSR is a one-step model; num_inference_steps must be 1, got {steps}")
        guidance = self.sampling.guidance_scale if guidance_scale is None else guidance_scale
        if guidance != 1.0:
            raise ConfigError(
                f"UltraVSR restores without classifier-free guidance; guidance_scale must be 1, got {guidance}"
            )
        interval = self.tai.interval_frames if interval_frames is None else int(interval_frames)
        frames = lq.shape[2]
        # One DEM score for the whole window (the release scores the whole video once, Eq. 2).
        degradation = self.degradation(upsample_frames(lq, self.scale), dem)
        height, width = lq.shape[-2] * self.scale, lq.shape[-1] * self.scale
        parts = []
        for start, end in interval_bounds(frames, interval, height, width, self.tai.interval_min_size):
            state = self.prepare_window(
                lq[:, :, start:end], prompt, frames_per_batch=frames_per_batch, degradation=degradation
            )
            latents = self.denoise_step(state, 0, state.latents)
            parts.append(self.finish_window(state, latents, color_fix))
        return torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]

    # ------------------------------------------------------------------ training (Sec. 3.4, 4.1.2)

    def generate(self, lq: torch.Tensor, prompt: list[str] | None) -> dict[str, torch.Tensor]:
        """The generator with gradients on a training clip (all frames at once, no tiles).

        Returns ``video`` ``[B,3,T,H,W]`` (not colour-fixed), ``z_hr`` / ``z_lr`` ``[B,c,T,h,w]``, ``context``,
        ``d``, ``t``.
        """
        up = upsample_frames(lq, self.scale)
        d, t = self.degradation(up)
        z_lr = self.codec.encode(up)
        context = self.prompt_encoder(prompt, lq.shape[0], lq.device, z_lr.dtype)
        est = run_unet(self.unet, z_lr, t, context)
        z_hr = reconstruct(z_lr, est, d)  # Eq. 3
        video = decode_latents(self.codec, z_hr)
        return {"video": video, "z_hr": z_hr, "z_lr": z_lr, "context": context, "d": d, "t": t}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hq, lq = batch["hq"], batch["lq"]
        generator = self.step_generator(device=hq.device)
        out = self.generate(lq, batch.get("prompt"))
        video, context = out["video"], out["context"]
        with torch.no_grad():
            z_gt = self._pretrained_encode(hq)  # the real TRU's data: ground-truth latents
        # Eq. 10: z_0 = E(V_HR) (re-encoded output), or the generator's own latent (sjd.latent = generator).
        z_gen = self._pretrained_encode(video) if self.sjd.latent == "reencode" else out["z_hr"]
        uncond = None
        if self.sjd.guidance_scale != 1.0:
            uncond = self.prompt_encoder.negative_embeddings(hq.shape[0], hq.device, context.dtype)

        logged: dict[str, torch.Tensor] = {}
        logged["fake_tru"] = self.optimize("fake_tru", lambda: self._sjd.fake_score_loss(z_gen, context, generator))
        if self.sjd.real_tru != "frozen":
            real = ModuleScore(self.real_tru, _tru_forward)
            logged["real_tru"] = self.optimize(
                "real_tru", lambda: denoising_loss(real, self.schedule, z_gt, context, generator)
            )
        kind = self.losses.gan_loss
        logged["discriminator"] = self.optimize(
            "discriminator", lambda: d_loss(self.discriminator(hq), self.discriminator(video.detach()), kind)
        )

        def generator_loss() -> torch.Tensor:
            w = self.losses
            parts = {
                "mse": F.mse_loss(video.float(), hq.float()),
                "perceptual": self.perceptual(video, hq),
                "adversarial": g_loss(self.discriminator(video), kind),
            }
            total = w.mse * parts["mse"] + w.perceptual * parts["perceptual"] + w.adversarial * parts["adversarial"]
            if self.sjd.weight > 0:  # two TRU evaluations: skipped when SJD is switched off
                sjd = self._sjd.generator_loss(z_gen, context, uncond, generator)  # Eq. 9-11
                parts["sjd"] = sjd.loss
                total = total + self.sjd.weight * sjd.loss
                if sjd.consistency is not None:
                    logged["sjd_consistency"] = sjd.consistency.detach()
            logged.update({name: value.detach() for name, value in parts.items()})
            return total

        total = self.optimize("generator", generator_loss)
        logged["d"] = out["d"].mean()
        self.log_losses({k: v for k, v in logged.items() if v is not None}, total=total)

    # ------------------------------------------------------------------ weights

    def _release_arguments(self) -> dict[str, Any]:
        return {
            "unet": self.unet,
            "vae": self.codec.vae,
            "unet_rank": 0 if self.full_finetune else self.lora.rank,
            "vae_rank": 0 if self.full_finetune else self.lora.vae_rank,
            "unet_targets": self.unet_lora_targets(self.unet),
            "vae_targets": self.vae_lora_targets(self.codec.vae),
            "everything": self.full_finetune,
        }

    def release_record(self) -> dict[str, Any]:
        """The generator's trained weights as the release's ``model_vsr.pkl`` dict (see :mod:`ultravsr.weights`)."""
        return release_record(**self._release_arguments())

    def load_weights(self, path: str | Path) -> None:
        """Load the release's ``model_vsr.pkl`` (or a ``vsr export`` folder of this class) into the generator."""
        record = read_release(path)
        load_release(record, str(path), **self._release_arguments())

    def export_pretrained(self, directory: str | Path) -> None:
        """``vsr export``: ``model_vsr.pkl`` in the release's layout; ``UltraVSR(weights=directory)`` reads it back."""
        write_release(self.release_record(), Path(directory) / RELEASE_FILE)
