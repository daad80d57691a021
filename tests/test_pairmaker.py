"""`lrbench pairs make`: LFW-format benchmarks from identity folders, and the protocol images table behind them."""

import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
from cli_helpers import invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from lrbench.data.pairmaker import Person, make_benchmark, scan_identities
from lrbench.data.pairs import ProtocolDefinition, parse_lfw_pairs
from lrbench.errors import DataError, UsageError


def identity_folder(root: Path, counts: dict[str, int], name="img{:02d}.jpg") -> Path:
    """Empty image files (pairs make never decodes them): ``counts[person]`` images per person."""
    for person, count in counts.items():
        (root / person).mkdir(parents=True)
        for k in range(count):
            (root / person / name.format(k)).touch()
    return root


def people_of(count: int, images: int = 4) -> list[Person]:
    return [Person(f"p{k:03d}", tuple(f"p{k:03d}/{i}.jpg" for i in range(images))) for k in range(count)]


def read_people(path: Path) -> list[list[str]]:
    """The folds of a people.txt file, checking its counts on the way."""
    lines = path.read_text().splitlines()
    folds, position, out = int(lines[0]), 1, []
    for _ in range(folds):
        size = int(lines[position])
        out.append([line.split("\t")[0] for line in lines[position + 1 : position + 1 + size]])
        position += 1 + size
    assert position == len(lines)
    return out


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    """24 people with 1 to 6 images each."""
    return identity_folder(tmp_path / "faces", {f"person{k:02d}": 1 + k % 6 for k in range(24)})


def make(folder, *extra, out=None):
    out = out or folder / "pairs.txt"
    return invoke("pairs", "make", folder, "--out", out, "--folds", 3, "--pairs-per-fold", 8, *extra)


def test_folds_are_identity_disjoint_and_pairs_stay_inside_their_fold(folder):
    assert make(folder).exit_code == 0
    folds = read_people(folder / "people.txt")
    assert sorted(name for fold in folds for name in fold) == sorted(p.name for p in folder.iterdir() if p.is_dir())
    fold_of = {name: k for k, fold in enumerate(folds) for name in fold}
    for record in parse_lfw_pairs(folder / "pairs.txt"):
        assert fold_of[record.names[0]] == fold_of[record.names[1]] == record.fold


def test_each_fold_has_exactly_n_same_and_n_different_pairs_and_none_twice(folder):
    assert make(folder).exit_code == 0
    records = parse_lfw_pairs(folder / "pairs.txt")
    assert Counter((r.fold, r.same) for r in records) == {(f, s): 8 for f in range(3) for s in (True, False)}
    for r in records:
        assert (r.names[0] == r.names[1]) == r.same and r.names[0] <= r.names[1]
        assert not r.same or r.numbers[0] < r.numbers[1]
    images = [frozenset(zip(r.names, r.numbers)) for r in records]
    assert all(len(pair) == 2 for pair in images) and len(set(images)) == len(images)


