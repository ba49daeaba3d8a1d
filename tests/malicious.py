"""A pickle payload that runs code when unpickled: what a malicious checkpoint or weights file holds."""

from __future__ import annotations

import os
from pathlib import Path


class MarkerPayload:
    """Pickles as a call to ``os.system("touch MARKER")``: what a malicious checkpoint would run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))
