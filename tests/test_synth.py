"""The synthetic data: exact LFW/CASIA formats, exact landmarks, determinism, caching, and accuracy that
falls with the downsampling factor."""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from lrbench.data.align import align_face, similarity_transform
from lrbench.data.landmarks import read_landmarks
from lrbench.data.pairs import parse_lfw_pairs
from lrbench.data.synth import SynthPaths, synthesize
from lrbench.errors import UsageError
from lrbench.specs import SPHEREFACE_96x112

SMALL = dict(folds=3, pairs_per_fold=4, people_per_fold=3, images_per_person=3, train_identities=2,
             train_images_per_identity=3)
LFW_PATTERN = "{name}/{name}_{number:04d}.jpg"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> SynthPaths:
    return synthesize(tmp_path_factory.mktemp("synth") / "data", seed=5, **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _jpegs(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")}


def test_layout_and_formats_are_those_of_lfw_and_casia(small):
    assert small.lfw_images == small.lfw_root / "images"
    assert small.pairs.parent == small.people.parent == small.lfw_landmarks.parent == small.lfw_root
    lines = small.pairs.read_text().splitlines()
    assert lines[0] == "3\t4"
    records = parse_lfw_pairs(small.pairs)
    assert len(records) == 3 * 2 * 4
    assert all(len(line.split("\t")) == (3 if r.same else 4) for line, r in zip(lines[1:], records))

    names_by_fold: dict[int, set[str]] = {}
    for fold in range(3):
        in_fold = [r for r in records if r.fold == fold]
        assert [r.same for r in in_fold] == [True] * 4 + [False] * 4
        assert len({(r.names, r.numbers) for r in in_fold}) == 8, "a pair repeats within a fold"
        for r in in_fold:
            assert (r.names[0] == r.names[1]) == r.same
            assert r.numbers[0] != r.numbers[1] or not r.same
            assert all(name.startswith("Synth_Person_") and name.replace("_", "").isalnum() for name in r.names)
        names_by_fold[fold] = {name for r in in_fold for name in r.names}
    for a in range(3):
        for b in range(a + 1, 3):
            assert not names_by_fold[a] & names_by_fold[b], "folds must be identity-disjoint"

    on_disk = _jpegs(small.lfw_images)
    in_pairs = {LFW_PATTERN.format(name=n, number=k) for r in records for n, k in zip(r.names, r.numbers)}
    assert in_pairs <= on_disk
    assert set(read_landmarks(small.lfw_landmarks)) == on_disk

    people = small.people.read_text().splitlines()
    assert people[0] == "3"
    listed, row = [], 1
    for fold in range(3):
        count = int(people[row])
        fold_people = [line.split("\t") for line in people[row + 1 : row + 1 + count]]
        assert {name for name, _ in fold_people} >= names_by_fold[fold]
        listed += fold_people
        row += 1 + count
    assert row == len(people)
    assert Counter(rel.split("/")[0] for rel in on_disk) == {name: int(n) for name, n in listed}

    casia = _jpegs(small.train_images)
    assert casia == {f"{i:07d}/{k:03d}.jpg" for i in (1, 2) for k in (1, 2, 3)}
    assert set(read_landmarks(small.train_landmarks)) == casia
    for line in small.lfw_landmarks.read_text().splitlines():
        fields = line.split("\t")
        assert len(fields) == 11 and all(len(v.split(".")[1]) == 2 for v in fields[1:])
    with Image.open(small.lfw_images / sorted(on_disk)[0]) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (250, 250))


def test_landmarks_are_where_the_eyes_are_drawn(small):
    """Aligning with the written landmarks puts the dark pupils where the landmarks map to.

    Half a pixel of error (a pixel-centre convention mix-up) moves the mean error to about 0.45 crop px.
    """
    images = [
        (folder / rel, points)
        for folder, table in ((small.lfw_images, small.lfw_landmarks), (small.train_images, small.train_landmarks))
        for rel, points in sorted(read_landmarks(table).items())
    ]
    template = np.asarray(SPHEREFACE_96x112.points)
    errors = []
    for path, points in images:
        assert points[0, 0] < points[1, 0], "left eye first"
        crop = align_face(Image.open(path), points, SPHEREFACE_96x112).mean(-1)
        forward = similarity_transform(points, template)
        mapped = points @ forward[:, :2].T + forward[:, 2]
        # Face-shape differences between people leave the eyes only near the template points.
        assert np.abs(mapped[:2] - template[:2]).max() < 2.5
        errors += [np.hypot(*(_dark_centroid(crop, eye) - eye)) for eye in mapped[:2]]
    assert max(errors) < 0.75
    assert np.mean(errors) < 0.25


def _dark_centroid(grey: np.ndarray, near: np.ndarray, reach: int = 4) -> np.ndarray:
    """Darkness-weighted centroid (x, y) of the pixels in the darkest 40% of the window's range."""
    x0, y0 = np.round(near).astype(int) - reach
    window = grey[y0 : y0 + 2 * reach + 1, x0 : x0 + 2 * reach + 1]
    weight = np.clip(window.min() + 0.4 * np.ptp(window) - window, 0, None)
    ys, xs = np.mgrid[: window.shape[0], : window.shape[1]]
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum() + [x0, y0]


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path, small):
    again = synthesize(tmp_path / "again", seed=5, **SMALL)
    assert _files(again.lfw_root.parent) == _files(small.lfw_root.parent)
    other = synthesize(tmp_path / "other", seed=6, **SMALL)
    assert (other.lfw_images / "Synth_Person_0001/Synth_Person_0001_0001.jpg").read_bytes() != (
        small.lfw_images / "Synth_Person_0001/Synth_Person_0001_0001.jpg"
    ).read_bytes()


