"""``lrbench demo`` (the built-in plugin lrbench_plugins.demo) end to end, at a size for the test suite.

benchmarks/bench_demo.py reproduces the numbers docs/training.md publishes for the demo as it ships (200
training identities × 8 images: the HR model 100 % at DF 1 and 65.0 % at DF 8, the student 82.5 % at DF 8).
Here the same demo on 100 identities × 6 images (conftest's ``small_demo``) is held to its own numbers, pinned
the same way.
"""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from lrbench.cli import cli
from lrbench.plugins import load_plugins

# Measured at 100 × 6 on one thread. Training is deterministic on one machine; another CPU's arithmetic may move a
# few of the 600 pairs.
PINNED = {("hr", 1): 0.997, ("hr", 8): 0.583, ("lr8", 8): 0.740}
TOLERANCE = 0.025  # 15 pairs
GAIN = 0.12  # the student over the HR model at DF 8: 15.7 points at this size, 17.5 at the published one


def test_the_console_script_has_the_demo_command():
    shown = subprocess.run([sys.executable, "-m", "lrbench", "demo", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "--student-df" in shown.stdout


def test_the_demo_gives_its_pinned_numbers_and_the_student_wins_back_low_resolution(small_demo):
    out, accuracy, runs = small_demo
    for key, pinned in PINNED.items():
        assert abs(accuracy[key] - pinned) <= TOLERANCE, (key, accuracy[key])
    # the claim itself: the student distilled at DF 8 wins back much of what 12×14 px cost
    assert accuracy["lr8", 8] - accuracy["hr", 8] >= GAIN
    labels = {Path(run["run"]).name: run["label"] for run in runs}
    assert labels == {"hr": "SphereFace-4 HR (classify, CosFace)",
                      "lr8": "SphereFace-4 LR student (distilled at DF 8)"}
    manifest = json.loads((out / "lr8" / "manifest.json").read_text())
    assert manifest["command"].startswith("lrbench run --backbone sphereface --option depth=4 --option width=0.25")
    assert (out / "report.html").is_file()


def test_demo_deletes_only_its_own_earlier_training_runs(tmp_path):
    load_plugins().hook.register_commands(cli=cli)
    (tmp_path / "demo-train" / "hr").mkdir(parents=True)
    (tmp_path / "demo-train" / "hr" / "log.jsonl").write_text("")
    (tmp_path / "demo-train" / "thesis.tex").write_text("precious")
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert "not lrbench training runs (e.g. thesis.tex)" in result.output
    assert (tmp_path / "demo-train" / "thesis.tex").read_text() == "precious"