def test_the_same_seed_gives_byte_identical_files_and_another_seed_other_pairs(folder, tmp_path):
    for out in ("a", "b", "c"):
        (tmp_path / out).mkdir()
    assert make(folder, out=tmp_path / "a" / "pairs.txt").exit_code == 0
    assert make(folder, out=tmp_path / "b" / "pairs.txt").exit_code == 0
    assert make(folder, "--seed", 1, out=tmp_path / "c" / "pairs.txt").exit_code == 0
    for name in ("pairs.txt", "people.txt", "protocol.toml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "pairs.txt").read_text() != (tmp_path / "c" / "pairs.txt").read_text()


def test_a_person_with_many_images_gets_no_more_same_pairs_than_the_others():
    # Uniform sampling over all same pairs would give "big" (1225 pairs) almost all of them.
    people = [Person("big", tuple(f"big/{i}.jpg" for i in range(50))), *people_of(19)]
    bench = make_benchmark(people, folds=2, pairs_per_fold=15, seed=0)
    per_person = Counter(name for fold in bench.same for name, _, _ in fold)
    assert max(per_person.values()) - min(per_person.values()) <= 1
    assert per_person["big"] <= 2


def test_people_short_of_pairs_give_all_they_have_and_the_others_share_the_rest_evenly():
    counts = [2, 2, 3, 3, 4, 9, 9, 12, 30, 1, 1, 2]
    people = [Person(f"p{k:02d}", tuple(f"p{k:02d}/{i}.jpg" for i in range(n))) for k, n in enumerate(counts)]
    bench = make_benchmark(people, folds=2, pairs_per_fold=40, seed=0)
    for fold, same in zip(bench.folds, bench.same):
        shares = Counter(name for name, _, _ in same)
        top = max(shares.values())
        for person in fold:
            if shares[person.name] < top - 1:  # below the fold's level only when out of pairs
                assert shares[person.name] == person.same_pairs


def test_different_pairs_use_each_pair_of_people_at_most_once_when_there_are_enough():
    bench = make_benchmark(people_of(40), folds=2, pairs_per_fold=30, seed=0)
    for fold in bench.different:
        couples = Counter((a, b) for a, _, b, _ in fold)
        assert len(fold) == 30 and max(couples.values()) == 1
        appearances = Counter(name for a, _, b, _ in fold for name in (a, b))
        assert max(appearances.values()) <= 3 * 60 / 20  # 60 slots over 20 people, none of them hogging


def test_different_pairs_spread_over_all_pairs_of_people_when_there_are_few():
    bench = make_benchmark(people_of(6, images=5), folds=2, pairs_per_fold=7, seed=0)
    for fold in bench.different:
        couples = Counter((a, b) for a, _, b, _ in fold)
        assert len(couples) == 3 and sorted(couples.values()) == [2, 2, 3]


def test_the_protocol_reads_back_and_names_the_real_files(tmp_path):
    folder = tmp_path / "my faces"
    names = {"Zoë": ["IMG 1.jpg", "b.PNG", "c.jpeg"], 'O"Neil': ["x.bmp", "sub/y.pgm"], "Ann": ["1.ppm", "2.jpg"],
             "Bo": ["a.jpg", "b.jpg"], "Cy": ["q.png"]}
    for person, files in names.items():
        for name in files:
            (folder / person / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / person / name).touch()
    (folder / "Ann" / "notes.txt").touch()
    (folder / "Ann" / ".hidden.jpg").touch()
    (folder / "Ann" / "back\\slash.jpg").touch()
    (folder / "stray.jpg").touch()
    result = make(folder, "--pairs-per-fold", 1, "--folds", 2)
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert "skipped 2 images whose paths hold spaces, backslashes or non-printing characters" in stderr
    assert "Ann/back\\slash.jpg, Zoë/IMG 1.jpg" in stderr
    assert "left out 1 images outside any person's sub-folder: stray.jpg" in stderr
    definition = ProtocolDefinition.from_toml(folder / "protocol.toml")
    assert definition.images["Zoë"] == ("Zoë/b.PNG", "Zoë/c.jpeg")
    assert definition.images['O"Neil'] == ('O"Neil/sub/y.pgm', 'O"Neil/x.bmp')
    pair_set = definition.load(folder)
    assert pair_set.root == folder and pair_set.landmarks is None
    assert all((folder / rel).is_file() for rel in pair_set.images)
    for (a, b), same, first, second in zip(pair_set.names, pair_set.same, pair_set.first, pair_set.second):
        assert pair_set.images[first].split("/")[0] == a and pair_set.images[second].split("/")[0] == b
        assert (a == b) == same


def test_the_summary_reports_persons_images_folds_and_pairs(folder):
    result = make(folder)
    assert result.exit_code == 0, result.output
    summary = f"{folder}: 24 persons, 84 images → 3 folds × (8 same + 8 different) pairs"
    assert result.stdout.splitlines()[0].startswith(summary)
    assert f"--data {folder} --protocol {folder / 'protocol.toml'} --df 1-13" in result.stdout


def test_a_pairs_file_outside_the_folder_gets_a_pairs_option_in_the_next_command(folder, tmp_path):
    result = make(folder, out=tmp_path / "elsewhere" / "mine.txt")
    assert result.exit_code == 0, result.output
    assert f"--pairs {tmp_path / 'elsewhere' / 'mine.txt'}" in result.stdout
    assert 'pairs_file = "mine.txt"' in (tmp_path / "elsewhere" / "protocol.toml").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--folds", 0), "--folds 0: must be at least 2 (each fold's threshold is chosen on the others)"),
        (("--folds", 1), "--folds 1: must be at least 2 (each fold's threshold is chosen on the others)"),
        (("--pairs-per-fold", 0), "--pairs-per-fold 0: must be at least 1"),
        (("--seed", -1), "--seed -1: must be 0 or more"),
        (("--folds", 13), "--folds 13: {folder} has 24 identities, 20 of them with 2 or more images; each fold needs "
                          "2 identities, one with 2 or more images: use --folds 12 or fewer"),
    ],
)
def test_options_the_folder_cannot_supply_are_refused_with_the_numbers(folder, extra, message):
    result = make(folder, *extra)
    assert result.exit_code == 2
    assert one_error_line(result) == "Error: " + message.format(folder=folder)
    assert not (folder / "pairs.txt").exists()


