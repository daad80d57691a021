from pathlib import Path

import numpy as np
import pytest

from lrbench.errors import DataError, UsageError
from lrbench.pairs import ProtocolDefinition, build_pair_set, parse_lfw_pairs

PROTOCOL = ProtocolDefinition.from_toml(Path(__file__).parents[1] / "protocols" / "lfw-view2.toml")


def write_pairs(path, folds, per_class, same_line="Ann\t1\t2", diff_line="Ann\t1\tBob\t1"):
    lines = [f"{folds}\t{per_class}"]
    for _ in range(folds):
        lines += [same_line] * per_class + [diff_line] * per_class
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parses_folds_labels_and_names(tmp_path):
    records = parse_lfw_pairs(write_pairs(tmp_path / "pairs.txt", 2, 3))
    assert len(records) == 12
    assert [r.fold for r in records] == [0] * 6 + [1] * 6
    assert [r.same for r in records[:6]] == [True] * 3 + [False] * 3
    assert records[0].names == ("Ann", "Ann") and records[0].numbers == (1, 2)
    assert records[3].names == ("Ann", "Bob") and records[3].line == 5


def test_unique_images_are_shared_between_pairs(tmp_path):
    records = parse_lfw_pairs(write_pairs(tmp_path / "pairs.txt", 2, 2))
    pair_set = build_pair_set(tmp_path, tmp_path / "pairs.txt", records, PROTOCOL.path_pattern)
    assert pair_set.images == ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"]
    assert pair_set.first.tolist() == [0, 0, 0, 0] * 2
    assert pair_set.second.tolist() == [1, 1, 2, 2] * 2
    assert pair_set.same.tolist() == [True, True, False, False] * 2
    np.testing.assert_array_equal(pair_set.folds, [0, 0, 0, 0, 1, 1, 1, 1])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: ["10 300 x", *lines[1:]], r"pairs.txt:1: header"),
        (lambda lines: lines[:-1], r"promises 2 folds × 2 × 2 = 8 pair lines, found 7"),
        (lambda lines: [lines[0], "Ann\t1", *lines[2:]], r"pairs.txt:2: expected 3 fields"),
        (lambda lines: lines[:3] + ["Ann\t1\t2"] + lines[4:], r"pairs.txt:4: expected 4 fields"),
        (lambda lines: [lines[0], "Ann\tx\t2", *lines[2:]], r"pairs.txt:2: image numbers"),
        (lambda lines: [lines[0], "Ann\t0\t2", *lines[2:]], r"pairs.txt:2: image numbers"),
        (
            lambda lines: [lines[0], "../../x\t1\t2", *lines[2:]],
            r"pairs.txt:2: name '../../x' would reach outside",
        ),
        (lambda lines: [lines[0], "..\t1\t2", *lines[2:]], r"outside the data root"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, mutate, message):
    lines = write_pairs(tmp_path / "pairs.txt", 2, 2).read_text().splitlines()
    (tmp_path / "pairs.txt").write_text("\n".join(mutate(lines)) + "\n")
    with pytest.raises(DataError, match=message):
        parse_lfw_pairs(tmp_path / "pairs.txt")


def test_path_pattern_cannot_escape_the_root(tmp_path):
    records = parse_lfw_pairs(write_pairs(tmp_path / "pairs.txt", 2, 1))
    with pytest.raises(DataError, match="outside the data root"):
        build_pair_set(tmp_path, tmp_path / "pairs.txt", records, "../{name}_{number}.jpg")


def test_protocol_finds_pairs_and_image_folder(synth_data):
    pair_set = PROTOCOL.load(synth_data.lfw_root)
    assert pair_set.root == synth_data.lfw_images
    assert pair_set.source == synth_data.pairs
    assert pair_set.landmarks == synth_data.lfw_landmarks
    assert all((pair_set.root / rel).is_file() for rel in pair_set.images)


def test_protocol_without_pairs_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no pairs.txt"):
        PROTOCOL.load(tmp_path)


def test_official_lfw_has_6000_pairs_over_7701_images(shared_lfw):
    pair_set = PROTOCOL.load(shared_lfw)
    assert len(pair_set.same) == 6000 and pair_set.same.sum() == 3000
    assert len(pair_set.images) == 7701
    assert pair_set.folds.tolist() == np.repeat(np.arange(10), 600).tolist()
