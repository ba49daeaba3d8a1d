"""Video sources: where training/evaluation clips come from.

A :class:`VideoSource` lists :class:`VideoItem` s (one per clip: a video file or a frame folder,
with its size, frame count, caption and, for paired data, the low-quality counterpart). Listing
happens on first use of :meth:`VideoSource.items`, not in ``__init__``, so building a source from
a config (``vsr fit --print_config``) touches no files.

* :class:`VideoFolder` — every video / frame folder under a directory, with captions.
* :class:`PairedFolders` — HQ and LQ trees paired by relative path (REDS4, UDM10, SPMCS, YouHQ40).
* :class:`SampleClips` — the built-in real-texture clips (:mod:`vsr_core.data.sample_clips`).
"""

from __future__ import annotations

import json
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vsr_core.data.sample_clips import ensure_sample_clips
from vsr_core.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoInfo, probe_video
from vsr_core.errors import DataError, TruncatedVideoError, VideoError

__all__ = [
    "DataWarning",
    "ItemList",
    "limit_items",
    "PairedFolders",
    "SampleClips",
    "VideoFolder",
    "VideoItem",
    "VideoSource",
]


class DataWarning(UserWarning):
    """A clip or file was skipped (unreadable, too short, too small, unpaired); training goes on."""


@dataclass(frozen=True)
class VideoItem:
    """One clip of a source: ``path`` is a video file or a frame folder.

    ``num_frames``/``height``/``width`` describe the (upright) HQ frames. Paired items also carry
    ``lq_path`` and the LQ size (``lq_height``/``lq_width``); ``num_frames`` is then the frame count
    both sides have. ``caption`` is ``""`` when there is none.
    """

    key: str
    path: str
    num_frames: int
    height: int
    width: int
    caption: str = ""
    lq_path: str | None = None
    lq_height: int | None = None
    lq_width: int | None = None


class VideoSource(ABC):
    """A list of clips (:class:`VideoItem`), built once on first access of :meth:`items`."""

    _items: list[VideoItem] | None = None

    @abstractmethod
    def _scan(self) -> list[VideoItem]:
        """List the clips; raise :class:`DataError` if there are none."""

    def items(self) -> list[VideoItem]:
        if self._items is None:
            self._items = self._scan()
        return self._items

    @property
    def paired(self) -> bool:
        """True when the items carry their own LQ clips (no degradation needed)."""
        return any(item.lq_path for item in self.items())

    def __len__(self) -> int:
        return len(self.items())

    def __iter__(self) -> Iterator[VideoItem]:
        return iter(self.items())

    def __getitem__(self, index: int) -> VideoItem:
        return self.items()[index]


class ItemList(VideoSource):
    """A fixed list of items (e.g. a filtered subset of another source)."""

    def __init__(self, items: Sequence[VideoItem]) -> None:
        self._items = list(items)

    def _scan(self) -> list[VideoItem]:  # pragma: no cover - items are given
        return list(self._items or [])


# ---------------------------------------------------------------------------------------------
# Scanning directories
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    key: str  # relative path without extension, posix separators
    path: str


def _is_hidden(name: str) -> bool:
    # Hidden entries include VideoWriter's and the sample-clip cache's temporary files.
    return name.startswith(".")


def _scan_tree(root: Path, recursive: bool, extensions: tuple[str, ...]) -> tuple[list[_Found], list[Path]]:
    """Video files and frame folders under ``root`` (a folder holding images is one clip), and
    the ``captions.jsonl`` files met on the way."""
    found: list[_Found] = []
    caption_files: list[Path] = []
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir() if p.is_file()):
        found.append(_Found(root.name, str(root)))  # root itself is a frame folder
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        if "captions.jsonl" in filenames:
            caption_files.append(here / "captions.jsonl")
        for name in sorted(filenames):
            if _is_hidden(name) or Path(name).suffix.lower() not in extensions:
                continue
            key = (PurePosixPath(*rel.parts) / Path(name).stem).as_posix()
            found.append(_Found(key, str(here / name)))
        keep = []
        for d in dirnames:
            sub = here / d
            try:
                is_frames = any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(sub))
            except OSError:
                is_frames = False
            if is_frames:
                found.append(_Found((PurePosixPath(*rel.parts) / d).as_posix(), str(sub)))
            elif recursive:
                keep.append(d)
        dirnames[:] = keep  # do not descend into frame folders; only into others when recursive
    # Two files with one stem (a.mp4, a.mkv): keep the extension in their keys to tell them apart.
    counts: dict[str, int] = {}
    for f in found:
        counts[f.key] = counts.get(f.key, 0) + 1
    found = [
        _Found(f.key + Path(f.path).suffix if counts[f.key] > 1 and Path(f.path).suffix else f.key, f.path)
        for f in found
    ]
    return found, caption_files


def _probe_all(found: list[_Found]) -> list[tuple[_Found, VideoInfo | None, str]]:
    """Probe in parallel (PyAV decodes outside the GIL); unreadable ones get ``None`` and the reason."""

    def one(f: _Found) -> tuple[_Found, VideoInfo | None, str]:
        try:
            info = probe_video(f.path)
        except VideoError as err:
            return f, None, str(err)
        if info.truncated:  # a file that breaks off part-way is truncated, not merely short
            return f, None, str(TruncatedVideoError(info.frames_present, info.frames, f.path, "skipped"))
        return f, info, ""

    with ThreadPoolExecutor(max_workers=min(8, max(1, os.cpu_count() or 1))) as pool:
        return list(pool.map(one, found))


def _warn_skip(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------


class _Captions:
    """Captions from sidecar ``<name>.txt`` files and ``captions.jsonl`` files under a root.

    A ``captions.jsonl`` line is ``{"file" | "video": <name>, "caption" | "text": <caption>}`` where
    ``<name>`` is a path relative to the jsonl's folder (with or without extension) or a bare
    file name / stem. A sidecar next to the clip wins over a jsonl entry.
    """

    def __init__(self, jsonl_files: list[Path]) -> None:
        self.by_name: dict[str, str] = {}  # normalized path (with and without suffix) -> caption
        self.by_base: dict[str, str] = {}  # bare name / stem -> caption
        for jsonl in jsonl_files:
            self._load(jsonl)

    def _load(self, jsonl: Path) -> None:
        for lineno, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                name = entry.get("file", entry.get("video"))
                text = entry.get("caption", entry.get("text"))
            except (json.JSONDecodeError, AttributeError):
                name = text = None
            if not isinstance(name, str) or not isinstance(text, str):
                raise DataError(
                    f'{jsonl}:{lineno}: expected {{"file": ..., "caption": ...}} (or "video"/"text"); fix or remove the line'
                )
            target = os.path.normpath(jsonl.parent / name)
            self.by_name[target] = text.strip()
            self.by_name[os.path.splitext(target)[0]] = text.strip()
            self.by_base.setdefault(Path(name).name, text.strip())
            self.by_base.setdefault(Path(name).stem, text.strip())

    def get(self, clip_path: str) -> str:
        path = Path(clip_path)
        sidecar = path.parent / (path.name + ".txt") if path.is_dir() else path.with_suffix(".txt")
        if sidecar.is_file():
            return sidecar.read_text(encoding="utf-8").strip()
        norm = os.path.normpath(clip_path)
        for candidate in (norm, os.path.splitext(norm)[0]):
            if candidate in self.by_name:
                return self.by_name[candidate]
        return self.by_base.get(path.name, self.by_base.get(path.stem, ""))


def _check_root(root: str, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{what} {root!r} is not a directory; point it at a folder of videos or frame folders")
    return path


def _normalize_extensions(extensions: Sequence[str] | None) -> tuple[str, ...]:
    if not extensions:
        return VIDEO_EXTENSIONS
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


class VideoFolder(VideoSource):
    """Every video file and frame folder under ``root`` (recursively by default), with captions.

    Captions come from a sidecar ``<name>.txt`` next to a video (``<folder>.txt`` next to a frame
    folder) or from ``captions.jsonl`` files (see :class:`_Captions`); ``captions=False`` ignores
    both. Unreadable files are skipped with one :class:`DataWarning` each; :class:`DataError` if
    nothing usable remains. ``extensions`` limits the video file types (default: all known);
    frame folders are always included.
    """

    def __init__(
        self,
        root: str,
        recursive: bool = True,
        captions: bool = True,
        extensions: list[str] | None = None,
    ) -> None:
        self.root = root
        self.recursive = recursive
        self.captions = captions
        self.extensions = extensions

    def _scan(self) -> list[VideoItem]:
        root = _check_root(self.root, "VideoFolder root")
        found, caption_files = _scan_tree(root, self.recursive, _normalize_extensions(self.extensions))
        if not found:
            raise DataError(f"no videos or frame folders under {root}; add some or check `extensions`")
        captions = _Captions(caption_files) if self.captions else None
        items: list[VideoItem] = []
        skipped = 0
        for f, info, reason in _probe_all(found):
            if info is None:
                skipped += 1
                _warn_skip(f"skipping {reason}")
                continue
            caption = captions.get(f.path) if captions else ""
            items.append(VideoItem(f.key, f.path, info.frames, info.height, info.width, caption))
        if not items:
            raise DataError(f"none of the {skipped} videos under {root} could be read; see the warnings above")
        return items


def _pair_keys(hq: list[_Found], lq: list[_Found]) -> tuple[list[tuple[_Found, _Found]], list[str], list[str]]:
    """Pair by relative key; leftovers pair by unique bare name (stem) on both sides."""
    lq_by_key = {f.key: f for f in lq}
    pairs: list[tuple[_Found, _Found]] = []
    rest_hq = []
    for f in hq:
        partner = lq_by_key.pop(f.key, None)
        if partner is not None:
            pairs.append((f, partner))
        else:
            rest_hq.append(f)

    def by_stem(items) -> dict[str, _Found]:
        stems: dict[str, list[_Found]] = {}
        for f in items:
            stems.setdefault(PurePosixPath(f.key).name, []).append(f)
        return {s: v[0] for s, v in stems.items() if len(v) == 1}

    lq_stems = by_stem(lq_by_key.values())
    hq_stems = by_stem(rest_hq)
    unmatched_hq = []
    for f in rest_hq:
        stem = PurePosixPath(f.key).name
        partner = lq_stems.pop(stem, None) if stem in hq_stems else None
        if partner is not None:
            pairs.append((f, partner))
            lq_by_key.pop(partner.key, None)
        else:
            unmatched_hq.append(f.key)
    return pairs, unmatched_hq, sorted(lq_by_key)


def _examples(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


class PairedFolders(VideoSource):
    """High-quality / low-quality clip pairs from two trees, matched by relative path.

    Each clip is a frame folder or a video file on either side (e.g. ``REDS4/GT/000/*.png`` with
    ``REDS4/sharp_bicubic/000/*.png``, ``UDM10/GT/<clip>/`` with ``UDM10/BDx4/<clip>/``). Clips
    that do not pair by relative path are paired by their bare name when that is unique. One
    :class:`DataWarning` lists the unmatched clips of each side; :class:`DataError` if nothing
    pairs. Captions are read under ``hq_root`` as for :class:`VideoFolder`.
    """

    def __init__(
        self,
        hq_root: str,
        lq_root: str,
        recursive: bool = True,
        captions: bool = True,
        extensions: list[str] | None = None,
    ) -> None:
        self.hq_root = hq_root
        self.lq_root = lq_root
        self.recursive = recursive
        self.captions = captions
        self.extensions = extensions

    def _scan(self) -> list[VideoItem]:
        hq_root = _check_root(self.hq_root, "PairedFolders hq_root")
        lq_root = _check_root(self.lq_root, "PairedFolders lq_root")
        ext = _normalize_extensions(self.extensions)
        (hq, caption_files), (lq, _) = (
            _scan_tree(hq_root, self.recursive, ext),
            _scan_tree(lq_root, self.recursive, ext),
        )
        pairs, unmatched_hq, unmatched_lq = _pair_keys(hq, lq)
        if not pairs:
            raise DataError(
                f"no clip of {hq_root} ({_examples([f.key for f in hq]) or 'empty'}) pairs with one of "
                f"{lq_root} ({_examples([f.key for f in lq]) or 'empty'}); use the same relative paths on both sides"
            )
        if unmatched_hq:
            _warn_skip(f"{len(unmatched_hq)} HQ clips under {hq_root} have no LQ partner: {_examples(unmatched_hq)}")
        if unmatched_lq:
            _warn_skip(f"{len(unmatched_lq)} LQ clips under {lq_root} have no HQ partner: {_examples(unmatched_lq)}")
        infos = {f.path: (info, reason) for f, info, reason in _probe_all([p for pair in pairs for p in pair])}
        captions = _Captions(caption_files) if self.captions else None
        items: list[VideoItem] = []
        for h, lq_clip in pairs:
            (hi, h_reason), (li, l_reason) = infos[h.path], infos[lq_clip.path]
            if hi is None or li is None:
                _warn_skip(f"skipping pair {h.key}: {h_reason or l_reason}")
                continue
            frames = min(hi.frames, li.frames)
            if hi.frames != li.frames:
                _warn_skip(f"pair {h.key}: HQ has {hi.frames} frames, LQ {li.frames}; using the first {frames}")
            caption = captions.get(h.path) if captions else ""
            items.append(
                VideoItem(h.key, h.path, frames, hi.height, hi.width, caption, lq_clip.path, li.height, li.width)
            )
        if not items:
            raise DataError(
                f"none of the {len(pairs)} HQ/LQ pairs under {hq_root} could be read; see the warnings above"
            )
        return items


class SampleClips(VideoSource):
    """The built-in real-texture sample clips (no download): see :mod:`vsr_core.data.sample_clips`.

    ``split="train"`` and ``split="val"`` use disjoint photos and videos. ``size`` is the side of
    the camera clips, ``frames`` their length; ``photos``/``videos`` choose the two kinds. Clips are
    rendered once into ``cache_dir`` (default ``$VSR_CACHE_DIR/sample_clips`` or
    ``~/.cache/vsr/sample_clips``) and reused.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 256,
        frames: int = 32,
        photos: bool = True,
        videos: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        self.split = split
        self.size = size
        self.frames = frames
        self.photos = photos
        self.videos = videos
        self.cache_dir = cache_dir

    def _scan(self) -> list[VideoItem]:
        clips = ensure_sample_clips(self.split, self.size, self.frames, self.cache_dir, self.photos, self.videos)
        return [VideoItem(c.key, c.path, c.frames, c.height, c.width, c.caption) for c in clips]


def limit_items(source: VideoSource, max_items: int | None) -> VideoSource:
    """The first ``max_items`` clips of ``source`` (all when None)."""
    if max_items is None or max_items >= len(source):
        return source
    return ItemList(source.items()[:max_items])