def test_more_same_pairs_than_every_fold_has_are_refused_with_the_most_all_folds_allow(folder):
    result = make(folder, "--pairs-per-fold", 60)
    assert result.exit_code == 2
    line = one_error_line(result)
    most = re.fullmatch(r"Error: --pairs-per-fold 60: the most all 3 folds allow is (\d+) \(fold \d has 8 identities, "
                        r"[67] with 2 or more images, \d+ images: only \1 distinct same-person pairs\); use "
                        r"--pairs-per-fold \1 or fewer, or leave the option out to take the most, or --folds 2 "
                        r"\(which allows (\d+)\)", line)
    assert most, line
    assert not (folder / "pairs.txt").exists()
    assert make(folder, "--pairs-per-fold", most[1]).exit_code == 0  # the advice works at the first try
    assert make(folder, "--folds", 2, "--pairs-per-fold", most[2], "--overwrite").exit_code == 0


def test_more_different_pairs_than_a_fold_has_are_refused():
    # Per fold one person with 10 images and two with one: 45 same pairs but only 10 + 10 + 1 different ones.
    people = [*people_of(2, images=10), *[Person(n, (f"{n}/1.jpg",)) for n in "abcd"]]
    with pytest.raises(UsageError, match=r"^--pairs-per-fold 22: the most all 2 folds allow is 21 \(fold \d has 3 "
                       r"identities, 1 with 2 or more images, 12 images: only 21 distinct different-person pairs\); "
                       r"use --pairs-per-fold 21 or fewer, or leave the option out to take the most$"):
        make_benchmark(people, folds=2, pairs_per_fold=22, seed=0)


def test_without_pairs_per_fold_a_small_folder_gets_the_most_every_fold_allows_and_is_told(tmp_path):
    # 40 people of 1 to 11 images: ten folds cannot hold LFW's 300 pairs each.
    counts = {f"person{k:02d}": 1 + (7 * k) % 11 for k in range(40)}
    folder = identity_folder(tmp_path / "forty", counts)
    result = invoke("pairs", "make", folder, "--out", folder / "pairs.txt")
    assert result.exit_code == 0, result.output
    told = re.match(r"--pairs-per-fold: (\d+) pairs per fold, fewer than the default 300: the most all 10 folds allow "
                    r"\(fold \d+ has \d+ identities", result.stdout)
    assert told, result.stdout
    records = parse_lfw_pairs(folder / "pairs.txt")
    assert len(records) == 10 * 2 * int(told[1])
    refused = invoke("pairs", "make", folder, "--out", folder / "pairs.txt", "--overwrite", "--pairs-per-fold",
                     int(told[1]) + 1)
    assert f"the most all 10 folds allow is {told[1]}" in one_error_line(refused)


def test_a_folder_that_allows_300_pairs_per_fold_gets_them_without_a_word():
    bench = make_benchmark(people_of(40, images=30), folds=10, pairs_per_fold=None, seed=0)
    assert bench.pairs_per_fold == 300 and bench.capped == ""


