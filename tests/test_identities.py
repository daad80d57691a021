"""Who is in each pair comes from the protocol, is written into scores.csv, and drives every interval: the
same pairs in LFW's layout and in CALFW's flat native layout give the same intervals; folders and file
names that are not people do not merge or split them."""

import shutil

import numpy as np
import pytest

from lrbench.data.pairs import parse_lfw_pairs
from lrbench.errors import DataError
from lrbench.eval.engine import EvalSettings, evaluate
from lrbench.report.compare import compare_runs

COMMON = {"backbone": "lbp", "dfs": "1,6", "workers": 1, "show_progress": "off", "cache_dir": None, "aligned": True}
INTERVALS = [f"{metric}_ci_{end}" for metric in ("accuracy", "auc") for end in ("low", "high")]


def _protocol(path, **keys):
    lines = [f'name = "{path.stem}"', 'description = "a test layout"']
    for key, value in keys.items():
        lines.append(f"{key} = {str(value).lower()}" if isinstance(value, bool) else f"{key} = {value!r}"
                     .replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def lfw_run(synth_data):
    return evaluate(EvalSettings(data=synth_data.lfw_images, pairs=synth_data.pairs, **COMMON))


@pytest.fixture(scope="module")
def calfw_layout(synth_data, tmp_path_factory):
    """synth's pairs in CALFW's native layout: one flat folder of PERSON_NNNN.jpg and a name-label pairs file
    (same-person pairs first, fold k the k-th tenth of each half)."""
    data = tmp_path_factory.mktemp("calfw")
    flat = data / "aligned images"
    flat.mkdir()
    records = parse_lfw_pairs(synth_data.pairs)
    lines = []
    for same in (True, False):
        for record in sorted((r for r in records if r.same == same), key=lambda r: r.fold):
            for name, number in zip(record.names, record.numbers):
                file_name = f"{name}_{number:04d}.jpg"
                shutil.copyfile(synth_data.lfw_images / name / file_name, flat / file_name)
                lines.append(f"{file_name} {1 if same else 0}")
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    protocol = _protocol(data / "flat.toml", pairs_format="name-label", path_pattern="{name}", aligned=True,
                         image_dirs=["aligned images"])
    return data, protocol


def test_the_same_pairs_in_lfw_and_calfw_layouts_give_equal_intervals(lfw_run, calfw_layout):
    data, protocol = calfw_layout
    calfw_run = evaluate(EvalSettings(data=data, protocol=protocol, **COMMON))
    for df in (1, 6):
        ours = lfw_run.results[lfw_run.results["df"] == df].iloc[0]
        theirs = calfw_run.results[calfw_run.results["df"] == df].iloc[0]
        assert ours["accuracy_mean"] == theirs["accuracy_mean"]
        for column in INTERVALS:
            assert theirs[column] == pytest.approx(ours[column], abs=1e-12), column
    people = calfw_run.scores[["person_a", "person_b"]].drop_duplicates()
    assert set(people["person_a"]) <= {f"Synth_Person_{i:04d}" for i in range(1, 100)}


def test_scores_csv_names_each_pairs_two_people(lfw_run, synth_data):
    records = {record.line: record for record in parse_lfw_pairs(synth_data.pairs)}
    first = lfw_run.scores[lfw_run.scores["df"] == 1].sort_values("pair")
    assert list(first["person_a"]) == [record.names[0] for record in records.values()]
    assert list(first["person_b"]) == [record.names[1] for record in records.values()]


def test_a_file_name_pattern_does_not_collapse_the_interval(synth_data, tmp_path, lfw_run):
    # faces/{name}_{number}.jpg: every image in one folder; the folder rule saw one person and no spread
    faces = tmp_path / "faces"
    faces.mkdir()
    for person in synth_data.lfw_images.iterdir():
        for image in person.iterdir():
            shutil.copyfile(image, faces / image.name)
    protocol = _protocol(tmp_path / "pattern.toml", path_pattern="{name}_{number:04d}.jpg", aligned=True)
    run = evaluate(EvalSettings(data=faces, pairs=synth_data.pairs, protocol=protocol, **COMMON))
    row = run.results[run.results["df"] == 6].iloc[0]
    assert row["accuracy_ci_low"] < row["accuracy_mean"] < row["accuracy_ci_high"]
    expected = lfw_run.results[lfw_run.results["df"] == 6].iloc[0]
    assert row["accuracy_ci_low"] == pytest.approx(expected["accuracy_ci_low"], abs=1e-12)


def test_nested_folders_of_two_people_stay_two_people(tmp_path):
    from lrbench.data.pairs import PairRecord, build_pair_set

    records = [PairRecord(1, 0, ("Alice", "Bob"), (1, 1), False), PairRecord(2, 0, ("Alice", "Alice"), (1, 2), True)]
    table = {"Alice": ("Alice/indoor/1.jpg", "Alice/outdoor/1.jpg"), "Bob": ("Bob/indoor/1.jpg",)}
    pairs = build_pair_set(tmp_path, tmp_path / "pairs.txt", records, table)
    assert pairs.identities == ["Alice", "Bob", "Alice"]  # not "indoor", "indoor", "outdoor"


def test_a_name_label_file_name_the_identity_rule_does_not_match_is_refused(tmp_path):
    from lrbench.data.pairs import ProtocolDefinition

    (tmp_path / "pairs.txt").write_text("".join(f"img{i}.jpg {int(i < 20)}\n" for i in range(40)))
    (tmp_path / "img0.jpg").write_bytes(b"")  # found, so that the pairs are read
    definition = ProtocolDefinition("x", "x", pairs_format="name-label", path_pattern="{name}")
    with pytest.raises(DataError, match=r"pairs\.txt:1: cannot tell whose image 'img0\.jpg' is"):
        definition.load(tmp_path)


def test_a_bin_names_nobody_and_its_pairs_are_resampled(tmp_path):
    from lrbench.report.stats import IdentityBootstrap

    weights = np.concatenate(list(IdentityBootstrap([None] * 4, [None] * 4, resamples=200).weights()), axis=1)
    assert weights.sum(axis=0).tolist() == [4] * 200, "four units drawn four times: a pair bootstrap"


def test_compare_reads_people_from_scores_and_old_runs_by_folder(lfw_run, tmp_path):
    from lrbench.report.results import load_run, pair_people, write_run

    write_run(lfw_run, tmp_path / "new")
    old = load_run(tmp_path / "new")
    old.scores = old.scores.drop(columns=["person_a", "person_b"])  # a run written before the columns
    assert pair_people(old.scores)[0] == [image.split("/")[0] for image in old.scores["image_a"]]
    payload = compare_runs([load_run(tmp_path / "new"), load_run(tmp_path / "new")])
    assert payload["comparisons"][0]["only_base_right"] == 0
