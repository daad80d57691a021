"""Images are recognised by their content, whatever their names, and a flat folder whose file names say who is
shown (the Yale faces: GIF files named ``subject01.glasses``) becomes a benchmark: landmarks, pairs, run."""

import csv
import json
import re

import numpy as np
from cli_helpers import invoke
from PIL import Image

from lrbench.data.pairs import parse_lfw_pairs
from lrbench.data.synth import synthesize
from lrbench.fileio import image_files

MOODS = ("glasses", "happy", "noglasses", "sad", "sleepy", "wink")


def picture(path, image_format):
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, image_format)


def test_images_are_found_by_content_whatever_their_suffix(tmp_path):
    picture(tmp_path / "subject01.glasses", "GIF")
    picture(tmp_path / "scan.tif", "TIFF")
    picture(tmp_path / "face", "PNG")
    (tmp_path / "sub").mkdir()
    picture(tmp_path / "sub" / "photo.data", "JPEG")
    (tmp_path / "named.jpg").touch()  # named as an image: listed, and refused by name when decoded
    (tmp_path / "readme").write_text("subject01 wears glasses\n")
    (tmp_path / "landmarks.txt").write_text("face\t1\t2\t3\t4\t5\t6\t7\t8\t9\t10\n")
    (tmp_path / "empty").touch()
    (tmp_path / ".hidden").mkdir()
    picture(tmp_path / ".hidden" / "cached", "PNG")
    assert image_files(tmp_path) == ["face", "named.jpg", "scan.tif", "sub/photo.data", "subject01.glasses"]


def test_a_flat_folder_of_gif_files_without_suffix_becomes_a_benchmark(tmp_path):
    synth = synthesize(tmp_path / "synth", seed=0, folds=2, pairs_per_fold=1, people_per_fold=2, images_per_person=2,
                       train_identities=12, train_images_per_identity=6)
    faces = tmp_path / "yale"
    faces.mkdir()
    for k, person in enumerate(sorted(p for p in synth.train_images.iterdir() if p.is_dir()), start=1):
        for mood, image in zip(MOODS, sorted(person.iterdir())):
            Image.open(image).convert("RGB").save(faces / f"subject{k:02d}.{mood}", "GIF")
    (faces / "Readme").write_text("The faces of 12 people, 6 expressions each.\n")

    found = invoke("landmarks", faces, "--out", faces / "landmarks.txt", "--quiet")
    assert found.exit_code == 0, found.output
    listed = [line.split("\t")[0] for line in (faces / "landmarks.txt").read_text().splitlines()]
    detected = [name for name in listed if re.fullmatch(r"subject\d\d\.[a-z]+", name)]
    assert len(detected) >= 20  # MTCNN finds 26 of the 72 synthetic faces in GIF (33 in the JPEG originals)

    rule = r"^(subject\d+)\."
    made = invoke("pairs", "make", faces, "--out", faces / "pairs.txt", "--identity", rule, "--folds", 2)
    assert made.exit_code == 0, made.output
    told = re.match(r"--pairs-per-fold: (\d+) pairs per fold, fewer than the default 300", made.stdout)
    assert told, made.stdout
    assert f"12 persons (named by --identity {rule!r})" in made.stdout
    records = parse_lfw_pairs(faces / "pairs.txt")
    assert len(records) == 2 * 2 * int(told[1])

    run = tmp_path / "run"
    tiny = ("--backbone", "sphereface", "--weights", "random", "--option", "depth=4", "--option", "width=0.25")
    result = invoke("run", *tiny, "--data", faces, "--protocol", faces / "protocol.toml", "--df", "1,8", "--out", run,
                    "--workers", 1, "--quiet")
    assert result.exit_code == 0, result.output
    with open(run / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["df"]) for row in rows] == [1, 8] and all(int(row["pairs"]) == len(records) for row in rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["pairs"] == len(records)
