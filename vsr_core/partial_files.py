"""Temporary ("partial") outputs: written next to their target, renamed onto it when complete.

A partial is named ``.<stem>.vsr-partial-<host>-<pid>-<token><suffix>``: hidden, with the target's
extension (so a video container is still chosen by it), ``<host>`` a 6-hex digest of the machine's
host name and ``<pid>`` the process writing it. Errors, Ctrl-C and SIGTERM remove a partial at once;
one left by a process that was killed outright (SIGKILL, out of memory, power loss) is removed by
the next vsr run that writes into the same folder (:func:`remove_stale_partials`): only partials of
this host whose process is gone, never one of a running process or of another machine sharing the
folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

__all__ = ["is_partial", "partial_path", "remove_stale_partials"]

_PARTIAL = re.compile(r"^\.(?P<stem>.+)\.vsr-partial-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}(\.[^.]*)?$")


def _host() -> str:
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()


def partial_path(target: str | os.PathLike) -> Path:
    """A fresh partial name for ``target`` in its folder, owned by this process."""
    target = Path(target)
    stem, suffix = os.path.splitext(target.name)
    return target.with_name(f".{stem}.vsr-partial-{_host()}-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def is_partial(name: str) -> bool:
    """Whether a file name is a vsr partial (of any process or host)."""
    return _PARTIAL.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds the pid
        return True
    return True


def remove_stale_partials(directory: str | os.PathLike) -> list[Path]:
    """Remove partials in ``directory`` left by dead vsr processes of this host; returns what was removed."""
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    host, removed = _host(), []
    for name in names:
        match = _PARTIAL.match(name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        path = directory / name
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed
