"""Ten-fold cross-validation of a distilled student on LFW View 2, through lrbench's own commands.

    python benchmarks/cross_validate.py --data L/lfw-deepfunneled --pairs L/pairs.txt --people L/people.txt \\
        --landmarks L/landmarks.txt --teacher dlib-resnet --teacher-weights dlib_face_recognition_resnet_model_v1.dat \\
        --df-eval 1,2,4,6,8,10,12,13 --out runs/cv -- --df 1-13 --epochs 8 --batch-size 128

For each fold k: ``lrbench train distill`` on the people of the other folds (``--people-folds``) into
OUT/fold-KK/train, then ``lrbench run --report-folds k`` with that student into OUT/fold-KK/eval (threshold
chosen on the other folds, LFW's rule); when every fold is done, ``lrbench.report.crossval.merge_held_out_folds``
writes OUT/merged, one run directory of all the pairs (``lrbench report`` / ``compare`` read it).

Resumable: a fold whose evaluation is complete is skipped (its student's model.pt may even be deleted, the
evaluation's manifest keeps its SHA-256); an interrupted training continues with ``--resume``. After each
fold, OUT/progress is the merge of the folds done so far (a normal run directory of those folds' held-out
pairs, a tenth of a per-fold run each): commit it, and on another machine ``--from`` that copy counts its
folds as done and the final merge takes them from it. ``--folds 1,2``
does part of the work, so a short GPU session can do some folds and a later call the rest. Everything after
``--`` goes to ``lrbench train distill`` unchanged; OUT/crossval.json records it with the teacher and the DFs,
and a later call with another recipe is refused rather than mixing two recipes in one result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from lrbench.errors import LrbenchError, UsageError
from lrbench.fileio import sha256_file, write_atomic
from lrbench.ranges import parse_ranges
from lrbench.report.crossval import fold_spans, held_out_folds, merge_held_out_folds
from lrbench.report.results import FOLDS, MANIFEST, load_run, run_dir_problem
from lrbench.training.data import people_by_fold

CONFIG = "crossval.json"
TRAINING = "training.json"  # beside a fold's train/ folder: the lrbench command that trained it
# What a later call must share with the first for its folds to belong to the same result.
RECIPE = ("teacher", "teacher_weights_sha256", "df_eval", "train_args", "run_args")


def _lrbench(*args) -> None:
    """One lrbench command line in this process, as ``lrbench`` itself would run it (its manifest records it)."""
    import click

    from lrbench.cli import cli

    with contextlib.redirect_stdout(sys.stderr):  # lrbench's tables go to stderr; stdout is the driver's lines
        try:
            code = cli.main([str(arg) for arg in args], prog_name="lrbench", standalone_mode=False)
        except click.ClickException as exc:  # a bad option: said as lrbench itself would say it
            exc.show()
            code = exc.exit_code
    if code:
        raise SystemExit(code)


def _student(train_args: list[str]) -> tuple[str | None, list[str]]:
    """The student's backbone and options as ``lrbench run`` takes them: ``--student``'s (default: the teacher's
    architecture) and ``--student-option``s, else (same architecture) the ``--teacher-option``s."""
    student, options = None, {"--student-option": [], "--teacher-option": []}
    for flag, value in zip(train_args, train_args[1:]):
        if flag == "--student":
            student = value
        elif flag in options:
            options[flag].append(value)
    chosen = options["--student-option"] or ([] if student else options["--teacher-option"])
    return student, [arg for value in chosen for arg in ("--option", value)]


def _check_recipe(out: Path, recipe: dict) -> None:
    """Record the recipe on the first call; refuse a later call whose recipe differs."""
    path = out / CONFIG
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        different = [key for key in RECIPE if stored.get(key) != recipe[key]]
        if different:
            shown = "; ".join(f"{key}: {stored.get(key)} vs {recipe[key]}" for key in different)
            raise UsageError(
                f"--out {out}: holds folds of another recipe ({shown}); choose another --out to train this one"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(recipe, indent=2) + "\n")


def _fold_paths(out: Path, fold: int) -> tuple[Path, Path, Path]:
    """A fold's training run folder, evaluation run directory and student weights."""
    folder = out / f"fold-{fold:02d}"
    return folder / "train", folder / "eval", folder / "train" / "model.pt"


def _earlier(args: argparse.Namespace, recipe: dict) -> dict[int, Path]:
    """The folds ``--from`` holds (a merged run of this recipe's folds, e.g. a committed progress copy)."""
    if args.from_run is None:
        return {}
    run = load_run(args.from_run)
    record = run.manifest.get("cross_validation")
    if record is None:
        raise UsageError(f"--from {args.from_run}: not a merged cross-validation run")
    stored = record.get("recipe")
    if stored is None or any(stored.get(key) != recipe[key] for key in RECIPE):
        raise UsageError(f"--from {args.from_run}: its folds were made with another recipe ({stored}); give a merged "
                         "run of this one")
    return {fold: args.from_run for fold in held_out_folds(run)}


