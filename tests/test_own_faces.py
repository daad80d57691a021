"""docs/evaluating.md "Evaluate your own faces", end to end: raw images of identities in, a complete DF 1–13 run out.

Exactly that section's three commands on a generated identity folder (CASIA layout, one sub-folder per
person, unaligned 250×250 images and no landmark file): ``lrbench landmarks`` with the default detector
(MTCNN), ``lrbench pairs make``, ``lrbench run`` (with an untrained SphereFace-4, for speed: the test is about
the path, not the accuracy).
"""

import csv
import json
import shutil

from click.testing import CliRunner

from lrbench.cli import cli
from lrbench.data.pairs import parse_lfw_pairs
from lrbench.data.synth import synthesize


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_three_readme_commands_turn_raw_identity_folders_into_a_complete_run(tmp_path):
    synth = synthesize(tmp_path / "synth", seed=0, folds=2, pairs_per_fold=1, people_per_fold=2, images_per_person=2,
                       train_identities=8, train_images_per_identity=4)
    faces = tmp_path / "faces"
    shutil.move(synth.train_images, faces)  # the images alone: their true landmarks stay behind
    assert not list(faces.glob("*.txt"))

    found = invoke("landmarks", faces, "--out", faces / "landmarks.txt", "--quiet")
    assert f"wrote {faces / 'landmarks.txt'}: landmarks of" in found.stdout

    made = invoke("pairs", "make", faces, "--out", faces / "pairs.txt", "--folds", 2, "--pairs-per-fold", 4)
    assert made.stdout.startswith(f"{faces}: 8 persons, ")
    records = parse_lfw_pairs(faces / "pairs.txt")
    assert len(records) == 16 and sum(r.same for r in records) == 8

    run = tmp_path / "run"
    tiny = ("--backbone", "sphereface", "--weights", "random", "--option", "depth=4", "--option", "width=0.25")
    invoke("run", *tiny, "--data", faces, "--protocol", faces / "protocol.toml", "--df", "1-13", "--out", run,
           "--workers", 1, "--quiet")
    with open(run / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["df"]) for row in rows] == list(range(1, 14))
    assert all(row["pairs"] == "16" for row in rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["landmarks_file"] == "landmarks.txt"  # the one written above, named within --data
    assert manifest["data"]["pairs"] == 16 and manifest["data"]["folds"] == 2
    assert {"report.html", "folds.csv", "scores.csv", "roc.csv"} <= {p.name for p in run.iterdir()}
