"""Plugin discovery: built-ins through entry points, broken plugins, duplicates, the switch."""

from __future__ import annotations

import importlib
from importlib.metadata import distribution

import pytest

from lmforge.errors import DuplicateComponentError, PluginError
from lmforge.loader import KIND_HOOKS, PluginLoadWarning, load_plugins

COLLECTOR = """
from lmforge import hookimpl
from lmforge.contracts import Collector

class {cls}(Collector):
    name = "{name}"

    def documents(self, workdir, stats):
        yield from ()

@hookimpl
def register_collectors(register):
    register({cls})
"""


def test_builtins_register_through_the_lmforge_entry_point_group():
    _, registry = load_plugins()
    eps = {ep.name: ep.value for ep in distribution("lmforge").entry_points if ep.group == "lmforge"}
    assert eps, "lmforge declares no entry points in the lmforge group"
    entries = [e for kind in registry.components.values() for e in kind.values()]
    for name, module in eps.items():
        if not any(hasattr(importlib.import_module(module), hook) for hook in KIND_HOOKS):
            continue  # a plugin that adds a command or a callback, no component (the sweep package)
        mine = [e for e in entries if e.cls.__module__ == module]
        assert mine and all(e.provenance.distribution == "lmforge" for e in mine), name
        if len(mine) == 1:  # file name = registered name; the engine's optimizers, schedules and loggers share one module a kind
            # <group>_<name> only where another entry point holds <name> (task=chat beside the chat command)
            plain = mine[0].cls.name
            assert name == plain or (name == f"{mine[0].cls.kind}_{plain}" and plain in eps), name
    assert {"stdlib", "normalize", "none", "bpe", "transformer", "adamw", "cosine", "csv"} <= {e.cls.name for e in entries}


def test_a_third_party_collector_is_registered_with_its_provenance(make_dist):
    make_dist("lmforge-extra", {"extra": "lmforge_extra"}, {"lmforge_extra.py": COLLECTOR.format(cls="Extra", name="extra")}, "2.3")
    _, registry = load_plugins()
    entry = registry.get("collector", "extra")
    assert (entry.provenance.distribution, entry.provenance.version) == ("lmforge-extra", "2.3")


def test_a_plugin_that_fails_to_import_is_a_warning_and_the_rest_works(make_dist):
    make_dist("lmforge-broken", {"broken": "lmforge_broken"}, {"lmforge_broken.py": "import no_such_module_xyz\n"})
    with pytest.warns(PluginLoadWarning, match=r"lmforge-broken 1\.0.*No module named 'no_such_module_xyz'"):
        _, registry = load_plugins()
    assert registry.get("collector", "stdlib")
    with pytest.raises(PluginError, match=r"(?s)collector=broken.*lmforge-broken 1\.0 failed to load.*no_such_module_xyz"):
        registry.get("collector", "broken")


def test_a_plugin_that_fails_to_register_leaves_nothing_half_registered(make_dist):
    code = COLLECTOR.format(cls="Half", name="half") + "\n\n@hookimpl\ndef register_models(register):\n    raise RuntimeError('boom')\n"
    make_dist("lmforge-half", {"half": "lmforge_half"}, {"lmforge_half.py": code})
    with pytest.warns(PluginLoadWarning, match="lmforge-half.*RuntimeError: boom"):
        _, registry = load_plugins()
    assert "half" not in registry.names("collector")
    assert [b.provenance.distribution for b in registry.broken] == ["lmforge-half"]


def test_a_duplicate_name_is_an_error_naming_both_distributions(make_dist):
    """Loading records the conflict (so ``lmforge plugins`` can show it); using the registry refuses."""
    make_dist("lmforge-dup", {"dup": "lmforge_dup"}, {"lmforge_dup.py": COLLECTOR.format(cls="Dup", name="stdlib")})
    _, registry = load_plugins()
    with pytest.raises(DuplicateComponentError, match=r"collector 'stdlib' is registered twice: by lmforge .* and by lmforge-dup 1\.0"):
        registry.check()


def test_the_environment_switch_loads_only_lmforge_own_plugins(make_dist, monkeypatch):
    make_dist("lmforge-extra", {"extra": "lmforge_extra"}, {"lmforge_extra.py": COLLECTOR.format(cls="Extra", name="extra")})
    monkeypatch.setenv("LMFORGE_DISABLE_PLUGIN_AUTOLOAD", "1")
    _, registry = load_plugins()
    assert "extra" not in registry.names("collector")
    assert [p.distribution for p in registry.disabled] == ["lmforge-extra"]
    with pytest.raises(PluginError, match="LMFORGE_DISABLE_PLUGIN_AUTOLOAD"):
        registry.get("collector", "extra")


def test_registering_something_that_is_not_a_component_is_refused(make_dist):
    code = "from lmforge import hookimpl\n\n@hookimpl\ndef register_models(register):\n    register(dict)\n"
    make_dist("lmforge-odd", {"odd": "lmforge_odd"}, {"lmforge_odd.py": code})
    with pytest.warns(PluginLoadWarning, match="does not subclass"):
        _, registry = load_plugins()
    assert registry.broken[0].provenance.distribution == "lmforge-odd"


def test_a_broken_plugin_is_recorded_in_the_manifest(make_dist, tmp_path):
    from lmforge.manifest import manifest

    make_dist("lmforge-broken", {"broken": "lmforge_broken2"}, {"lmforge_broken2.py": "raise ImportError('needs libfoo')\n"})
    with pytest.warns(PluginLoadWarning):
        load_plugins()
    record = manifest(seed=1, stages={}, data={}, launch_dir=tmp_path, components={})
    assert record["broken"] == [{"distribution": "lmforge-broken", "version": "1.0", "error": "ImportError: needs libfoo"}]
