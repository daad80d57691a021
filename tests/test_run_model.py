"""One run-directory model for both protocol kinds: every guarantee of a run directory (repair after a kill,
refusal of damaged files, overlay data checks, HTML facts as tables, what --overwrite may replace, a portable
manifest) holds for a verification run and an identification run alike, through the same code."""

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import invoke, one_line_error
from test_identification import layout_toml, write_layout
from test_outputs import dead_pid, replace_field, snapshot

KINDS = ("verification", "identification")


@pytest.fixture(scope="module")
def sets(synth_data, tmp_path_factory):
    """Per kind: the data and protocol options of a tiny run (LBP, synthetic faces)."""
    base = tmp_path_factory.mktemp("sets")
    root = write_layout(synth_data, base / "set")
    toml = layout_toml(base)
    return {"verification": ["--data", synth_data.lfw_root],
            "identification": ["--data", root, "--protocol", toml]}


def run_args(sets, kind, out, *extra):
    return ["run", "-b", "lbp", *sets[kind], "--df", "1,4", "--out", out, "--workers", 1, "--no-cache", "-q", *extra]


@pytest.fixture(scope="module")
def made(sets, tmp_path_factory):
    """One run directory of each kind, made once; tests work on copies."""
    runs = {}
    for kind in KINDS:
        out = tmp_path_factory.mktemp(kind) / "run"
        result = invoke(*run_args(sets, kind, out))
        assert result.exit_code == 0, result.output
        runs[kind] = out
    return runs


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def a_run(made, kind, tmp_path):
    return Path(shutil.copytree(made[kind], tmp_path / "a"))


