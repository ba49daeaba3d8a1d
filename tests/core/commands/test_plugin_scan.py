"""Reading plugins' method classes from source gives what importing them gives, or says it cannot tell."""

from __future__ import annotations

import pytest

from vsr_core.commands.plugin_scan import scan_plugins
from vsr_core.commands.plugins import imported_listing

GOOD = '''
"""A good fake plugin."""
from vsr_core.testing import BoringMethod

class FakeGoodVSR(BoringMethod):
    """Fake method used by the plugin tests."""
'''

# Exports a method, a helper network, a constant and an abstract intermediate class.
MIXED = '''
"""Several kinds of exports."""
from abc import abstractmethod

import torch
from torch import nn

from vsr_core import VSRMethod
import vsr_core.testing as kit

__all__ = ["Helper", "Base", "Concrete", "Undocumented", "Other", "SCALE"]
SCALE = 4


class Helper(nn.Module):
    """A network, not a method."""


class Base(VSRMethod):
    """Abstract: restore is not implemented."""

    @abstractmethod
    def extra(self): ...


class Concrete(Base):
    """A concrete method on an abstract base."""

    def restore(self, lq, prompt=None, **kw):
        return lq

    def extra(self):
        return 1


class Undocumented(Concrete):
    pass


class Other(kit.BoringMethod):
    """Through a module alias."""
'''

BROKEN = """
import this_module_does_not_exist_anywhere
"""

DYNAMIC = '''
"""Builds its class at import time: only importing shows it."""
from vsr_core.testing import BoringMethod

Made = type("Made", (BoringMethod,), {"__doc__": "A class made by type()."})
__all__ = ["Made"]
'''


def by_name(plugins):
    return {p.name: p for p in plugins}


def listed(plugin):
    return [(m.class_path, m.doc_line) for m in plugin.methods]


@pytest.fixture
def site(fake_plugins):
    site = fake_plugins(
        {"fake_good": GOOD, "fake_mixed": MIXED, "fake_deep": "", "fake_broken": BROKEN, "fake_dynamic": DYNAMIC}
    )
    (site / "fake_deep.py").unlink()
    (site / "fake_deep" / "sub").mkdir(parents=True)
    (site / "fake_deep" / "sub" / "impl.py").write_text(GOOD.replace("FakeGoodVSR", "FakeDeepVSR"))
    (site / "fake_deep" / "sub" / "__init__.py").write_text("from .impl import FakeDeepVSR\n")
    (site / "fake_deep" / "__init__.py").write_text("from .sub import FakeDeepVSR\n__all__ = ['FakeDeepVSR']\n")
    return site


def test_source_listing_equals_the_imported_one_for_every_certain_plugin(site):
    scanned = by_name(scan_plugins())
    assert listed(scanned["fake_good"]) == [("fake_good.FakeGoodVSR", "Fake method used by the plugin tests.")]
    assert listed(scanned["fake_deep"]) == [("fake_deep.FakeDeepVSR", "Fake method used by the plugin tests.")]
    # Helper (nn.Module), SCALE and the abstract Base are not methods; Undocumented inherits Concrete's doc.
    assert listed(scanned["fake_mixed"]) == [
        ("fake_mixed.Concrete", "A concrete method on an abstract base."),
        ("fake_mixed.Undocumented", "A concrete method on an abstract base."),
        ("fake_mixed.Other", "Through a module alias."),
    ]
    imported = imported_listing()
    for name, plugin in scanned.items():
        if plugin.certain:
            methods, error = imported[name]
            assert error is None and listed(plugin) == [(m.class_path, m.doc_line) for m in methods], name


def test_what_the_source_cannot_show_is_marked_uncertain(site):
    scanned = by_name(scan_plugins())
    assert (
        not scanned["fake_broken"].certain and "this_module_does_not_exist_anywhere" in scanned["fake_broken"].reason
    )
    assert not scanned["fake_dynamic"].certain
    assert all(scanned[n].certain for n in ("fake_good", "fake_mixed", "fake_deep", "reference", "satb"))


def test_the_installed_plugins_read_from_source_match_their_import():
    scanned = by_name(scan_plugins())
    imported = imported_listing({"reference", "satb"})
    for name in ("reference", "satb"):
        assert scanned[name].certain
        assert listed(scanned[name]) == [(m.class_path, m.doc_line) for m in imported[name][0]]