def _done(out: Path, fold: int) -> bool:
    """The fold's evaluation is a complete run of this fold alone, of the student now in its model.pt (or of a
    student since deleted)."""
    _, eval_dir, model = _fold_paths(out, fold)
    if not eval_dir.is_dir() or run_dir_problem(eval_dir) is not None:
        return False
    folds = pd.read_csv(eval_dir / FOLDS)["fold"].unique().tolist()
    weights = json.loads((eval_dir / MANIFEST).read_text(encoding="utf-8")).get("weights", {})
    return folds == [fold] and (not model.is_file() or weights.get("sha256") == sha256_file(model))


def _training_facts(out: Path, fold: int) -> dict:
    """How fold ``fold``'s student was trained, for the merged manifest: the command and its summary's facts."""
    train = _fold_paths(out, fold)[0]
    facts = {}
    for path in (train.parent / TRAINING, train / "summary.json"):
        if path.is_file():
            facts.update(json.loads(path.read_text(encoding="utf-8")))
    kept = ("command", "steps", "epochs", "global_batch", "device", "precision", "wall_s", "images_per_s",
            "loss_first", "loss_last", "images", "weights_sha256_per_rank")
    return {"training": {key: facts[key] for key in kept if key in facts}} if facts else {}


def _fold_summary(fold: int, train: Path, eval_dir: Path, seconds: dict) -> str:
    """One line: training time and images/s (from summary.json), evaluation time, held-out accuracy per DF."""
    parts = [f"fold {fold}"]
    summary = train / "summary.json"
    if summary.is_file():
        facts = json.loads(summary.read_text(encoding="utf-8"))
        loading = f" ({seconds['train']:.0f} s with loading data and teacher)" if "train" in seconds else ""
        parts.append(f"trained {facts['steps']} steps in {facts['wall_s']:.0f} s{loading}, "
                     f"{facts['images_per_s']:.0f} images/s on {facts['device']} ({facts['precision']})")
    if "eval" in seconds:
        parts.append(f"evaluated in {seconds['eval']:.0f} s")
    run = load_run(eval_dir)
    accuracy = ", ".join(f"DF {row.df} {100 * row.accuracy:.2f}%" for row in run.folds.itertuples())
    return " · ".join(parts) + f" · held-out accuracy: {accuracy}"


def cross_validate(args: argparse.Namespace, train_args: list[str]) -> Path | None:
    """Train and evaluate the requested folds (skipping finished ones); merge once every fold is done."""
    n_folds = len(people_by_fold(args.people))
    if n_folds < 2:
        raise UsageError(f"--people {args.people}: {n_folds} fold; cross-validation needs 2 or more")
    every = list(range(1, n_folds + 1))
    bound = f"the {n_folds} folds of {args.people}"
    wanted = parse_ranges(args.folds, "--folds", unit="fold", low=1, high=n_folds, bound=bound,
                          example="1, 1-3 or 1,4") if args.folds else every
    recipe = {
        "teacher": args.teacher,
        "teacher_weights_sha256": sha256_file(args.teacher_weights) if args.teacher_weights else None,
        "df_eval": args.df_eval,
        "train_args": train_args,
        "run_args": shlex.split(args.run_args),
    }
    _check_recipe(args.out, recipe)
    student, options = _student(train_args)
    backbone = student or args.teacher
    data = ["--data", args.data, *(["--aligned"] if args.aligned else ["--landmarks", args.landmarks])]
    runtime = ["--device", args.device, *(["--cache-dir", args.cache_dir] if args.cache_dir else [])]
    teacher = ["--teacher", args.teacher, *(["--teacher-weights", args.teacher_weights] if args.teacher_weights
                                            else [])]
    earlier = _earlier(args, recipe)
    merged_now = False  # OUT/progress holds every fold done: written after each fold this call evaluates
    for fold in wanted:
        train, eval_dir, model = _fold_paths(args.out, fold)
        folder = train.parent
        if fold in earlier and not _done(args.out, fold):
            print(f"fold {fold}: done earlier ({args.from_run}); skipped", flush=True)
            continue
        if _done(args.out, fold):
            print(f"fold {fold}: done earlier ({eval_dir}); skipped", flush=True)
            continue
        seconds = {}
        if not (model.is_file() and (train / "summary.json").is_file()):
            others = fold_spans([other for other in every if other != fold])
            started = time.perf_counter()
            if (train / "last.pt").is_file():
                print(f"fold {fold}: resuming the interrupted training in {train}", flush=True)
                _lrbench("train", "distill", "--resume", train, *teacher, *runtime)  # click requires --teacher
            else:
                print(f"fold {fold}: training on the people of folds {others}", flush=True)
                command = ["train", "distill", *teacher, *data, "--people", args.people, "--people-folds", others,
                           *runtime, "--out", train, *train_args]
                folder.mkdir(parents=True, exist_ok=True)
                write_atomic(folder / TRAINING, json.dumps({"command": shlex.join(["lrbench", *map(str, command)])},
                                                           indent=2) + "\n")
                _lrbench(*command)
            seconds["train"] = time.perf_counter() - started
        print(f"fold {fold}: evaluating on fold {fold} at DF {args.df_eval}", flush=True)
        started = time.perf_counter()
        _lrbench("run", "--backbone", backbone, *options, "--weights", model, *data, "--pairs", args.pairs,
                 "--df", args.df_eval, "--report-folds", fold, *runtime, "--label", f"{args.label}, fold {fold}",
                 "--out", eval_dir, "--overwrite", "--quiet", *recipe["run_args"])
        seconds["eval"] = time.perf_counter() - started
        print(_fold_summary(fold, train, eval_dir, seconds), flush=True)
        _merge(args, recipe, earlier, every, "progress")  # a kill before the next fold keeps this one
        merged_now = True
    done = {fold: _fold_paths(args.out, fold)[1] for fold in every if _done(args.out, fold)}
    missing = [fold for fold in every if fold not in done and fold not in earlier]
    if missing:
        if (done or earlier) and not merged_now:
            _merge(args, recipe, earlier, every, "progress")
        print(f"folds done: {fold_spans(sorted({*done, *earlier})) or 'none'}; still to do: "
              f"{fold_spans(missing)} (run again with --folds {fold_spans(missing)}, or without --folds)", flush=True)
        return None
    merged = args.out / "merged"
    run = _merge(args, recipe, earlier, every, "merged")
    for row in run.results.itertuples():
        print(f"merged DF {row.df}: {100 * row.accuracy_mean:.2f}% ± {100 * row.accuracy_std:.2f} over "
              f"{n_folds} folds, AUC {row.auc:.4f}, EER {100 * row.eer:.2f}%", flush=True)
    print(f"merged run directory: {merged} (report: {merged / 'report.html'})", flush=True)
    return merged


