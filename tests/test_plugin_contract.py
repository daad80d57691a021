"""The plugin contract stays honest: every hook documented with its signature, tested, and usable as documented."""

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrbench import hookspecs, registry
from lrbench.cli import cli
from lrbench.errors import LrbenchError
from lrbench.plugins import load_plugins_dir

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("register_"))
EXAMPLE = ROOT / "examples" / "lrbench-degrade-chain"


def documented_example(hook: str) -> str:
    """The first Python code block of the hook's section in docs/plugins.md."""
    section = DOC.split(f"## {hook}(", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def module_from_docs(hook: str) -> types.ModuleType:
    module = types.ModuleType(f"doc_example_{hook}")
    exec(compile(documented_example(hook), f"docs/plugins.md:{hook}", "exec"), module.__dict__)
    return module


def install_like_pip(site: Path, dist: str, modules: dict[str, str]) -> None:
    """What pip leaves behind for an entry point: a .dist-info with METADATA and entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {module}\n" for name, module in modules.items())
    (info / "entry_points.txt").write_text(f"[lrbench]\n{lines}")


def lrbench(*args, pythonpath=(), **env):
    environment = {k: v for k, v in os.environ.items() if k != "LRBENCH_LOAD_PLUGINS"}
    environment.update(env, PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath))
    return subprocess.run([sys.executable, "-m", "lrbench", *map(str, args)], capture_output=True, text=True,
                          env=environment)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(hook):
    signature = f"{hook}{inspect.signature(getattr(hookspecs, hook))}"
    assert f"\n## {signature}\n" in DOC, f"docs/plugins.md needs a section headed '## {signature}'"


def test_every_hook_has_a_test_of_its_own():
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        names |= {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    missing = [hook for hook in HOOKS if f"test_hook_{hook}" not in names]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_hook_register_backbones(tmp_path, synth_data):
    """The documented example, installed as a package the way pip would, evaluates and can be switched off."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "tiny_backbone.py").write_text(documented_example("register_backbones"))
    install_like_pip(site, "lrbench-tiny", {"tiny": "tiny_backbone"})
    sys.path.insert(0, str(site))
    try:
        import tiny_backbone
        import torch

        torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_backbone.TinyNet().state_dict().items()}},
                   tmp_path / "tiny.pt")
    finally:
        sys.path.remove(str(site))
    listing = lrbench("plugins", "--json", pythonpath=[site])
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    assert rows["tiny"]["distribution"] == "lrbench-tiny" and rows["tiny"]["version"] == "0.1.0"
    run = lrbench("run", "--backbone", "tiny", "--weights", tmp_path / "tiny.pt", "--data", synth_data.lfw_root,
                  "--df", "1,2", "--out", tmp_path / "run", "--json", pythonpath=[site], LRBENCH_TRACE_PLUGINS="1")
    assert run.returncode == 0, run.stderr
    assert [row["probe_px"] for row in json.loads(run.stdout)["results"]] == ["64×64", "32×32"]
    assert "lrbench trace: register_backbones" in run.stderr and "-> tiny" in run.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["input"]["template"] == "tiny-64" and manifest["input"]["std"] == [64.0, 64.0, 64.0]
    assert manifest["components"]["backbone"] == {"name": "tiny", "plugin": "tiny", "distribution": "lrbench-tiny",
                                                  "version": "0.1.0", "options": {"width": 8}}
    removed = lrbench("run", "--backbone", "tiny", "--data", synth_data.lfw_root, "--out", tmp_path / "gone",
                      pythonpath=[site], LRBENCH_LOAD_PLUGINS="")
    assert removed.returncode == 2 and "unknown backbone 'tiny'" in removed.stderr


