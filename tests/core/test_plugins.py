"""Plugin discovery through entry points: listing, short names, import failures, did-you-mean."""

from __future__ import annotations

import pytest

from vsr_core.errors import PluginError
from vsr_core.plugins import available_methods, discover_plugins, resolve_method

GOOD = '''
"""A good fake plugin."""
from vsr_core.testing import BoringMethod

class FakeGoodVSR(BoringMethod):
    """Fake method used by the plugin tests."""
'''

SUBMODULE = '''
"""A plugin whose class lives in a submodule and is re-exported by the package."""
from vsr_core.testing import BoringMethod

class FakeDeepVSR(BoringMethod):
    """Another fake method."""
'''

BROKEN = """
import this_module_does_not_exist_anywhere
"""


@pytest.fixture
def good_plugins(fake_plugins):
    site = fake_plugins({"fake_good": GOOD, "fake_deep": ""})
    # fake_deep is a package: its class lives in fake_deep/impl.py and __init__ re-exports it
    (site / "fake_deep.py").unlink()
    (site / "fake_deep").mkdir()
    (site / "fake_deep" / "impl.py").write_text(SUBMODULE)
    (site / "fake_deep" / "__init__.py").write_text(
        "from fake_deep.impl import FakeDeepVSR\n__all__ = ['FakeDeepVSR']\n"
    )
    return site


def test_fake_plugin_is_discovered_with_its_distribution(good_plugins):
    info = discover_plugins()["fake_good"]
    assert info.error is None and info.distribution == "fakeplugins" and info.version == "1.2.3"
    assert [c.__name__ for c in info.methods] == ["FakeGoodVSR"]
    assert "fake_good.FakeGoodVSR" in available_methods()


def test_short_and_full_names_resolve(good_plugins):
    assert resolve_method("fake_good.FakeGoodVSR") == "fake_good.FakeGoodVSR"
    assert resolve_method("FakeGoodVSR") == "fake_good.FakeGoodVSR"
    # a class defined in a submodule is named by the package that exports it
    assert resolve_method("FakeDeepVSR") == "fake_deep.FakeDeepVSR"
    assert resolve_method("fake_deep.impl.FakeDeepVSR") == "fake_deep.FakeDeepVSR"


def test_unknown_name_lists_methods_and_suggests(good_plugins):
    with pytest.raises(PluginError) as err:
        resolve_method("FakeGodVSR")
    message = str(err.value)
    assert "Did you mean 'FakeGoodVSR'" in message or "Did you mean 'fake_good.FakeGoodVSR'" in message
    assert "fake_good.FakeGoodVSR" in message and "\n" not in message


def test_broken_plugin_is_reported_and_others_still_work(fake_plugins):
    fake_plugins({"fake_good": GOOD, "fake_broken": BROKEN})
    plugins = discover_plugins()
    assert plugins["fake_broken"].error.startswith("ModuleNotFoundError")
    assert plugins["fake_good"].error is None
    assert resolve_method("FakeGoodVSR") == "fake_good.FakeGoodVSR"
    with pytest.raises(
        PluginError, match="plugin 'fake_broken' is installed but failed to import: ModuleNotFoundError"
    ):
        resolve_method("fake_broken.Anything")
