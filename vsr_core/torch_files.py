"""Reading files written by ``torch.save`` without ever running code from them.

Every checkpoint, ``.pt`` tensor file and export part vsr reads goes through :func:`read_torch_file`,
which calls ``torch.load(..., weights_only=True)``: the unpickler then only rebuilds tensors and
plain Python values (dict, list, tuple, str, numbers, ``OrderedDict``, ...). A file that names any
other global (a ``__reduce__`` calling ``os.system``, a pickled module or optimizer object) is
refused before anything in it runs. vsr checkpoints hold nothing else: the model state dict,
optimizer and scheduler state dicts, loop and callback states (numbers, strings, tensors) and the
init arguments as plain values, so no global is allow-listed beyond torch's own defaults.

Errors are one line naming the file and what to do (the caller chooses the :class:`VSRError` class).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from vsr_core.errors import PretrainedError, VSRError

__all__ = ["read_torch_file"]

_ZIP_MAGIC = b"PK\x03\x04"
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+(?: [\w.]+)?)")


def _refused_global(message: str) -> str:
    match = _REFUSED_GLOBAL.search(message)
    return match.group(1).replace(" ", ".") if match else "an object"


def read_torch_file(
    path: str | os.PathLike,
    what: str = "tensor file",
    error: type[VSRError] = PretrainedError,
    map_location: str | torch.device = "cpu",
) -> Any:
    """The object stored in ``path`` by ``torch.save``, read with ``weights_only=True``.

    Zip-format files (what ``torch.save`` writes by default) are memory-mapped, so reading a big
    checkpoint's metadata does not read its weights. ``what`` names the file in messages
    (``"checkpoint"``, ``"tensor file"``).

    Raises:
        error: the file is missing, empty, truncated, not a ``torch.save`` file, or holds anything
            but tensors and plain values (then nothing of it was executed).
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{what} '{path}' does not exist; check the path")
    if not path.is_file():
        raise error(f"{what} '{path}' is not a file")
    size = path.stat().st_size
    if size == 0:
        raise error(f"{what} '{path}' is empty; write it again")
    with open(path, "rb") as handle:
        head = handle.read(4)
    is_zip = zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4 ..." for old-style pickles
            return torch.load(path, map_location=map_location, weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err) and _REFUSED_GLOBAL.search(str(err)):
            raise error(
                f"{what} '{path}' refused: it holds {_refused_global(str(err))}, not only tensors and plain "
                "values; vsr never runs code from a file (use a file written by vsr, or re-save the state dict)"
            ) from None
        reason = "it is not a file written by torch.save"
    except Exception:  # noqa: BLE001 - torch raises many types for files that are not what they claim
        if head == _ZIP_MAGIC and not is_zip:
            reason = "it is truncated (an incomplete zip archive)"
        elif is_zip:
            reason = "it is corrupt or truncated"
        else:
            reason = "it is not a file written by torch.save"
    raise error(f"{what} '{path}' cannot be read: {reason}; write it again or pass another file")
