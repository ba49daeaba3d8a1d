"""Where restored videos go: one ``<dir>/<name>.mp4`` per input, checked before any work.

:func:`prepared_outputs` is what ``vsr restore`` and :func:`vsr.load` pipelines do before restoring
into a folder: refuse an output that is an input (always) or exists (unless ``overwrite``), create
the folder, check it is writable, and remove the folders it created again if nothing was written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from vsr_core.errors import ConfigError, VideoError

__all__ = ["output_targets", "prepared_outputs"]


def _create_output_dir(path: Path) -> list[Path]:
    """Create ``path`` (and missing parents); returns the folders created, deepest first."""
    created = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        created.append(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VideoError(f"cannot create output directory '{path}' ({err.strerror})") from None
    if not path.is_dir():
        raise VideoError(f"output directory '{path}' is not a directory")
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this run created if nothing was written into them (deepest first)."""
    for folder in folders:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return


def _check_writable(outdir: Path) -> None:
    """Create and remove a file where the outputs go: an unwritable place fails before any work."""
    from vsr_core.partial_files import partial_path

    probe = partial_path(outdir / "write-check.mp4")
    try:
        probe.touch(exist_ok=False)
    except OSError as err:
        raise VideoError(
            f"cannot write into output directory '{outdir}' ({err.strerror}); choose another -o"
        ) from None
    probe.unlink()


def output_targets(inputs: list[Path], outdir: Path, overwrite: bool) -> list[Path]:
    """One ``outdir/<name>.mp4`` per input (``_2``, ... for repeated names), checked before any work.

    Raises:
        ConfigError: a target is one of the inputs (even with ``--overwrite``), or exists without ``--overwrite``.
    """
    names: set[str] = set()
    targets = []
    for source in inputs:
        stem = source.stem if source.is_file() else source.name
        name, n = stem, 1
        while name in names:  # two inputs with one stem must not overwrite each other
            n += 1
            name = f"{stem}_{n}"
        names.add(name)
        targets.append(outdir / f"{name}.mp4")
    for target in targets:
        for source in inputs:
            if target.exists() and source.exists() and os.path.samefile(target, source):
                raise ConfigError(
                    f"output '{target}' is the input '{source}'; restore never replaces its input, choose another -o"
                )
        if target.exists() and not overwrite:
            raise ConfigError(f"output '{target}' exists; pass --overwrite to replace it, or choose another -o")
        if target.is_dir():
            raise ConfigError(f"output '{target}' is a directory; choose another -o")
    return targets


@contextlib.contextmanager
def prepared_outputs(inputs: list[Path], outdir: Path, overwrite: bool = False) -> Iterator[list[Path]]:
    """Check and create ``outdir`` for ``inputs``; yields the target paths (see :func:`output_targets`).

    Raises:
        VideoError: ``outdir`` is a file, cannot be created or is not writable.
        ConfigError: a target is an input, or exists without ``overwrite``.
    """
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise VideoError(f"output directory '{outdir}' is a file; choose another -o")
    targets = output_targets(inputs, outdir, overwrite)
    created = _create_output_dir(outdir)
    try:
        _check_writable(outdir)
        yield targets
    finally:
        _remove_if_empty(created)  # a failed run leaves no empty output folder behind
