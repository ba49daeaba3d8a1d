"""The docs' examples run: every ```python run block of the two pages is executed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```python run\n(?P<body>.*?)^```$", re.S | re.M)


def _blocks(page: str) -> list[str]:
    return [m["body"] for m in BLOCK.finditer((DOCS / page).read_text())]


@pytest.mark.parametrize("page", ["architecture.md", "plugin-authoring.md"])
def test_nn_examples_run(page: str) -> None:
    blocks = _blocks(page)
    assert blocks, f"{page} has no runnable example"
    import sys
    import types

    for index, body in enumerate(blocks):
        # A real module, so the examples' dataclasses and classes resolve their module like user code.
        module = types.ModuleType(f"docs_example_{index}")
        sys.modules[module.__name__] = module
        try:
            exec(compile(body, f"{page}:example", "exec"), module.__dict__)
        finally:
            del sys.modules[module.__name__]
