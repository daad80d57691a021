"""One syntax for number lists (--df, --report-folds, --people-folds), checked against bounds before it is expanded."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lrbench.data.degrade import parse_dfs
from lrbench.errors import UsageError
from lrbench.eval.engine import _report_folds
from lrbench.ranges import parse_ranges
from lrbench.specs import PairSet
from lrbench.training.data import read_people


def ten_fold_pairs() -> PairSet:
    empty = np.zeros(20, dtype=np.int64)
    folds = np.repeat(np.arange(10), 2)
    return PairSet(Path("."), [], empty, empty, empty.astype(bool), folds, Path("pairs.txt"))


def write_people(path: Path, folds: int) -> Path:
    lines = [str(folds)]
    for fold in range(1, folds + 1):
        lines += ["1", f"Person{fold}\t2"]
    path.write_text("\n".join(lines) + "\n")
    return path


def df_list(text):
    return parse_dfs(text, (96, 112))


def report_fold_list(text):
    return [fold + 1 for fold in _report_folds(text, ten_fold_pairs())]


@pytest.fixture
def people_fold_list(tmp_path):
    people = write_people(tmp_path / "people.txt", 10)
    return lambda text: sorted(int(name.removeprefix("Person")) for name in read_people(people, text))


@pytest.mark.parametrize("option", ["df", "report", "people"])
def test_every_option_reads_singles_ranges_and_mixes_alike(option, people_fold_list):
    parse = {"df": df_list, "report": report_fold_list, "people": people_fold_list}[option]
    assert parse("8") == [8]
    assert parse("2-4") == [2, 3, 4]
    assert parse("2-4, 6 ,3") == [2, 3, 4, 6]
    assert parse(" 7 - 9 ") == [7, 8, 9]


SYNTAX = "expected DFs like 8, 1-13 or 1,2,4,8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1-999999999999", "--df 1-999999999999: DF 999999999999 is larger than the 96×112 crop (at most 96)"),
        ("0-4", "--df 0-4: DF must be at least 1, got 0"),
        ("6-2", "--df 6-2: range 6-2 runs backwards"),
        ("1,,2", f"--df 1,,2: {SYNTAX}"),
        ("1 2", f"--df 1 2: {SYNTAX}"),
        ("1-", f"--df 1-: {SYNTAX}"),
        ("", f"--df : {SYNTAX}"),
        ("٣", f"--df ٣: {SYNTAX}"),  # Arabic-Indic three: int() would read it, the parser does not
        ("²", f"--df ²: {SYNTAX}"),  # str.isdigit() accepts it, int() does not
        ("1_0", f"--df 1_0: {SYNTAX}"),
    ],
)
def test_bad_dfs_name_the_option_and_the_value(text, message):
    with pytest.raises(UsageError) as caught:
        df_list(text)
    assert str(caught.value) == message


def test_a_huge_range_is_refused_before_it_is_expanded():
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match="at most 96"):
            df_list("1-200000")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_numbers_longer_than_python_converts_are_out_of_bounds():
    digits = "9" * 5000  # int() refuses strings this long
    with pytest.raises(UsageError, match=f"DF {digits} is larger than the 96×112 crop"):
        df_list(f"1-{digits}")
    with pytest.raises(UsageError, match="must be at least 1"):
        df_list(f"-{digits}")


def test_report_folds_accepts_a_range_but_not_every_fold():
    assert _report_folds("2-10", ten_fold_pairs()) == list(range(1, 10))
    with pytest.raises(UsageError, match="--report-folds 1-10: choose some of the folds 1…10, not all"):
        _report_folds("1-10", ten_fold_pairs())
    with pytest.raises(UsageError, match=r"--report-folds 11: fold 11 is larger than the 10 folds of pairs.txt"):
        _report_folds("11", ten_fold_pairs())


def test_people_folds_beyond_the_file_name_it(tmp_path):
    people = write_people(tmp_path / "people.txt", 3)
    with pytest.raises(UsageError, match=rf"--people-folds 2-9: fold 9 is larger than the 3 folds of {people}"):
        read_people(people, "2-9")


def test_bounds_and_words_come_from_the_caller():
    parse = dict(unit="level", low=-2, high=2, bound="the scale", example="0 or -1-1")
    assert parse_ranges("-2--1,2", "--level", **parse) == [-2, -1, 2]
    with pytest.raises(UsageError, match="--level 3: level 3 is larger than the scale"):
        parse_ranges("3", "--level", **parse)
