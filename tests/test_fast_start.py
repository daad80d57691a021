"""The command line starts without the heavy libraries: torch and the plugins' networks load only where needed.

Each check runs lrbench in a fresh interpreter and reads ``sys.modules`` when the command has finished, so a
single stray top-level import anywhere on the path (the package's API, a spec, a plugin, the CLI) fails it.
What the start costs in seconds is measured in the CHANGELOG, not here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results"
NETWORKS = ("torch", "torchvision", "onnxruntime")
# Besides the networks, what only figures and statistics need: `--help` loads none of it.
FIGURES_AND_TABLES = ("matplotlib", "pandas", "sklearn", "scipy")

# Runs the CLI as `lrbench` does, then prints which of the watched modules were imported, whatever the exit.
RUN_AND_REPORT = """
import sys
from lrbench.cli import main
watched = sys.argv[1].split(",")
sys.argv = ["lrbench", *sys.argv[2:]]
try:
    main()
finally:
    print("imported:" + ",".join(name for name in watched if name in sys.modules), file=sys.stderr)
"""


def imported_by(*args: str, watched: tuple[str, ...], cwd: Path = ROOT, exit_code: int = 0) -> list[str]:
    """The watched modules that ``lrbench ARGS`` imported; the command must end with ``exit_code``."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT, ",".join(watched), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == exit_code, done.stderr
    line = [text for text in done.stderr.splitlines() if text.startswith("imported:")][-1]
    return [name for name in line.removeprefix("imported:").split(",") if name]


def test_importing_the_package_and_the_cli_loads_no_network_code():
    code = f"import sys, lrbench, lrbench.cli; print(','.join(m for m in {NETWORKS!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("args", [("--help",), ("list", "trainers"), ("train", "distill", "--help")])
def test_help_and_listing_load_neither_networks_nor_figures(args):
    """Trainers declare their commands without torch: what they run is imported when they run."""
    assert imported_by(*args, watched=NETWORKS + FIGURES_AND_TABLES) == []


@pytest.mark.parametrize(
    "args", [("run", "-b", "nope"), ("embed", "-b", "lbp", "-d", "nope", "--out", "x.npz")], ids=["run", "embed"]
)
def test_a_mistyped_backbone_or_degradation_is_refused_before_torch_loads(args, tmp_path):
    assert imported_by(*args, "--data", str(tmp_path), watched=NETWORKS, cwd=tmp_path, exit_code=2) == []


def test_the_public_api_loads_torch_only_for_the_names_that_need_it():
    code = (
        "import sys\n"
        "from lrbench import BackboneSpec, InputSpec, ARCFACE_112x112, DataError, hookimpl, registry\n"
        "for kind in ('backbone', 'degradation', 'protocol', 'detector'):\n"
        "    registry.collect(kind)\n"
        "before = 'torch' in sys.modules\n"
        "from lrbench import load_weights\n"
        "print(before, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]  # registering every spec is free; a checkpoint reader is not


def test_report_of_a_committed_run_does_not_load_torch(tmp_path):
    run = shutil.copytree(RUNS / "dlib-teacher", tmp_path / "dlib-teacher")  # report re-renders into the run
    assert imported_by("report", str(run), "--json", watched=NETWORKS) == []
    assert (run / "report.html").is_file()


def test_compare_of_committed_runs_does_not_load_torch():
    runs = [str(RUNS / name) for name in ("dlib-teacher", "dlib-uniform-8ep")]
    assert imported_by("compare", *runs, "--json", watched=NETWORKS) == []


@pytest.mark.parametrize("name", ["sphereface", "lbp"])
def test_building_a_backbone_still_loads_its_network(name):
    """The other side of lazy loading: the network module is found and built when asked for."""
    code = (
        "import sys\n"
        "from lrbench import registry\n"
        f"spec = registry.backbone({name!r})\n"
        "model = spec.build(None if spec.name == 'lbp' else 'random', **spec.options)\n"
        "print(type(model).__module__, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [f"lrbench_plugins.networks.{name}", "True"]
