"""Plugin discovery through entry points: listing, short names, import failures, did-you-mean."""

from __future__ import annotations

import pytest

from vsr_core.errors import PluginError
from vsr_core.plugins import available_methods, discover_plugins, resolve_method

GOOD = '''
"""A good fake plugin."""
from reference.model import ReferenceVSR

class FakeGoodVSR(ReferenceVSR):
    """Fake method used by the plugin tests."""
'''

BROKEN = '''
import this_module_does_not_exist_anywhere
'''


def test_in_tree_reference_plugin_is_discovered():
    plugins = discover_plugins()
    assert "reference" in plugins
    info = plugins["reference"]
    assert info.error is None and info.distribution == "vsr"
    assert "reference.ReferenceVSR" in available_methods()


def test_short_and_full_names_resolve():
    assert resolve_method("reference.ReferenceVSR") == "reference.ReferenceVSR"
    assert resolve_method("ReferenceVSR") == "reference.ReferenceVSR"
    assert resolve_method("reference.model.ReferenceVSR") == "reference.ReferenceVSR"


def test_unknown_name_lists_methods_and_suggests():
    with pytest.raises(PluginError) as err:
        resolve_method("ReferenceVRS")
    message = str(err.value)
    assert "Did you mean 'ReferenceVSR'" in message or "Did you mean 'reference.ReferenceVSR'" in message
    assert "reference.ReferenceVSR" in message and "\n" not in message


def test_broken_plugin_is_reported_and_others_still_work(fake_plugins):
    fake_plugins({"fake_good": GOOD, "fake_broken": BROKEN})
    plugins = discover_plugins()
    assert plugins["fake_broken"].error.startswith("ModuleNotFoundError")
    assert plugins["fake_good"].error is None
    assert [c.__name__ for c in plugins["fake_good"].methods] == ["FakeGoodVSR"]
    assert plugins["fake_good"].version == "1.2.3"
    assert resolve_method("FakeGoodVSR") == "fake_good.FakeGoodVSR"
    assert resolve_method("ReferenceVSR") == "reference.ReferenceVSR"
    with pytest.raises(PluginError, match="plugin 'fake_broken' is installed but failed to import: ModuleNotFoundError"):
        resolve_method("fake_broken.Anything")
