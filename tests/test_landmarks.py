"""Landmark files: strict parsing with line numbers, refused conflicting duplicates, exact matching."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrbench.data.align import check_landmarks
from lrbench.data.landmarks import landmarks_for, read_landmark_lines, read_landmarks
from lrbench.errors import DataError

POINTS = "\t".join(str(v) for v in range(10, 20))


def write(tmp_path, text, name="landmarks.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_each_entry_keeps_its_line_number(tmp_path):
    path = write(tmp_path, f"\na.jpg\t{POINTS}\n\n  \nb\\c.jpg {POINTS}\n")
    table = read_landmark_lines(path)
    assert {name: line for name, (line, _) in table.items()} == {"a.jpg": 2, "b/c.jpg": 5}
    np.testing.assert_array_equal(table["a.jpg"][1], np.arange(10, 20.0).reshape(5, 2))


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    path = write(tmp_path, f"\ufeffa.jpg\t{POINTS}\n")
    assert list(read_landmarks(path)) == ["a.jpg"]


def test_line_numbers_are_those_an_editor_shows(tmp_path):
    # A form feed is a line break to str.splitlines, not to an editor.
    path = write(tmp_path, f"a.jpg\t{POINTS}\f\nb.jpg\t1 2 3\n")
    with pytest.raises(DataError, match=r"landmarks\.txt:2: expected a path and 10 coordinates, got 4 fields"):
        read_landmarks(path)


def test_a_path_listed_twice_with_different_points_names_both_lines(tmp_path):
    other = POINTS.replace("19", "19.5")
    path = write(tmp_path, f"a.jpg\t{POINTS}\nb.jpg\t{POINTS}\na.jpg\t{other}\n")
    with pytest.raises(DataError) as error:
        read_landmarks(path)
    assert str(error.value) == f"{path}:3: a.jpg: different landmarks than on line 1"


def test_a_path_repeated_with_the_same_points_is_accepted(tmp_path):
    path = write(tmp_path, f"a.jpg\t{POINTS}\na.jpg {POINTS.replace('10', '10.000')}\n")
    assert read_landmark_lines(path)["a.jpg"][0] == 1


def test_an_image_matches_its_relative_path(tmp_path):
    path = write(tmp_path, f"x.jpg\t{POINTS}\nName/Name_0001.jpg\t{POINTS.replace('10', '11')}\n")
    found = landmarks_for(["Name/Name_0001.jpg"], path, tmp_path / "images")
    assert found.lines == (2,) and found.where(0) == f"{path}:2"
    assert found.points[0, 0, 0] == 11


def test_an_image_matches_its_path_prefixed_with_the_image_folders_name(tmp_path):
    path = write(tmp_path, f"images/Name/Name_0001.jpg\t{POINTS}\n")
    assert landmarks_for(["Name/Name_0001.jpg"], path, tmp_path / "images").lines == (1,)


def test_a_file_written_for_another_image_folder_does_not_match(tmp_path):
    # The first path component used to be stripped, so these silently served the images under "images".
    path = write(tmp_path, f"casia/Name/Name_0001.jpg\t{POINTS}\n")
    with pytest.raises(DataError, match=r"no landmarks for 1 of 1 images: Name/Name_0001\.jpg"):
        landmarks_for(["Name/Name_0001.jpg"], path, tmp_path / "images")
    with pytest.raises(DataError, match="no landmarks for 1 of 1 images"):
        landmarks_for(["Name/Name_0001.jpg"], path)


def test_both_forms_with_different_points_name_both_lines(tmp_path):
    path = write(tmp_path, f"images/a.jpg\t{POINTS}\na.jpg\t{POINTS.replace('10', '12')}\n")
    with pytest.raises(DataError) as error:
        landmarks_for(["a.jpg"], path, tmp_path / "images")
    assert str(error.value).startswith(f"{path}:2: a.jpg: different landmarks than line 1 (images/a.jpg)")


def test_a_prefixed_path_that_is_itself_an_image_is_only_that_images_entry(tmp_path):
    # Under a folder "images" that holds a sub-folder "images", "images/a.jpg" is an image of its own.
    path = write(tmp_path, f"images/a.jpg\t{POINTS}\na.jpg\t{POINTS.replace('10', '12')}\n")
    found = landmarks_for(["a.jpg", "images/a.jpg"], path, tmp_path / "images")
    assert found.lines == (2, 1)


def test_the_real_lfw_landmarks_match_every_image_and_pass_the_sanity_checks(shared_lfw):
    root = shared_lfw / "lfw-deepfunneled"
    images = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.jpg"))
    found = landmarks_for(images, shared_lfw / "landmarks.txt", root)
    assert len(found.points) == len(images) == 13233
    for points in found.points:
        check_landmarks(points, (250, 250))  # every deep-funneled image is 250×250


FIELDS = st.sampled_from(
    ["a.jpg", "b/c.png", "1", "-2.5", "1e999", "nan", "inf", "0x10", "1_0", "١٢", "", "\\x", "\ufeff"]
)
SPACES = st.sampled_from([" ", "\t", "\n", "\r\n", "\f", "\x0b", "\u2028", "\x85", "\u3000"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), st.lists(st.tuples(FIELDS, SPACES), max_size=40)))
def test_any_file_content_gives_landmarks_or_a_data_error(tmp_path, content):
    if isinstance(content, list):
        content = "".join(field + space for field, space in content).encode()
    path = write(tmp_path, content)
    try:
        table = read_landmark_lines(path)
    except DataError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    for line, points in table.values():
        assert line >= 1 and points.shape == (5, 2) and np.isfinite(points).all()


NAMES = st.text(st.characters(blacklist_categories=["Cs", "Zs", "Zl", "Zp", "Cc"], blacklist_characters="\\\ufeff\x85"),
                min_size=1, max_size=12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(NAMES, st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=10, max_size=10),
                       max_size=5))
def test_a_file_written_by_python_reads_back_exactly(tmp_path, entries):
    path = write(tmp_path, "".join(f"{name}\t" + "\t".join(map(repr, v)) + "\n" for name, v in entries.items()))
    table = read_landmark_lines(path)
    assert list(table) == list(entries)
    for k, (name, values) in enumerate(entries.items(), 1):
        assert table[name][0] == k
        np.testing.assert_array_equal(table[name][1].ravel(), values)
