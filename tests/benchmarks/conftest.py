"""Fixtures for the benchmark scripts' tests: the scripts are not a package, so they load from their files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmark_script():
    """``benchmark_script(name)`` -> the module of ``benchmarks/<name>.py`` (loaded once per process)."""

    def load(name: str) -> ModuleType:
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module

    return load
