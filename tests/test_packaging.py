"""The wheel is what users install: it builds without warnings and, installed into a fresh virtual
environment, carries everything a run needs (protocol files, detector weights and their licence)."""

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w",
                            str(out), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    warnings = [line for line in built.stdout.splitlines() if "Warning" in line or "deprecat" in line.lower()]
    assert not warnings, warnings
    (path,) = out.glob("lrbench-*.whl")
    return path


def test_the_wheel_carries_the_licences_protocols_and_detector_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    licences = {name.split("/licenses/", 1)[1] for name in names if "/licenses/" in name}
    assert licences == {"LICENSE", "plugins/mtcnn_weights/LICENSE.md"}
    for data in ("lrbench_protocols/lfw-view2.toml", "lrbench_protocols/identification/tinyface.toml",
                 "lrbench_plugins/mtcnn_weights/pnet.pt", "lrbench_plugins/mtcnn_weights/LICENSE.md"):
        assert data in names, data
    packages = {str(path.relative_to(REPO)) for path in (REPO / "lrbench").rglob("__init__.py")}
    assert packages <= names, f"a subpackage is missing: {sorted(packages - names)}"


def test_the_installed_wheel_runs_from_a_fresh_environment(wheel, tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the wheel's own files, unpacked as pip would; its dependencies (torch, …) from this environment, whose
    # editable lrbench is not seen: a path entry does not run the .pth files that install it
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = "import sys; from lrbench.cli import main; sys.argv = ['lrbench', *sys.argv[1:]]; main()"
    where = subprocess.run([python, "-c", "import lrbench; print(lrbench.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout
    assert where.startswith(str(site)), where
    for args in (["--help"], ["list"]):
        result = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    listing = subprocess.run([python, "-c", script, "list", "protocols"], capture_output=True, text=True,
                             cwd=tmp_path).stdout
    assert "tinyface" in listing and "lfw-view2" in listing