def test_a_folder_too_small_for_two_folds_is_refused_naming_it():
    people = [Person("a", ("a/1.jpg", "a/2.jpg")), Person("x", ("x/1.jpg",)), Person("y", ("y/1.jpg",))]
    with pytest.raises(DataError, match=r"^faces: 3 identities, 1 of them with 2 or more images; 2 folds need at "
                       "least 4 identities, 2 of them with 2 or more images$"):
        make_benchmark(people, folds=2, pairs_per_fold=1, seed=0, where="faces")


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    result = make(tmp_path / "empty", out=tmp_path / "pairs.txt")
    assert result.exit_code == 1
    assert one_error_line(result) == (f"Error: {tmp_path / 'empty'}: empty folder; expected one sub-folder of "
                                      "images per person, e.g. Ann/1.jpg")


def test_a_folder_without_identity_sub_folders_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    for k in range(3):
        (tmp_path / "flat" / f"{k}.jpg").touch()
    result = make(tmp_path / "flat", out=tmp_path / "pairs.txt")
    assert result.exit_code == 1
    assert one_error_line(result) == (f"Error: {tmp_path / 'flat'}: no sub-folder holds images (3 images lie directly "
                                      "in it); expected one sub-folder of images per person, e.g. Ann/1.jpg, or the "
                                      "person in the file names with --identity REGEX")


def test_a_missing_folder_is_refused(tmp_path):
    result = make(tmp_path / "nope", out=tmp_path / "pairs.txt")
    assert result.exit_code == 2
    assert one_error_line(result) == f"Error: IDENTITY_FOLDER {tmp_path / 'nope'}: not a folder"


def test_existing_outputs_are_kept_without_overwrite(folder):
    (folder / "people.txt").write_text("mine\n")
    result = make(folder)
    assert result.exit_code == 2
    assert one_error_line(result) == (f"Error: --people-out {folder / 'people.txt'}: already exists; choose another "
                                      "file or pass --overwrite")
    assert (folder / "people.txt").read_text() == "mine\n" and not (folder / "pairs.txt").exists()
    assert make(folder, "--overwrite").exit_code == 0
    assert read_people(folder / "people.txt")


def test_two_outputs_on_one_file_are_refused(folder):
    result = make(folder, "--people-out", folder / "pairs.txt")
    assert result.exit_code == 2
    assert one_error_line(result) == (f"Error: --people-out {folder / 'pairs.txt'}: the same file as --out; "
                                      "choose another")


def test_scan_keeps_sorted_people_and_sorted_images(tmp_path):
    folder = identity_folder(tmp_path / "f", {"b": 2, "a": 3})
    assert scan_identities(folder) == [Person("a", ("a/img00.jpg", "a/img01.jpg", "a/img02.jpg")),
                                       Person("b", ("b/img00.jpg", "b/img01.jpg"))]


# The protocol definition's images table (lrbench/data/pairs.py), which pairs make relies on.


def write_protocol(path: Path, body: str) -> Path:
    path.write_text('name = "mine"\ndescription = ""\n' + body)
    return path


