"""Parameter dataclasses of the degradation pipeline, with Real-ESRGAN / RealBasicVSR defaults.

Every range is ``(low, high)`` and sampled uniformly once per clip; ``None`` for an optional stage
turns it off. Defaults are the first-order values of Real-ESRGAN's ``train_realesrgan_x4plus.yml``
(which RealBasicVSR's config repeats); presets in :mod:`.presets` change them where the papers do.
Validation happens at construction and raises :class:`~vsr_core.errors.ConfigError` with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from vsr_core.errors import ConfigError

__all__ = [
    "BlurParams",
    "CodecParams",
    "DegradationParams",
    "DriftParams",
    "FinalParams",
    "JPEGParams",
    "KERNEL_FAMILIES",
    "NoiseParams",
    "OrderParams",
    "REAL_ESRGAN_KERNEL_SIZES",
    "RESIZE_MODES",
    "ResizeParams",
]

#: Kernel families of Real-ESRGAN's ``random_mixed_kernels``: name -> (isotropic, family).
KERNEL_FAMILIES: dict[str, tuple[bool, str]] = {
    "iso": (True, "gaussian"),
    "aniso": (False, "gaussian"),
    "generalized_iso": (True, "generalized"),
    "generalized_aniso": (False, "generalized"),
    "plateau_iso": (True, "plateau"),
    "plateau_aniso": (False, "plateau"),
}
RESIZE_MODES = ("area", "bilinear", "bicubic")
REAL_ESRGAN_KERNEL_SIZES = (7, 9, 11, 13, 15, 17, 19, 21)


def _tuple(value: Any) -> tuple:
    # YAML/JSON configs hand over lists; the dataclasses are frozen and hashable, so store tuples.
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _check_prob(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"degradation option {owner}.{name}={value} must be a probability in [0, 1]")
    return value


def _check_range(
    owner: str, name: str, value: Any, low: float = -math.inf, high: float = math.inf
) -> tuple[float, float]:
    pair = _tuple(value)
    if len(pair) != 2:
        raise ConfigError(f"degradation option {owner}.{name}={list(pair)} must be a [low, high] pair")
    lo, hi = float(pair[0]), float(pair[1])
    if not (low <= lo <= hi <= high):
        raise ConfigError(
            f"degradation option {owner}.{name}=[{lo}, {hi}] must satisfy {low} <= low <= high <= {high}"
        )
    return lo, hi


def _check_probs(owner: str, name: str, value: Any, count: int) -> tuple[float, ...]:
    probs = tuple(float(p) for p in _tuple(value))
    if len(probs) != count or any(p < 0 for p in probs) or sum(probs) <= 0:
        raise ConfigError(
            f"degradation option {owner}.{name}={list(probs)} must be {count} non-negative weights with a positive sum"
        )
    return probs


def _check_choices(owner: str, name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(str(v) for v in _tuple(value))
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise ConfigError(
            f"degradation option {owner}.{name} has unknown entries {unknown or names}; choose from {list(allowed)}"
        )
    return names


def _check_kernel_sizes(owner: str, name: str, value: Any) -> tuple[int, ...]:
    sizes = tuple(int(k) for k in _tuple(value))
    if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
        raise ConfigError(f"degradation option {owner}.{name}={list(sizes)} must be odd kernel sizes >= 1")
    return sizes


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass: normalise in __post_init__


@dataclass(frozen=True)
class BlurParams:
    """Random blur kernel, one per clip (Real-ESRGAN ``random_mixed_kernels`` + 2D sinc).

    With probability ``prob`` the clip is blurred; the kernel is a 2D sinc (``sinc_prob``) or one of
    ``kernel_types`` drawn with ``kernel_probs``. Kernel size is drawn from ``kernel_sizes``;
    sigmas (pixels) from ``sigma`` for each axis, rotation (radians) from ``rotation``, shape
    exponents from ``beta_gaussian`` / ``beta_plateau`` (split at 1 with probability 1/2, as
    Real-ESRGAN does). Sinc cut-off (radians/pixel) from ``sinc_omega_small`` for kernels smaller
    than 13 and ``sinc_omega`` otherwise.
    """

    prob: float = 1.0
    kernel_sizes: tuple[int, ...] = REAL_ESRGAN_KERNEL_SIZES
    kernel_types: tuple[str, ...] = tuple(KERNEL_FAMILIES)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    sigma: tuple[float, float] = (0.2, 3.0)
    rotation: tuple[float, float] = (-math.pi, math.pi)
    beta_gaussian: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    sinc_omega: tuple[float, float] = (math.pi / 5, math.pi)
    sinc_omega_small: tuple[float, float] = (math.pi / 3, math.pi)

    def __post_init__(self) -> None:
        o = "blur"
        _set(self, "prob", _check_prob(o, "prob", self.prob))
        _set(self, "kernel_sizes", _check_kernel_sizes(o, "kernel_sizes", self.kernel_sizes))
        _set(self, "kernel_types", _check_choices(o, "kernel_types", self.kernel_types, tuple(KERNEL_FAMILIES)))
        _set(self, "kernel_probs", _check_probs(o, "kernel_probs", self.kernel_probs, len(self.kernel_types)))
        _set(self, "sinc_prob", _check_prob(o, "sinc_prob", self.sinc_prob))
        _set(self, "sigma", _check_range(o, "sigma", self.sigma, 1e-3))
        _set(self, "rotation", _check_range(o, "rotation", self.rotation, -math.pi, math.pi))
        _set(self, "beta_gaussian", _check_range(o, "beta_gaussian", self.beta_gaussian, 1e-3))
        _set(self, "beta_plateau", _check_range(o, "beta_plateau", self.beta_plateau, 1e-3))
        _set(self, "sinc_omega", _check_range(o, "sinc_omega", self.sinc_omega, 1e-3, math.pi))
        _set(self, "sinc_omega_small", _check_range(o, "sinc_omega_small", self.sinc_omega_small, 1e-3, math.pi))


@dataclass(frozen=True)
class ResizeParams:
    """Random resize of one order: up/down/keep with ``probs``, factor from ``scale``, mode from ``modes``.

    ``relative_to="input"`` scales the current size (Real-ESRGAN first order);
    ``relative_to="output"`` scales the final low-quality size ``H/scale`` (Real-ESRGAN second order).
    An "up" factor is drawn from ``[1, scale[1]]``, a "down" factor from ``[scale[0], 1]``.
    """

    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    scale: tuple[float, float] = (0.15, 1.5)
    modes: tuple[str, ...] = RESIZE_MODES
    relative_to: str = "input"

    def __post_init__(self) -> None:
        o = "resize"
        _set(self, "probs", _check_probs(o, "probs", self.probs, 3))
        _set(self, "scale", _check_range(o, "scale", self.scale, 1e-3))
        _set(self, "modes", _check_choices(o, "modes", self.modes, RESIZE_MODES))
        if self.relative_to not in ("input", "output"):
            raise ConfigError(
                f"degradation option resize.relative_to={self.relative_to!r} must be 'input' or 'output'"
            )


@dataclass(frozen=True)
class NoiseParams:
    """Additive noise: with ``prob``, Gaussian (``gaussian_prob``) or else Poisson; gray with ``gray_prob``.

    ``gaussian_sigma`` is in 8-bit levels (divided by 255), ``poisson_scale`` multiplies Poisson
    shot noise computed at the image's own number of intensity levels (Real-ESRGAN).
    """

    prob: float = 1.0
    gaussian_prob: float = 0.5
    gaussian_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_prob: float = 0.4

    def __post_init__(self) -> None:
        o = "noise"
        _set(self, "prob", _check_prob(o, "prob", self.prob))
        _set(self, "gaussian_prob", _check_prob(o, "gaussian_prob", self.gaussian_prob))
        _set(self, "gaussian_sigma", _check_range(o, "gaussian_sigma", self.gaussian_sigma, 0.0))
        _set(self, "poisson_scale", _check_range(o, "poisson_scale", self.poisson_scale, 0.0))
        _set(self, "gray_prob", _check_prob(o, "gray_prob", self.gray_prob))


@dataclass(frozen=True)
class JPEGParams:
    """JPEG compression (kornia's differentiable codec) with probability ``prob``, quality from ``quality``."""

    prob: float = 1.0
    quality: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        _set(self, "prob", _check_prob("jpeg", "prob", self.prob))
        _set(self, "quality", _check_range("jpeg", "quality", self.quality, 1.0, 100.0))


@dataclass(frozen=True)
class OrderParams:
    """One degradation order: blur -> resize -> noise -> JPEG; any stage may be ``None`` (skipped)."""

    blur: BlurParams | None = field(default_factory=BlurParams)
    resize: ResizeParams | None = field(default_factory=ResizeParams)
    noise: NoiseParams | None = field(default_factory=NoiseParams)
    jpeg: JPEGParams | None = field(default_factory=JPEGParams)


@dataclass(frozen=True)
class FinalParams:
    """Last device stage: resize to ``H/scale`` with a mode from ``modes``, then a sinc filter and JPEG.

    With probability ``jpeg_first_prob`` JPEG runs before the resize+sinc (Real-ESRGAN's random
    order). ``antialias`` low-passes bilinear/bicubic downscaling (torch ``antialias=True``).
    """

    modes: tuple[str, ...] = RESIZE_MODES
    antialias: bool = False
    sinc_prob: float = 0.8
    sinc_kernel_sizes: tuple[int, ...] = REAL_ESRGAN_KERNEL_SIZES
    sinc_omega: tuple[float, float] = (math.pi / 3, math.pi)
    jpeg: JPEGParams | None = field(default_factory=JPEGParams)
    jpeg_first_prob: float = 0.5

    def __post_init__(self) -> None:
        o = "final"
        _set(self, "modes", _check_choices(o, "modes", self.modes, RESIZE_MODES))
        _set(self, "antialias", bool(self.antialias))
        _set(self, "sinc_prob", _check_prob(o, "sinc_prob", self.sinc_prob))
        _set(self, "sinc_kernel_sizes", _check_kernel_sizes(o, "sinc_kernel_sizes", self.sinc_kernel_sizes))
        _set(self, "sinc_omega", _check_range(o, "sinc_omega", self.sinc_omega, 1e-3, math.pi))
        _set(self, "jpeg_first_prob", _check_prob(o, "jpeg_first_prob", self.jpeg_first_prob))


@dataclass(frozen=True)
class CodecParams:
    """Video codec round trip (PyAV, CPU) of the final low-quality clip.

    With ``prob`` a clip is encoded with a codec from ``codecs`` (weights ``codec_probs``) at a
    bitrate drawn from ``bitrate`` (bit/s at 1 frame/s, i.e. bits per frame, as RealBasicVSR). The
    range is meant for ``reference_pixels`` pixels per frame (RealBasicVSR's 64x64 crops) and is
    scaled by ``h*w/reference_pixels`` for other sizes; ``reference_pixels=None`` uses it as is.
    ``workers`` threads encode the clips of a batch in parallel.
    """

    prob: float = 1.0
    codecs: tuple[str, ...] = ("libx264", "mpeg4")
    codec_probs: tuple[float, ...] = (2 / 3, 1 / 3)
    bitrate: tuple[float, float] = (1e4, 1e5)
    reference_pixels: int | None = 64 * 64
    workers: int = 4

    def __post_init__(self) -> None:
        import av  # local: only the codec stage needs PyAV

        o = "codec"
        _set(self, "prob", _check_prob(o, "prob", self.prob))
        codecs = tuple(str(c) for c in _tuple(self.codecs))
        for name in codecs:
            try:
                usable = av.codec.Codec(name, "w").type == "video"
            except ValueError:  # av.codec.UnknownCodecError
                usable = False
            if not usable:
                raise ConfigError(
                    f"degradation option codec.codecs has {name!r}, not a video encoder of this FFmpeg build; use 'libx264' or 'mpeg4'"
                )
        _set(self, "codecs", codecs)
        _set(self, "codec_probs", _check_probs(o, "codec_probs", self.codec_probs, len(self.codecs)))
        _set(self, "bitrate", _check_range(o, "bitrate", self.bitrate, 1.0))
        if self.reference_pixels is not None and int(self.reference_pixels) < 1:
            raise ConfigError(
                f"degradation option codec.reference_pixels={self.reference_pixels} must be >= 1 or null"
            )
        if int(self.workers) < 1:
            raise ConfigError(f"degradation option codec.workers={self.workers} must be >= 1")
        _set(self, "workers", int(self.workers))


@dataclass(frozen=True)
class DriftParams:
    """Smooth per-clip parameter drift across frames (RealBasicVSR's ``*_step`` values).

    Each drifting parameter moves linearly from its sampled start value to an end value
    ``start + u * step * sqrt(T - 1)`` (``u`` uniform in ``[-1, 1]``, clipped to the parameter's
    range): the same spread as RealBasicVSR's per-frame random walk of ``step``, without jitter.
    Steps are per frame: ``sigma`` (pixels), ``rotation`` (radians), ``beta_gaussian``,
    ``beta_plateau``, ``sinc_omega`` (radians/pixel), ``gaussian_sigma`` (8-bit levels),
    ``poisson_scale``, ``jpeg_quality``. Resize factors and codec settings never drift (all frames of a
    clip must keep one size, and a codec runs once per clip).
    """

    sigma: float = 0.02
    rotation: float = 0.31416
    beta_gaussian: float = 0.05
    beta_plateau: float = 0.1
    sinc_omega: float = 0.0628
    gaussian_sigma: float = 0.1
    poisson_scale: float = 0.005
    jpeg_quality: float = 3.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            if value < 0:
                raise ConfigError(f"degradation option drift.{f.name}={value} must be >= 0")
            _set(self, f.name, value)


@dataclass(frozen=True)
class DegradationParams:
    """The whole pipeline: ``first`` and ``second`` orders, ``final`` resize, ``codec``, ``drift``.

    ``final=None`` keeps the size (only valid for scale 1); ``quantize`` rounds the result to 8-bit
    levels as Real-ESRGAN/RealBasicVSR do (the codec stage always works on 8-bit frames).
    """

    first: OrderParams | None = field(default_factory=OrderParams)
    second: OrderParams | None = None
    final: FinalParams | None = field(default_factory=FinalParams)
    codec: CodecParams | None = None
    drift: DriftParams | None = None
    quantize: bool = True