def test_hook_register_degradations(plugin_manager, synth_data, tmp_path):
    plugin_manager.register_for_test(module_from_docs("register_degradations"), name="doc-degradation")
    result = CliRunner().invoke(cli, ["run", "-b", "lbp", "--data", str(synth_data.lfw_root), "--df", "4",
                                      "--degradation", "nearest", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["degradation"]["settings"] == {"up": "nearest", "sharpen": 0.0}


def test_hook_register_protocols(plugin_manager, synth_data, tmp_path):
    source = documented_example("register_protocols")
    (tmp_path / "xqlfw.toml").write_text(
        'name = "synthetic-view2"\ndescription = "synthetic"\nimage_dirs = ["images"]\n[expected]\npairs = 80\n'
    )
    module = types.ModuleType("doc_protocol")
    module.__file__ = str(tmp_path / "plugin.py")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    plugin_manager.register_for_test(module, name="doc-protocol")
    assert registry.collect("protocol")["synthetic-view2"].plugin == "doc-protocol"
    result = CliRunner().invoke(cli, ["run", "-b", "lbp", "-p", "synthetic-view2", "--data",
                                      str(synth_data.lfw_root), "--df", "1", "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["pairs"] == 80


def test_hook_register_trainers(plugin_manager):
    plugin_manager.register_for_test(module_from_docs("register_trainers"), name="doc-trainer")
    result = CliRunner().invoke(cli, ["train", "fit", "--epochs", "3"])
    assert result.exit_code == 0 and "training for 3 epochs" in result.output
    assert "fit" in CliRunner().invoke(cli, ["list", "trainers"]).output


def test_hook_register_detectors(plugin_manager, tmp_path):
    """The documented example writes a landmark file through `lrbench landmarks`, with every option passed."""
    import numpy as np
    from PIL import Image

    from lrbench.data.landmarks import read_landmarks

    plugin_manager.register_for_test(module_from_docs("register_detectors"), name="doc-detector")
    (tmp_path / "faces").mkdir()
    Image.new("RGB", (100, 80), (120, 100, 90)).save(tmp_path / "faces" / "a.png")
    result = CliRunner().invoke(cli, ["landmarks", str(tmp_path / "faces"), "--out", str(tmp_path / "l.txt"),
                                      "--detector", "centred", "--detector-option", "size=0.5", "--quiet"])
    assert result.exit_code == 0, result.output
    found = read_landmarks(tmp_path / "l.txt")  # a 40 px box at (30, 20)
    expected = [[42.4, 38.4], [57.6, 38.4], [50.0, 45.6], [44.0, 52.8], [56.0, 52.8]]
    assert list(found) == ["a.png"] and np.allclose(found["a.png"], expected)
    listed = json.loads(CliRunner().invoke(cli, ["list", "detectors", "--json"]).stdout)["detectors"]["centred"]
    assert listed == {"plugin": "doc-detector", "options": {"size": 0.6},
                      "description": "one face in the middle of each image"}


def test_a_detectors_value_error_is_a_usage_error_naming_the_detector(plugin_manager, tmp_path):
    plugin_manager.register_for_test(module_from_docs("register_detectors"), name="doc-detector")
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "a.png").write_bytes(b"")
    result = CliRunner().invoke(cli, ["landmarks", str(tmp_path / "faces"), "--out", str(tmp_path / "l.txt"),
                                      "--detector", "centred", "--detector-option", "size=2"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --detector centred: size=2.0: expected a fraction of the image in 0…1\n"


def test_hook_register_commands(plugin_manager):
    plugin_manager.register_for_test(module_from_docs("register_commands"), name="doc-command")
    plugin_manager.hook.register_commands(cli=cli)
    try:
        result = CliRunner().invoke(cli, ["hello"])
        assert result.exit_code == 0 and result.output == "hello from a plugin\n"
    finally:
        cli.commands.pop("hello")


def test_example_package_is_used_by_lrbench_run(tmp_path, synth_data):
    install_like_pip(tmp_path, "lrbench-degrade-chain", {"degrade_chain": "lrbench_degrade_chain"})
    run = lrbench("run", "-b", "lbp", "--data", synth_data.lfw_root, "--df", "2", "--degradation", "camera",
                  "--degradation-option", "jpeg=40", "--out", tmp_path / "run", "--json",
                  pythonpath=[tmp_path, EXAMPLE])
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["degradation"]["name"] == "camera" and manifest["degradation"]["settings"]["jpeg"] == 40


def test_a_misspelled_hook_is_reported(tmp_path):
    (tmp_path / "typo.py").write_text("from lrbench import hookimpl\n\n@hookimpl\ndef register_backbone(register):\n"
                                      "    pass\n")
    with pytest.raises(LrbenchError, match="typo.py.*register_backbone"):
        load_plugins_dir(tmp_path)


def test_plugins_dir_option_loads_loose_files(tmp_path, plugin_manager):
    folder = tmp_path / "loose"
    folder.mkdir()
    (folder / "nearest.py").write_text(documented_example("register_degradations"))
    try:
        result = CliRunner().invoke(cli, ["--plugins-dir", str(folder), "list", "degradations", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["degradations"]["nearest"]["plugin"] == "loose/nearest.py"
    finally:
        plugin_manager.unregister(name="loose/nearest.py")