def test_an_images_table_and_a_path_pattern_together_are_refused(tmp_path):
    toml = write_protocol(tmp_path / "p.toml", 'path_pattern = "{name}/{number}.jpg"\n[images]\nA = ["A/x.jpg"]\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(toml))}: give path_pattern or an images table, not both$"):
        ProtocolDefinition.from_toml(toml)


def test_an_images_table_of_the_wrong_shape_is_refused(tmp_path):
    toml = write_protocol(tmp_path / "p.toml", "[images]\nA = []\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(toml))}: images must be a table of person name = non-empty "
                       "list of image paths"):
        ProtocolDefinition.from_toml(toml)


def test_an_image_number_past_the_table_names_the_pairs_line(tmp_path):
    identity_folder(tmp_path, {"A": 2, "B": 1})
    toml = write_protocol(tmp_path / "p.toml", '[images]\nA = ["A/img00.jpg", "A/img01.jpg"]\nB = ["B/img00.jpg"]\n')
    (tmp_path / "pairs.txt").write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\nA\t1\t2\nA\t1\tB\t2\n")
    with pytest.raises(DataError, match=r"pairs.txt:5: no image B 2: the protocol's images table lists 1 images of B$"):
        ProtocolDefinition.from_toml(toml).load(tmp_path)
    (tmp_path / "pairs.txt").write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\nA\t1\t2\nA\t1\tC\t1\n")
    with pytest.raises(DataError, match=r"pairs.txt:5: no image C 1: the protocol's images table has no person C$"):
        ProtocolDefinition.from_toml(toml).load(tmp_path)


def test_an_images_table_path_cannot_leave_the_data_root(tmp_path):
    identity_folder(tmp_path / "data", {"A": 2})
    toml = write_protocol(tmp_path / "p.toml", '[images]\nA = ["A/img00.jpg", "../secret.jpg"]\n')
    (tmp_path / "data" / "pairs.txt").write_text("2\t1\nA\t1\t2\nA\t1\tA\t2\nA\t1\t2\nA\t1\tA\t2\n")
    with pytest.raises(DataError, match=r"pairs.txt:2: name 'A' would reach outside the data root: \.\./secret.jpg$"):
        ProtocolDefinition.from_toml(toml).load(tmp_path / "data")


def test_every_pair_of_a_small_fold_is_possible():
    """With exactly as many same pairs as wanted, every one of them is drawn (the ranks cover all pairs)."""
    people = [Person(n, tuple(f"{n}/{i}.jpg" for i in range(4))) for n in "abcd"]
    bench = make_benchmark(people, folds=2, pairs_per_fold=12, seed=0)
    for fold, same in zip(bench.folds, bench.same):
        assert set(same) == {(p.name, i, j) for p in fold for i, j in combinations(range(1, 5), 2)}


def test_only_images_with_landmarks_are_paired_when_the_folder_has_a_landmark_file(folder):
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    kept = images[::2]
    points = "\t".join(["30"] * 10)
    (folder / "landmarks.txt").write_text('# lrbench landmarks {"detector": "x"}\n'
                                          + "".join(f"{rel}\t{points}\n" for rel in kept))
    result = make(folder, "--pairs-per-fold", 2)
    assert result.exit_code == 0, result.output
    assert f"no landmarks for {len(images) - len(kept)} of {len(images)} images of {folder}" in result.stderr
    definition = ProtocolDefinition.from_toml(folder / "protocol.toml")
    assert sorted(rel for paths in definition.images.values() for rel in paths) == kept
    assert definition.landmarks_file == "landmarks.txt"
    assert set(definition.load(folder).images) <= set(kept)


def test_a_landmark_file_elsewhere_is_named_relative_to_the_pairs_file(folder, tmp_path):
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    points = "\t".join(["30"] * 10)
    (tmp_path / "marks.txt").write_text("".join(f"{rel}\t{points}\n" for rel in images))
    result = make(folder, "--landmarks", tmp_path / "marks.txt")
    assert result.exit_code == 0, result.output
    definition = ProtocolDefinition.from_toml(folder / "protocol.toml")
    assert definition.landmarks_file == "../marks.txt"
    assert definition.load(folder).landmarks.resolve() == (tmp_path / "marks.txt").resolve()


def test_a_landmark_file_for_other_images_is_refused(folder, tmp_path):
    (tmp_path / "other.txt").write_text("x/1.jpg" + "\t1" * 10 + "\n")
    result = make(folder, "--landmarks", tmp_path / "other.txt")
    assert result.exit_code == 1
    message = f"Error: {tmp_path / 'other.txt'}: no landmarks for any of the 84 images of {folder}"
    assert one_error_line(result) == message


def test_a_missing_landmark_file_is_refused(folder):
    result = make(folder, "--landmarks", folder / "nope.txt")
    assert result.exit_code == 2
    assert one_error_line(result) == f"Error: --landmarks {folder / 'nope.txt'}: no such file"


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(1, 7), min_size=1, max_size=24),
    folds=st.integers(2, 4),
    per_fold=st.integers(1, 12),
    seed=st.integers(0, 2**32),
)
def test_any_folder_gets_a_valid_benchmark_or_a_refusal_whose_suggestion_works(counts, folds, per_fold, seed):
    people = [Person(f"p{k:02d}", tuple(f"p{k:02d}/{i}.jpg" for i in range(n))) for k, n in enumerate(counts)]
    for _ in range(2):  # following the suggestions (fewer folds, then fewer pairs) must end in a benchmark
        try:
            bench = make_benchmark(people, folds, per_fold, seed)
            break
        except UsageError as exc:
            suggested = re.search(r"use --(folds|pairs-per-fold) (\d+) or fewer", str(exc))
            assert suggested, str(exc)
            if suggested[1] == "folds":
                folds = int(suggested[2])
            else:
                per_fold = int(suggested[2])
        except DataError:
            assert sum(n >= 2 for n in counts) < 2 or len(counts) < 4
            return
    else:
        bench = make_benchmark(people, folds, per_fold, seed)
    fold_of = {p.name: k for k, fold in enumerate(bench.folds) for p in fold}
    assert sorted(fold_of) == [p.name for p in people]
    count = {p.name: len(p.images) for p in people}
    for k, (same, different) in enumerate(zip(bench.same, bench.different)):
        assert len(same) == len(set(same)) == per_fold and len(different) == len(set(different)) == per_fold
        for name, i, j in same:
            assert fold_of[name] == k and 1 <= i < j <= count[name]
        for a, i, b, j in different:
            assert fold_of[a] == fold_of[b] == k and a < b and i <= count[a] and j <= count[b]


