import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl, registry
from lrbench.cli import cli
from lrbench.errors import LrbenchError


class MeanColourNet(torch.nn.Module):
    """A tiny backbone: mean colour of a 4×4 grid of cells."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


class TinyBackbonePlugin:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneSpec("tiny-test", lambda weights: MeanColourNet(), InputSpec(SPHEREFACE_96x112), 48))


def test_in_test_plugin_is_listed_and_its_backbone_runs(plugin_manager, synth_data, tmp_path):
    plugin_manager.register_for_test(TinyBackbonePlugin(), name="tiny-test-plugin")
    listing = CliRunner().invoke(cli, ["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["tiny-test-plugin"]["hooks"] == ["register_backbones"]
    assert registry.collect("backbone")["tiny-test"].plugin == "tiny-test-plugin"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "-b",
            "tiny-test",
            "--data",
            str(synth_data.lfw_root),
            "--df",
            "1,2",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["results"]) == 2


def test_builtins_are_registered_from_the_fixed_tuple():
    rows = {row["name"] for row in json.loads(CliRunner().invoke(cli, ["plugins", "--all", "--json"]).stdout)}
    assert {"lrbench_plugins.lbp", "lrbench_plugins.resize", "lrbench_plugins.pairs_protocols"} <= rows


class BrokenPlugin:
    @hookimpl
    def register_degradations(self, register):
        raise RuntimeError("boom")


def test_a_failing_plugin_is_named(plugin_manager):
    plugin_manager.register_for_test(BrokenPlugin(), name="broken-plugin")
    try:
        registry.collect("degradation")
    except LrbenchError as exc:
        assert "broken-plugin" in str(exc) and "boom" in str(exc)
    else:
        raise AssertionError("expected an error naming the plugin")


def test_duplicate_names_are_refused(plugin_manager):
    class Duplicate:
        @hookimpl
        def register_backbones(self, register):
            register(BackboneSpec("lbp", lambda weights: MeanColourNet(), InputSpec(SPHEREFACE_96x112), 48))

    plugin_manager.register_for_test(Duplicate(), name="duplicate-plugin")
    try:
        registry.collect("backbone")
    except LrbenchError as exc:
        assert str(exc) == "backbone 'lbp' is registered by both 'duplicate-plugin' and 'lrbench_plugins.lbp'"
    else:
        raise AssertionError("expected a duplicate-name error")


def tiny(name: str) -> BackboneSpec:
    return BackboneSpec(name, lambda weights: MeanColourNet(), InputSpec(SPHEREFACE_96x112), 48)


def test_registration_is_a_pluggy_hook_call_that_monitors_see(plugin_manager):
    calls = []
    undo = plugin_manager.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *a: None)
    try:
        registry.collect("degradation")
    finally:
        undo()
    assert calls == ["register_degradations"]


class Wrapper:
    @hookimpl(wrapper=True)
    def register_backbones(self, register):
        result = yield  # every other plugin registers here
        register(tiny("wrapped"))
        return result


def test_a_hook_wrapper_wraps_the_whole_registration(plugin_manager):
    plugin_manager.register_for_test(Wrapper(), name="wrapper-plugin")
    found = registry.collect("backbone")
    assert list(found)[-1] == "wrapped" and found["wrapped"].plugin == "wrapper-plugin"


class Registers:
    """One class, several plugin objects: each registers its own backbone through a helper method."""

    def __init__(self, backbone: str):
        self.backbone = backbone

    @hookimpl
    def register_backbones(self, register):
        self._register_all(register)

    def _register_all(self, register):
        register(tiny(self.backbone))


class RegistersFirst(Registers):
    @hookimpl(tryfirst=True)
    def register_backbones(self, register):
        self._register_all(register)


class RegistersLast(Registers):
    @hookimpl(trylast=True)
    def register_backbones(self, register):
        self._register_all(register)


def test_tryfirst_and_trylast_decide_the_order(plugin_manager):
    plugin_manager.register_for_test(RegistersFirst("first"), name="first-plugin")
    plugin_manager.register_for_test(RegistersLast("last"), name="last-plugin")
    plugin_manager.register_for_test(Registers("newest"), name="newest-plugin")
    names = list(registry.collect("backbone"))
    assert names[:2] == ["first", "newest"] and names[-1] == "last"


def test_each_spec_is_attributed_to_the_plugin_object_that_registered_it(plugin_manager):
    plugin_manager.register_for_test(Registers("a"), name="plugin-a")
    plugin_manager.register_for_test(Registers("b"), name="plugin-b")
    found = registry.collect("backbone")
    assert [found[name].plugin for name in ("a", "b", "lbp")] == ["plugin-a", "plugin-b", "lrbench_plugins.lbp"]


class FailsInAHelper(Registers):
    def _register_all(self, register):
        raise KeyError("no such model")


def test_a_plugin_failing_inside_a_helper_is_named(plugin_manager):
    plugin_manager.register_for_test(Registers("fine"), name="fine-plugin")
    plugin_manager.register_for_test(FailsInAHelper("x"), name="failing-plugin")
    with pytest.raises(LrbenchError, match=r"^plugin 'failing-plugin' failed in register_backbones: 'no such model'$"):
        registry.collect("backbone")


def test_python_dash_m_and_empty_plugin_list():
    out = subprocess.run(
        [sys.executable, "-m", "lrbench", "plugins", "--json"],
        capture_output=True,
        text=True,
        env={"LRBENCH_LOAD_PLUGINS": "", "PATH": ""},
        check=True,
    )
    assert json.loads(out.stdout) == []