def _merge(args: argparse.Namespace, recipe: dict, earlier: dict[int, Path], every: list[int], name: str):
    """Merge the folds done (here, else in ``--from``) into OUT/NAME: "progress" while folds are missing."""
    sources = {**earlier, **{fold: _fold_paths(args.out, fold)[1] for fold in every if _done(args.out, fold)}}
    command = shlex.join(["python", "benchmarks/cross_validate.py", *args.argv])
    facts = {fold: _training_facts(args.out, fold) for fold in sources if sources[fold] != args.from_run}
    return merge_held_out_folds(sources, args.out / name, label=f"{args.label} ({len(every)}-fold cross-validation)",
                                command=command, fold_facts=facts, overwrite=True, partial=len(sources) < len(every),
                                facts={"recipe": recipe})


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                    usage="%(prog)s [options] -- [lrbench train distill options]")
    found.add_argument("--data", type=Path, required=True, help="The image folder (identity sub-folders).")
    found.add_argument("--pairs", type=Path, required=True, help="View 2 pairs.txt.")
    found.add_argument("--people", type=Path, required=True, help="View 2 people.txt (its folds match the pairs').")
    where = found.add_mutually_exclusive_group(required=True)
    where.add_argument("--landmarks", type=Path, help="5-point landmarks of the images.")
    where.add_argument("--aligned", action="store_true", help="The images are aligned crops already.")
    found.add_argument("--teacher", required=True, help="The teacher's registered backbone, e.g. dlib-resnet.")
    found.add_argument("--teacher-weights", help="Its weights (default: the backbone's default weights).")
    found.add_argument("--df-eval", default="1,2,4,6,8,10,12,13", help="DFs of each fold's evaluation.")
    found.add_argument("--out", type=Path, default=Path("runs/cv"), help="fold-KK/{train,eval}/ and merged/.")
    found.add_argument("--folds", help="Only these folds now, e.g. 1,2 or 3-10 (default: every fold).")
    found.add_argument("--from", dest="from_run", type=Path, help="A merged run of this recipe's folds done "
                       "elsewhere (e.g. a committed OUT/progress copy): its folds count as done, merged from it.")
    found.add_argument("--device", default="auto", help="Where training and evaluation run (cpu, cuda, ...).")
    found.add_argument("--cache-dir", help="The crop cache of training and evaluation (default: lrbench's).")
    found.add_argument("--run-args", default="", help="Extra `lrbench run` options, one string, e.g. "
                       "'--precision bf16 --batch-size 256'.")
    found.add_argument("--label", default="student", help="The runs' label: 'LABEL, fold K' and, merged, "
                       "'LABEL (N-fold cross-validation)'.")
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:split])
    args.argv = list(argv)
    try:
        cross_validate(args, argv[split + 1 :])
    except LrbenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # an lrbench command failed and has said why
        return int(exc.code or 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
