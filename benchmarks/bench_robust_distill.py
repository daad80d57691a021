"""Does one student distilled over a range of DFs keep high resolution and win back low resolution?

    python benchmarks/bench_robust_distill.py [--out runs/bench-robust] [--low 12] [--dfs 1,2,4,8,12] [--epochs 5]

On lrbench's synthetic faces (the demo's data and network: SphereFace-4 at a quarter width), trains the
high-resolution teacher once (classification, CosFace), then distils one student per recipe from it (the
seed's, at the lowest resolution only, and one over the whole range DF 1…``--low``), each for the same
number of epochs, and evaluates every network with ``lrbench run`` at ``--dfs``. Prints one row per
network: accuracy at each DF, the mean over the LR DFs, and the change against the teacher at DF 1 and on
that mean. All commands are lrbench's own, so each run folder's manifest says how to reproduce it.
(Recipes measured here and dropped because they did not help: a DF sampling uniform over log probe size, a
high-to-low curriculum and a full-resolution feature term; benchmarks/results/README.md has their numbers.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from click.testing import CliRunner

from lrbench.cli import cli
from lrbench.plugins import load_plugins

NETWORK = ["depth=4", "width=0.25"]
SCHEDULE = ["--batch-size", "64", "--workers", "0", "--no-cache"]


def recipes(low: int) -> dict[str, list]:
    """name: the distillation options that make the recipe, up to the lowest resolution's DF ``low`` (every
    student starts from the teacher's weights)."""
    return {f"seed-df{low}": ["--df", low], f"uniform-1-{low}": ["--df", f"1-{low}"]}


def lrbench(*args) -> str:
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    if result.exit_code:
        raise SystemExit(f"lrbench {' '.join(map(str, args))}: exit {result.exit_code}\n{result.output}")
    return result.stdout


def options(flag: str) -> list[str]:
    return [arg for option in NETWORK for arg in (flag, option)]


def synthetic_data(out: Path) -> Path:
    data = out / "data"
    if not (data / "lfw" / "pairs.txt").is_file():
        lrbench("synth", data, "--train-identities", "200", "--train-images-per-identity", "8")
    return data


def train_teacher(data: Path, out: Path, epochs: int) -> Path:
    model = out / "teacher" / "model.pt"
    if not model.is_file():
        lrbench("train", "classify", "--data", data / "casia" / "images", *options("--option"), "--loss", "cosface",
                "--lr", "1e-3", "--epochs", epochs, *SCHEDULE, "--out", out / "teacher")
    return model


def distil(data: Path, teacher: Path, out: Path, recipe: list, epochs: int) -> Path:
    if not (out / "model.pt").is_file():
        lrbench("train", "distill", "--data", data / "casia" / "images", "--teacher", "sphereface",
                "--teacher-weights", teacher, *options("--teacher-option"), *recipe, "--epochs", epochs,
                *SCHEDULE, "--out", out)
    return out / "model.pt"


def accuracy(data: Path, model: Path, dfs: str) -> dict[int, float]:
    """Mean accuracy per DF of the model; its run directory is written beside the model (never into the cwd)."""
    shown = lrbench("run", "--backbone", "sphereface", *options("--option"), "--weights", model,
                    "--data", data / "lfw", "--df", dfs, "--no-cache", "--json",
                    "--out", model.parent / "evaluation", "--overwrite")
    return {row["df"]: row["accuracy_mean"] for row in json.loads(shown)["results"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-robust"))
    parser.add_argument("--dfs", default="1,2,4,8,12", help="Evaluate at these DFs (the first is the HR one).")
    parser.add_argument("--low", type=int, default=12, help="The lowest resolution the students train at (a DF).")
    parser.add_argument("--epochs", type=int, default=5, help="Epochs of the teacher and of every student.")
    parser.add_argument("--recipes", help="Which students to distil (default: all; names as printed).")
    args = parser.parse_args()
    chosen = recipes(args.low)
    if args.recipes:
        chosen = {name: chosen[name] for name in args.recipes.split(",")}
    load_plugins()
    data = synthetic_data(args.out)
    teacher = train_teacher(data, args.out, args.epochs)
    rows = {"teacher": accuracy(data, teacher, args.dfs)}
    for name, recipe in chosen.items():
        rows[name] = accuracy(data, distil(data, teacher, args.out / name, recipe, args.epochs), args.dfs)
    base = rows["teacher"]
    dfs = list(base)
    hr, low = dfs[0], dfs[1:]
    print(f"{'network':<18}" + "".join(f"{'DF ' + str(df):>8}" for df in dfs) + f"{'LR mean':>9}{'Δ DF ' + str(hr):>9}"
          f"{'Δ LR':>7}")
    for name, acc in rows.items():
        mean, base_mean = (sum(values[df] for df in low) / len(low) for values in (acc, base))
        print(f"{name:<18}" + "".join(f"{100 * acc[df]:8.2f}" for df in dfs) + f"{100 * mean:9.2f}"
              + f"{100 * (acc[hr] - base[hr]):+9.2f}{100 * (mean - base_mean):+7.2f}")


if __name__ == "__main__":
    main()
