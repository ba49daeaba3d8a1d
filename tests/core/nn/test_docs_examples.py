"""The nn/ examples in the docs run: every ```python run block of the two pages is executed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
BLOCK = re.compile(r"^```python run\n(?P<body>.*?)^```$", re.S | re.M)


def _blocks(page: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer((DOCS / page).read_text())]


@pytest.mark.parametrize("page", ["architecture.md", "plugin-authoring.md"])
def test_nn_examples_run(page: str) -> None:
    blocks = _blocks(page)
    assert blocks, f"{page} has no runnable example"
    for body in blocks:
        exec(compile(body, f"{page}:example", "exec"), {"__name__": "docs_example"})
