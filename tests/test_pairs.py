import re
from pathlib import Path

import numpy as np
import pytest

from lrbench.data.pairs import ProtocolDefinition, build_pair_set, parse_lfw_pairs
from lrbench.errors import DataError, UsageError

PROTOCOL_TOML = Path(__file__).parents[1] / "protocols" / "lfw-view2.toml"
PROTOCOL = ProtocolDefinition.from_toml(PROTOCOL_TOML)


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


# -- text encoding, line endings and separators ----------------------------------------------------------------


def pairs_text(folds=2, per_class=2, end="\n"):
    lines = [f"{folds}\t{per_class}"]
    for _ in range(folds):
        lines += ["Ann\t1\t2"] * per_class + ["Ann\t1\tBob\t1"] * per_class
    return end.join(lines) + end


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda text: "\ufeff" + text, id="byte-order mark"),
        pytest.param(lambda text: text.replace("\n", "\r\n"), id="CRLF"),
        pytest.param(lambda text: text.replace("\t", " "), id="spaces"),
        pytest.param(lambda text: text.replace("\t", " \t  "), id="mixed tabs and spaces"),
        pytest.param(lambda text: text.replace("\n", " \n"), id="trailing spaces"),
        pytest.param(lambda text: text + "\n \r\n\t\n", id="blank lines at the end"),
    ],
)
def test_harmless_variations_parse_like_the_plain_file(tmp_path, variant):
    plain = parse_lfw_pairs(write_pairs(tmp_path / "plain.txt", 2, 2))
    (tmp_path / "pairs.txt").write_bytes(variant(pairs_text()).encode("utf-8"))
    assert parse_lfw_pairs(tmp_path / "pairs.txt") == plain


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: [lines[0], "", *lines[1:]], r"pairs.txt:2: blank line"),
        (lambda lines: [*lines[:4], " \t", *lines[4:]], r"pairs.txt:5: blank line"),
        (lambda lines: ["١٠\t٣٠٠", *lines[1:]], r"pairs.txt:1: header must be"),  # Arabic-Indic digits
        (lambda lines: [lines[0], "Ann\t٣\t2", *lines[2:]], r"pairs.txt:2: image numbers must be positive integers"),
        (lambda lines: [lines[0], "Ann\t²\t2", *lines[2:]], r"pairs.txt:2: image numbers"),  # isdigit() but not int()
        (lambda lines: [lines[0], "Ann\t" + "9" * 5000 + "\t2", *lines[2:]], r"pairs.txt:2: image numbers"),
        (lambda lines: [lines[0], "Ann\xa0Lee\t1\t2", *lines[2:]], r"pairs.txt:2: name 'Ann\\xa0Lee' holds a control"),
        (lambda lines: [*lines[:2], "Ann\x0cLee\t1\t2", *lines[3:]], r"pairs.txt:3: name 'Ann\\x0cLee' holds"),
    ],
)
def test_unusual_text_is_refused_at_its_line(tmp_path, mutate, message):
    (tmp_path / "pairs.txt").write_text("\n".join(mutate(pairs_text().splitlines())) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        parse_lfw_pairs(tmp_path / "pairs.txt")


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    (tmp_path / "pairs.txt").write_bytes(b"\xef\xbb\xbf1\t1\nAnn\t1\t2\nJos\xe9\t1\tBob\t1\n")
    with pytest.raises(DataError, match=r"pairs.txt:3: not UTF-8 text \(byte 0xe9\)"):
        parse_lfw_pairs(tmp_path / "pairs.txt")


# -- protocol definitions ------------------------------------------------------------------------------------------


def write_protocol(path, **changes):
    """The shipped LFW definition with some ``key = value`` lines replaced (TOML text) or removed (None)."""
    lines = []
    for line in PROTOCOL_TOML.read_text().splitlines():
        key = line.partition("=")[0].strip()
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key} = {changes.pop(key)}")
            continue
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ('"{nam}/{nam}_{number:04d}.jpg"', r"unknown placeholder \{nam\}; use \{name\} and \{number\}"),
        ('"{name}/{0}.jpg"', r"unknown placeholder \{0\}"),
        ('"{name.upper}/{number}.jpg"', r"unknown placeholder \{name.upper\}"),
        ('"{name}/{name}.jpg"', r"must use both \{name\} and \{number\}"),
        ('"{name}/{number:04q}.jpg"', r"Unknown format code 'q'"),
        ('"{name:d}/{number}.jpg"', r"Unknown format code 'd'"),
        ('"{name}/{number!z}.jpg"', r"conversion"),
        ('"{name}/{number:c}.jpg"', r"range"),  # fails for image numbers beyond Unicode
        ('"{name/{number}.jpg"', r"unexpected '\{' in field name"),
        ('"{name}/{number"', r"expected '\}' before end of string"),
        ('"{name}}/{number}.jpg"', r"Single '\}'"),
    ],
)
def test_a_bad_path_pattern_is_refused_when_the_definition_is_read(tmp_path, pattern, message):
    toml = write_protocol(tmp_path / "mine.toml", path_pattern=pattern)
    with pytest.raises(DataError, match=rf"^{re.escape(str(toml))}: path_pattern .*{message}"):
        ProtocolDefinition.from_toml(toml)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("image_dirs", '"lfw"', r"image_dirs must be a non-empty list of folder names.*, got 'lfw'"),
        ("image_dirs", "[]", r"image_dirs must be a non-empty list"),
        ("image_dirs", '[".", 3]', r"image_dirs must be a non-empty list"),
        ("name", "3", r"name must be a non-empty string, got 3"),
        ("pairs_file", '""', r"pairs_file must be a non-empty string"),
        ("description", "[]", r"description must be a string"),
        ("path_pattern", "7", r"path_pattern must be a non-empty string"),
    ],
)
def test_wrong_value_types_are_refused_with_the_key(tmp_path, key, value, message):
    toml = write_protocol(tmp_path / "mine.toml", **{key: value})
    with pytest.raises(DataError, match=rf"^{re.escape(str(toml))}: {message}"):
        ProtocolDefinition.from_toml(toml)


@pytest.mark.parametrize(
    "expected", ['"expected = 6000"', "[expected]\npairs = true", "[expected]\npairs = -1", "[expected]\nimages = 3"]
)
def test_expected_must_be_a_table_of_counts(tmp_path, expected):
    text = PROTOCOL_TOML.read_text().split("[expected]")[0] + expected.strip('"') + "\n"
    (tmp_path / "mine.toml").write_text(text)
    with pytest.raises(DataError, match="expected must be a table of positive whole numbers"):
        ProtocolDefinition.from_toml(tmp_path / "mine.toml")


def test_a_definition_with_a_byte_order_mark_and_crlf_reads_like_the_plain_one(tmp_path):
    text = "\ufeff" + PROTOCOL_TOML.read_text().replace("\n", "\r\n")
    (tmp_path / "lfw-view2.toml").write_bytes(text.encode("utf-8"))
    mine = ProtocolDefinition.from_toml(tmp_path / "lfw-view2.toml")
    assert {**vars(mine), "source": ""} == {**vars(PROTOCOL), "source": ""}


def test_a_definition_that_is_not_utf8_is_a_data_error(tmp_path):
    (tmp_path / "mine.toml").write_bytes(PROTOCOL_TOML.read_bytes().replace(b"Labeled", b"Label\xe9d"))
    with pytest.raises(DataError, match=r"mine.toml:3: not UTF-8 text"):
        ProtocolDefinition.from_toml(tmp_path / "mine.toml")
