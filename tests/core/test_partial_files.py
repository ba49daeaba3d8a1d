"""Partial outputs: owned by a process; later runs remove only those of dead vsr processes of this host."""

from __future__ import annotations

import os
import subprocess
import sys

from vsr_core.partial_files import is_partial, partial_path, remove_stale_partials


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partial_names_keep_the_extension_and_name_their_owner(tmp_path):
    path = partial_path(tmp_path / "clip.mp4")
    assert path.parent == tmp_path and path.name.startswith(".clip.vsr-partial-") and path.suffix == ".mp4"
    assert f"-{os.getpid()}-" in path.name and is_partial(path.name)
    assert partial_path(tmp_path / "clip.mp4") != path  # a fresh token each time
    assert not is_partial("clip.mp4") and not is_partial(".clip.partial-1234.mp4")


def test_only_partials_of_dead_processes_of_this_host_are_removed(tmp_path):
    mine = partial_path(tmp_path / "a.mp4")
    dead = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{dead_pid()}-"))
    other_host = dead.with_name(dead.name.replace(dead.name.split("-")[2], "000000", 1))
    dead_folder = dead.with_name(dead.name.replace(".mp4", "").replace(".a.", ".export."))
    user_file = tmp_path / ".a.partial-1.mp4"  # not vsr's naming: never touched
    for path in (mine, dead, other_host, user_file):
        path.write_bytes(b"x")
    dead_folder.mkdir()
    (dead_folder / "vsr_method.json").write_text("{}")
    removed = remove_stale_partials(tmp_path)
    assert sorted(removed) == sorted([dead, dead_folder])
    assert mine.exists() and other_host.exists() and user_file.exists()
    assert not dead.exists() and not dead_folder.exists()
    assert remove_stale_partials(tmp_path / "missing") == []
