"""Expected errors: each carries one line that says what is wrong and what to do.

The `vsr` command catches :class:`VSRError` and prints only its message (no traceback) with a
non-zero exit code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "NonFiniteLossError",
    "PluginError",
    "PretrainedError",
    "TruncatedVideoError",
    "VideoError",
    "VSRError",
]


class VSRError(Exception):
    """Base class of all expected, user-facing errors. ``str(err)`` is a single line."""

    exit_code = 2


class PluginError(VSRError):
    """A method/plugin name that is unknown, or a plugin whose import failed."""


class VideoError(VSRError):
    """A video file or frame folder that cannot be used (missing, corrupt, truncated, no video stream, too small)."""


class TruncatedVideoError(VideoError):
    """Fewer frames decode than the container promises: ``decoded`` of ``expected`` (``path`` if known)."""

    def __init__(self, decoded: int, expected: int, path: str | None = None, hint: str = "") -> None:
        self.decoded, self.expected, self.path = decoded, expected, path
        where = f"{path}: " if path else ""
        what = hint or "re-encode or re-download it (or remove it)"
        super().__init__(
            f"{where}the video is truncated: only {decoded} of the {expected} frames it promises decode; {what}"
        )

    def with_path(self, path: str, hint: str = "") -> TruncatedVideoError:
        """The same error, naming the file (and another hint, if given)."""
        return TruncatedVideoError(self.decoded, self.expected, path, hint)


class DataError(VSRError):
    """A data source that yields nothing usable (no videos left, clips shorter than the clip length, ...)."""


class PretrainedError(VSRError):
    """A ``pretrained=`` path that does not exist or lacks a component; or weights that are absent offline."""


class ConfigError(VSRError):
    """A configuration value that is not valid for the chosen method."""


class CheckpointError(VSRError):
    """A checkpoint that cannot be loaded (missing file, written by a plugin that is not installed, ...)."""


class NonFiniteLossError(VSRError):
    """Training produced a NaN/inf loss; the message names the step and the loss."""
