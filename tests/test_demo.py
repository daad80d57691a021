"""``lrbench demo`` (the built-in plugin lrbench_plugins.demo) and the numbers docs/training.md publishes for it."""

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from lrbench.cli import cli
from lrbench.plugins import load_plugins

# docs/training.md: "the HR model reaches 100% at DF 1 (EER 0%) … and 65.0% at DF 8; the student reaches 82.5% at DF 8".
# Training is deterministic on one machine; another CPU's arithmetic may move a few of the 600 pairs.
PUBLISHED = {("hr", 1): 1.0, ("hr", 8): 0.650, ("lr8", 8): 0.825}
TOLERANCE = 0.025  # 15 pairs


def test_the_console_script_has_the_demo_command():
    shown = subprocess.run([sys.executable, "-m", "lrbench", "demo", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "--student-df" in shown.stdout


def test_demo_reproduces_the_published_numbers(tmp_path):
    load_plugins().hook.register_commands(cli=cli)  # what lrbench's main() does before running a command
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--df", "1,8", "--json"])
    assert result.exit_code == 0, result.output
    runs = {Path(run["run"]).name: run for run in json.loads(result.stdout)}
    accuracy = {(name, row["df"]): row["accuracy_mean"] for name, run in runs.items() for row in run["results"]}
    for key, published in PUBLISHED.items():
        assert abs(accuracy[key] - published) <= TOLERANCE, (key, accuracy[key])
    # the claim itself: the student distilled at DF 8 wins back most of what 12×14 px cost (published: 17.5 points)
    assert accuracy["lr8", 8] - accuracy["hr", 8] >= 0.15
    assert runs["hr"]["label"] == "SphereFace-4 HR (classify, CosFace)"
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
