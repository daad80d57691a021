"""The seed project's experiment in miniature, on synthetic faces: what ``lrbench demo`` runs.

Train a small SphereFace on the synthetic CASIA-format set, sweep DF on the synthetic LFW-format set,
distil a student at a DF where the high-resolution model has lost accuracy, sweep the student. The
networks are narrow (``width=0.25``, SphereFace-4) so that all of it takes minutes on two CPU cores.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

from .. import registry
from ..results import RunData
from ..synth import synthesize

NETWORK = ("depth=4", "width=0.25")
# More training identities than ``lrbench synth`` makes by default: a face embedding has to generalise to
# the unseen people of the test set, and 40 identities are too few to learn that from.
TRAINING_SET = {"train_identities": 200, "train_images_per_identity": 8}
SCHEDULE = ("--batch-size", "64", "--epochs", "5", "--workers", "0", "--no-cache")


def _train(trainer: str, args: list[str]) -> None:
    """Run a registered trainer's command as ``lrbench train`` would; its report goes to stderr."""
    command = registry.collect("trainer")[trainer].spec.command
    with contextlib.redirect_stdout(sys.stderr):
        command.main([str(arg) for arg in args], prog_name=f"lrbench train {trainer}", standalone_mode=False)


def _sweep(weights: Path, data: Path, dfs: str, label: str, show_progress: bool) -> RunData:
    from ..engine import EvalSettings, evaluate

    options = tuple(NETWORK)
    settings = EvalSettings(
        backbone="sphereface",
        data=data,
        dfs=dfs,
        weights=str(weights),
        options=options,
        cache_dir=None,
        show_progress=show_progress,
    )
    run = evaluate(settings)
    run.manifest["label"] = label
    return run


def run_demo(out: Path, dfs: str, student_df: int, show_progress: bool) -> tuple[RunData, RunData]:
    """The HR model's and the LR student's sweeps; training runs go to ``<out>-train/``."""
    data = synthesize(out.parent / f"{out.name}-data", **TRAINING_SET)
    runs = out.parent / f"{out.name}-train"
    shutil.rmtree(runs, ignore_errors=True)  # the demo's own previous runs: a trainer never overwrites a run
    images = ["--data", data.train_images, "--landmarks", data.train_landmarks, *SCHEDULE]
    network = [arg for option in NETWORK for arg in ("--option", option)]
    # A 4-layer network at a quarter of the width takes (and needs, in 5 epochs) a larger step than the default.
    _train("classify", [*images, *network, "--loss", "cosface", "--lr", "1e-3", "--out", runs / "hr"])
    hr = _sweep(runs / "hr" / "model.pt", data.lfw_root, dfs, "SphereFace-4 HR (classify, CosFace)", show_progress)
    teacher = [arg for option in NETWORK for arg in ("--teacher-option", option)]
    student = runs / f"lr{student_df}"
    _train(
        "distill",
        [
            *images,
            "--teacher",
            "sphereface",
            "--teacher-weights",
            runs / "hr" / "model.pt",
            *teacher,
            "--df",
            student_df,
            "--out",
            student,
        ],
    )
    label = f"SphereFace-4 LR student (distilled at DF {student_df})"
    return hr, _sweep(student / "model.pt", data.lfw_root, dfs, label, show_progress)