def test_complete_dataset_is_reused_and_other_parameters_regenerate(tmp_path):
    out = tmp_path / "data"
    first = synthesize(out, seed=1, **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "synth.json", first.pairs, first.lfw_landmarks)}
    calls = []
    assert synthesize(out, seed=1, **SMALL, progress=lambda *a: calls.append(a)) == first
    assert not calls
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    second = synthesize(out, seed=1, **{**SMALL, "images_per_person": 4}, progress=lambda *a: calls.append(a))
    assert calls[-1] == (3 * 3 * 4 + 2 * 3,) * 2
    assert json.loads((out / "synth.json").read_text())["images_per_person"] == 4
    assert len(_jpegs(second.lfw_images)) == 3 * 3 * 4
    assert sorted(os.listdir(tmp_path)) == ["data"], "temporary folders left behind"


def test_a_failed_build_leaves_the_previous_dataset_and_no_debris(tmp_path):
    out = tmp_path / "data"
    synthesize(out, seed=1, **SMALL)
    before = _files(out)
    seen = []

    def fail_midway(done: int, total: int) -> None:
        seen.append((done, total))
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesize(out, seed=2, **SMALL, progress=fail_midway)
    assert seen[0][1] == 3 * 3 * 3 + 2 * 3
    assert _files(out) == before
    assert sorted(os.listdir(tmp_path)) == ["data"]


def test_impossible_sizes_and_foreign_folders_are_refused(tmp_path):
    with pytest.raises(UsageError, match="pairs_per_fold"):
        synthesize(tmp_path / "x", **{**SMALL, "pairs_per_fold": 10})
    with pytest.raises(UsageError, match="at least 2"):
        synthesize(tmp_path / "x", **{**SMALL, "people_per_fold": 1})
    assert not (tmp_path / "x").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a synthetic dataset"):
        synthesize(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def pixel_auc_by_df(paths: SynthPaths, dfs: tuple[int, ...]) -> dict[int, float]:
    """ROC AUC of a plain pixel-correlation matcher on aligned, down-then-up-sampled grey crops."""
    landmarks = read_landmarks(paths.lfw_landmarks)
    records = parse_lfw_pairs(paths.pairs)
    names = sorted(landmarks)
    crops = [Image.fromarray(align_face(Image.open(paths.lfw_images / n), landmarks[n], SPHEREFACE_96x112))
             for n in names]
    index = {n: i for i, n in enumerate(names)}
    first, second = (np.array([index[LFW_PATTERN.format(name=r.names[k], number=r.numbers[k])] for r in records])
                     for k in (0, 1))
    aucs = {}
    for df in dfs:
        size = (int(96 / df), int(112 / df))
        grey = np.stack([
            np.asarray(c.resize(size, Image.BICUBIC).resize((96, 112), Image.BICUBIC).convert("L"), float).ravel()
            for c in crops
        ])
        grey -= grey.mean(1, keepdims=True)
        grey /= np.linalg.norm(grey, axis=1, keepdims=True)
        aucs[df] = roc_auc_score([r.same for r in records], (grey[first] * grey[second]).sum(1))
    return aucs


def test_verification_accuracy_falls_as_faces_get_smaller(tmp_path):
    paths = synthesize(tmp_path / "data", seed=0, folds=10, pairs_per_fold=6, people_per_fold=4,
                       images_per_person=3, train_identities=1, train_images_per_identity=1)
    auc = pixel_auc_by_df(paths, (1, 4, 8, 13))
    assert auc[1] > 0.9, auc
    assert auc[1] > auc[4] > auc[8], auc
    assert auc[1] > auc[8] + 0.15, auc
    assert 0.45 < auc[13] < auc[4], auc
