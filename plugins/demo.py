"""``lrbench demo``: the seed project's experiment in miniature, on synthetic faces, as a script of lrbench commands.

Synthesise LFW- and CASIA-format data, train a small SphereFace, sweep DF, distil a student at a DF where the
high-resolution model has lost accuracy, sweep the student and overlay both curves. The demo runs the public
commands (``synth``, ``train``, ``run``, ``report``) rather than lrbench's internals, so every run directory's
manifest holds the ``lrbench run`` line that reproduces it, and the core names no model. The networks are
narrow (``width=0.25``, SphereFace-4) so that all of it takes minutes on two CPU cores.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from pathlib import Path

import click

from lrbench import UsageError, hookimpl

NETWORK = ("depth=4", "width=0.25")
# More training identities than ``lrbench synth`` makes by default: a face embedding has to generalise to
# the unseen people of the test set, and 40 identities are too few to learn that from.
TRAINING_SET = ("--train-identities", "200", "--train-images-per-identity", "8")
TRAINER_FILES = ("last.pt", "log.jsonl", "model.pt")  # what every lrbench training run folder holds
SCHEDULE = ("--batch-size", "64", "--epochs", "5", "--workers", "0", "--no-cache")


def _options(flag: str) -> list[str]:
    return [arg for option in NETWORK for arg in (flag, option)]


def _lrbench(cli: click.Group, *args, stdout=None) -> None:
    """Run one lrbench command line, its output going to ``stdout`` (default: stderr, keeping stdout for the
    demo's results); a failing command has already said why, so the demo exits with its code."""
    with contextlib.redirect_stdout(stdout or sys.stderr):
        code = cli.main([str(arg) for arg in args], prog_name="lrbench", standalone_mode=False)
    if code:
        raise click.exceptions.Exit(code)


def _remove_earlier_models(trained: Path) -> None:
    """Delete the demo's own earlier training runs (a trainer never overwrites a run), and nothing else."""
    if not trained.exists():
        return
    entries = list(trained.iterdir()) if trained.is_dir() else [trained]
    foreign = [entry.name for entry in entries if not any((entry / name).is_file() for name in TRAINER_FILES)]
    if foreign:
        raise UsageError(f"--out: {trained} holds {len(foreign)} entries that are not lrbench training runs "
                         f"(e.g. {foreign[0]}); move them or choose another --out")
    shutil.rmtree(trained)


def _demo_command(cli: click.Group) -> click.Command:
    @click.command("demo")
    @click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
    @click.option("--df", "dfs", default="1-13", show_default=True, help="Degradation factors of the two sweeps.")
    @click.option("--student-df", default=8, show_default=True, help="The DF the LR student is distilled at.")
    @click.option("--json", "as_json", is_flag=True, help="Print the results of both sweeps as JSON on stdout.")
    def demo(out: Path, dfs: str, student_df: int, as_json: bool) -> None:
        """The main job on embedded data: synthesise faces, train a small SphereFace, sweep DF, distil an LR
        student, sweep it, and write one report with both curves (OUT/report.html; runs in OUT/hr, OUT/lr<DF>;
        data in OUT-data, trained models in OUT-train)."""
        data, trained = out.parent / f"{out.name}-data", out.parent / f"{out.name}-train"
        _remove_earlier_models(trained)
        _lrbench(cli, "synth", data, *TRAINING_SET)
        images = ["--data", data / "casia" / "images", "--landmarks", data / "casia" / "landmarks.txt", *SCHEDULE]
        # A 4-layer network at a quarter of the width takes (and needs, in 5 epochs) a larger step than the default.
        _lrbench(cli, "train", "classify", *images, *_options("--option"), "--loss", "cosface", "--lr", "1e-3",
                 "--out", trained / "hr")
        student = f"lr{student_df}"
        _lrbench(cli, "train", "distill", *images, "--teacher", "sphereface", "--teacher-weights",
                 trained / "hr" / "model.pt", *_options("--teacher-option"), "--df", student_df,
                 "--out", trained / student)
        labels = {
            "hr": "SphereFace-4 HR (classify, CosFace)",
            student: f"SphereFace-4 LR student (distilled at DF {student_df})",
        }
        for name, label in labels.items():  # their tables are shown once, by the report at the end
            _lrbench(cli, "run", "--backbone", "sphereface", *_options("--option"), "--weights",
                     trained / name / "model.pt", "--data", data / "lfw", "--df", dfs, "--no-cache",
                     "--label", label, "--out", out / name, "--overwrite", stdout=io.StringIO())
        _lrbench(cli, "report", *(out / name for name in labels), "--out", out, *(["--json"] if as_json else []),
                 stdout=sys.stdout)

    return demo


@hookimpl
def register_commands(cli):
    cli.add_command(_demo_command(cli))