def test_running_made_pairs_without_their_protocol_says_which_protocol_to_pass(folder):
    assert make(folder).exit_code == 0
    result = invoke("run", "--backbone", "lbp", "--data", folder, "--df", 1, "--out", folder.parent / "run")
    assert result.exit_code == 1
    hint = f"(pairs from lrbench pairs make? pass --protocol {folder / 'protocol.toml'})"
    assert one_error_line(result).startswith("Error: cannot find the images of lfw-view2: ")
    assert one_error_line(result).endswith(hint)


# -- the person from the file name: --identity ------------------------------------------------------------------


@pytest.fixture
def flat(tmp_path):
    """One folder, no sub-folders: 12 people with 3 images each, named as the Yale faces are, plus strays."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for k in range(12):
        for mood in ("happy", "sad", "wink"):
            (folder / f"subject{k:02d}.{mood}.jpg").touch()
    (folder / "readme.jpg").touch()
    return folder


def test_identity_takes_each_person_from_the_file_name_and_the_protocol_records_the_rule(flat):
    rule = r"^(subject\d+)\."
    result = invoke("pairs", "make", flat, "--out", flat / "pairs.txt", "--identity", rule, "--folds", 2,
                    "--pairs-per-fold", 6)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{flat}: 12 persons (named by --identity {rule!r}), 36 images")
    assert "left out 1 images whose file names --identity" in result.stderr and "readme.jpg" in result.stderr
    definition = ProtocolDefinition.from_toml(flat / "protocol.toml")
    assert f"the person from the file name by {rule!r}" in definition.description
    assert definition.images["subject03"] == ("subject03.happy.jpg", "subject03.sad.jpg", "subject03.wink.jpg")
    pair_set = definition.load(flat)
    for (a, b), first, second in zip(pair_set.names, pair_set.first, pair_set.second):
        assert pair_set.images[first].startswith(a + ".") and pair_set.images[second].startswith(b + ".")


def test_identity_reads_file_names_whatever_folders_they_lie_in(tmp_path):
    folder = tmp_path / "nested"
    for k in range(8):
        for session in ("day1", "day2"):
            (folder / session).mkdir(parents=True, exist_ok=True)
            (folder / session / f"id{k}_{session}.png").touch()
    people = scan_identities(folder, identity=r"^(id\d+)_")
    assert [p.name for p in people] == [f"id{k}" for k in range(8)]
    assert people[0].images == ("day1/id0_day1.png", "day2/id0_day2.png")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("subject(", "--identity 'subject(': not a regular expression"),
        (r"^subject\d+", r"needs exactly one group, the person in the file name, e.g. '^(subject\d+)\.'"),
        (r"^(subject)(\d+)", "needs exactly one group"),
    ],
)
def test_an_identity_rule_without_exactly_one_group_is_refused(flat, rule, message):
    result = invoke("pairs", "make", flat, "--out", flat / "pairs.txt", "--identity", rule)
    assert result.exit_code == 2 and message in one_error_line(result)
    assert not (flat / "pairs.txt").exists()


def test_an_identity_rule_that_names_nobody_is_refused(flat):
    with pytest.raises(DataError, match=r"--identity '\^\(face\\\\d\+\)' finds a person in none of the 37 image file"):
        scan_identities(flat, identity=r"^(face\d+)")