@pytest.fixture
def no_evaluation(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("the evaluation started")

    monkeypatch.setattr("lrbench.eval.engine.evaluate", started)
    monkeypatch.setattr("lrbench.eval.engine.prepare", started)


def test_a_run_holds_exactly_its_kinds_files_with_the_vector_copies_users_get(sets, kind, tmp_path, vector_figures):
    from lrbench.report.rundir import LAYOUTS

    result = invoke(*run_args(sets, kind, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(LAYOUTS[kind].run_files)


def test_a_replacement_killed_between_its_renames_is_repaired_by_the_next_run(a_run, sets, kind, no_evaluation):
    """The kill left the previous run whole in .a.old-PID and no `a`: the next run puts it back, and then
    refuses to replace it without --overwrite, before any evaluation."""
    before = snapshot(a_run)
    os.replace(a_run, a_run.with_name(f".a.old-{dead_pid()}"))
    result = invoke(*run_args(sets, kind, a_run))
    assert result.exit_code == 2, result.output
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith(f"warning: {a_run}: restored the previous run from .a.old-")
    assert error.startswith(f"Error: --out {a_run}: already exists") and "--overwrite" in error
    assert snapshot(a_run) == before
    assert sorted(p.name for p in a_run.parent.iterdir()) == ["a"]


DAMAGES = {
    "verification": [
        (lambda run: replace_field(run / "results.csv", 2, "accuracy_mean", "0.99"),
         ["results.csv: DF 1 accuracy_mean is 0.99, but", "scores.csv gives"]),
        (lambda run: replace_field(run / "scores.csv", 3, "score", "high"),
         ["scores.csv:3: column 'score' is not a number: 'high'"]),
    ],
    "identification": [
        (lambda run: replace_field(run / "results.csv", 2, "rank1", "0.99"),
         ["results.csv: DF 1 group all rank1 is 0.99, but", "ranks.csv gives"]),
        (lambda run: replace_field(run / "ranks.csv", 3, "rank", "first"),
         ["ranks.csv:3: column 'rank' is not an integer: 'first'"]),
        (lambda run: replace_field(run / "cmc.csv", 2, "accuracy", "0.5"),
         ["cmc.csv: DF 1 k 1 accuracy is 0.5, but", "ranks.csv gives"]),
        (lambda run: (run / "cmc.csv").unlink(), ["cmc.csv: missing"]),
    ],
}


@pytest.mark.parametrize("damage", range(4))
def test_a_damaged_or_edited_file_is_refused_naming_it_and_nothing_is_written(a_run, made, kind, damage, tmp_path):
    if damage >= len(DAMAGES[kind]):
        pytest.skip(f"{kind} has {len(DAMAGES[kind])} damages here")
    spoil, fragments = DAMAGES[kind][damage]
    spoil(a_run)
    before = snapshot(a_run)
    line = one_line_error(invoke("report", a_run), 1, *fragments)
    assert line.startswith(f"Error: {a_run}/")
    one_line_error(invoke("report", made[kind], a_run, "--out", tmp_path / "overlay"), 1, *fragments)
    assert snapshot(a_run) == before
    assert not (tmp_path / "overlay").exists()


# the file that defines what was compared: a verification run's pairs, an identification run's layout (.toml)
DATA_HASH = {"verification": ("data", "pairs_sha256"), "identification": ("components", "protocol", "sha256")}


def test_an_overlay_of_runs_on_other_data_is_refused_unless_allowed(a_run, made, kind, tmp_path):
    manifest = json.loads((a_run / "manifest.json").read_text())
    *where, key = DATA_HASH[kind]
    facts = manifest[where[0]] if len(where) == 1 else manifest[where[0]][where[1]]
    assert len(facts[key]) == 64
    facts[key] = "0" * 64
    (a_run / "manifest.json").write_text(json.dumps(manifest))
    refused = invoke("report", made[kind], a_run, "--out", tmp_path / "overlay")
    one_line_error(refused, 2, f"{a_run}: evaluated on other data than {made[kind]}", "--allow-different-data")
    assert not (tmp_path / "overlay").exists()
    allowed = invoke("report", made[kind], a_run, "--out", tmp_path / "overlay", "--allow-different-data")
    assert allowed.exit_code == 0, allowed.output
    assert "runs on DIFFERENT data" in (tmp_path / "overlay" / "report.html").read_text()


def test_the_report_shows_input_and_weights_as_tables_not_json(a_run, kind):
    (a_run / "report.html").unlink()
    assert invoke("report", a_run).exit_code == 0
    page = (a_run / "report.html").read_text()
    assert "{&quot;" not in page and '{"' not in page  # no raw JSON object anywhere
    for fact in ("input", "weights", "data"):
        assert f"<th>{fact}</th><td class='text'><table>" in page
    assert "<th>template</th>" in page and "<th>sha256</th>" in page


@pytest.mark.parametrize("intruder", ["notes.txt", "extra/"])
def test_overwrite_replaces_only_a_run_directory_of_lrbench_own_files(a_run, sets, kind, no_evaluation, intruder):
    if intruder.endswith("/"):
        (a_run / intruder).mkdir()
    else:
        (a_run / intruder).write_text("precious")
    result = invoke(*run_args(sets, kind, a_run, "--overwrite"))
    one_line_error(result, 2, f"--out {a_run}: already exists and is not an lrbench run directory",
                   f"it holds {intruder}, which lrbench did not write")
    assert (a_run / intruder).exists()


def test_overwrite_refuses_an_incomplete_run_directory(a_run, sets, kind, no_evaluation):
    table = {"verification": "scores.csv", "identification": "ranks.csv"}[kind]
    (a_run / table).unlink()
    result = invoke(*run_args(sets, kind, a_run, "--overwrite"))
    one_line_error(result, 2, f"--out {a_run}: already exists and is not an lrbench run directory", f"no {table}")


def test_overwrite_replaces_a_whole_run_of_either_kind(a_run, sets, kind):
    result = invoke(*run_args(sets, kind, a_run, "--overwrite", "--label", "again"))
    assert result.exit_code == 0, result.output
    assert json.loads((a_run / "manifest.json").read_text())["label"] == "again"
    assert sorted(p.name for p in a_run.parent.iterdir()) == ["a"]


def strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def test_a_manifest_names_no_path_of_the_machine_it_was_made_on(made, kind):
    text = (made[kind] / "manifest.json").read_text()
    manifest = json.loads(text)
    absolute = [value for value in strings(manifest) if value.startswith("/")]
    assert absolute == []
    assert str(Path.home()) not in text and str(made[kind].parent) not in text
    assert " --data . " in manifest["command"]
    data = manifest["data"]
    assert data["root"] and data["images_sha256"] and data["landmarks_sha256"]
    assert manifest["settings"]["data"] == "."
    assert manifest["kind"] == kind and manifest["versions"]["lrbench"]


def test_a_manifest_with_absolute_paths_written_before_still_reads(a_run, kind):
    manifest = json.loads((a_run / "manifest.json").read_text())
    manifest["settings"]["data"] = manifest["data"]["image_root"] = "/home/someone/data/lfw"
    (a_run / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("report", a_run)
    assert result.exit_code == 0, result.output


def test_command_lines_at_any_depth_are_made_portable_word_by_word():
    from lrbench.report.rundir import portable_manifest

    fold = {"fold": 1, "command": "lrbench run --data /home/someone/lfw/images --weights /home/someone/w.pt",
            "training": {"command": "lrbench train distill --data=/home/someone/lfw/images/train"}}
    manifest = portable_manifest({"settings": {"data": "/home/someone/lfw/images"}, "data": {},
                                  "command": "lrbench run --data /home/someone/lfw/images",
                                  "cross_validation": {"folds": [fold]}})
    assert manifest["command"] == "lrbench run --data ."
    record = manifest["cross_validation"]["folds"][0]
    assert record["command"] == "lrbench run --data . --weights w.pt"
    assert record["training"]["command"] == "lrbench train distill --data=train"
