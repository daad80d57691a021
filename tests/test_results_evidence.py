"""The evidence behind README.md's results table: the run directories committed under benchmarks/results/, and
benchmarks/results_table.py, which regenerates the table from their scores and refuses files that disagree."""

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import benchmark_script, invoke

from lrbench.errors import DataError
from lrbench.report.results import load_run

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RUN_FILES = {"manifest.json", "results.csv", "folds.csv", "roc.csv", "scores.csv"}  # load_run needs all five
MAX_BYTES = 8 * 1024 * 1024  # LFW's 6000 pairs at 10 DFs with person columns: about 7.7 MB of scores.csv
NEVER_COMMITTED = (".pt", ".pth", ".dat", ".onnx", ".npz", ".png", ".jpg", ".jpeg", ".pdf", ".svg", ".html")


results_table = benchmark_script("results_table")
COMMITTED = [results_table.read_spec(path) for path in sorted(RESULTS.glob("*.toml"))]  # one per README block
COMMITTED_DIRS = sorted(path for path in RESULTS.iterdir() if path.is_dir())


# --- (a) the committed run directories ---------------------------------------------------------------------


def test_the_results_folder_holds_only_small_run_files():
    for path in RESULTS.rglob("*"):
        if path.is_dir():
            assert path.parent == RESULTS, f"{path}: run directories hold no folders"
            continue
        assert path.suffix.lower() not in NEVER_COMMITTED, f"{path}: weights, images and figures are never committed"
        assert path.stat().st_size < MAX_BYTES, f"{path}: {path.stat().st_size} bytes"
        if path.parent == RESULTS:
            assert path.name == "README.md" or path.suffix == ".toml", f"{path}: not README.md or a table's .toml"
        else:
            assert path.name in RUN_FILES, f"{path}: not one of {sorted(RUN_FILES)}"


def test_every_row_of_every_table_names_a_committed_run_directory():
    assert {row.dir for spec in COMMITTED for row in spec.rows} <= {path.name for path in COMMITTED_DIRS}


@pytest.mark.parametrize("folder", COMMITTED_DIRS, ids=lambda path: path.name)
def test_a_committed_run_holds_the_five_files_and_its_numbers_are_its_scores(folder):
    assert {path.name for path in folder.iterdir()} == RUN_FILES
    run = load_run(folder)  # recomputes every number from scores.csv and raises, naming the file, on a difference
    for row in run.results.to_dict("records"):
        assert row["accuracy_mean"] == run.recomputed[row["df"]].accuracy_mean


@pytest.mark.parametrize("folder", COMMITTED_DIRS, ids=lambda path: path.name)
def test_lrbench_report_renders_a_committed_run_elsewhere(folder, tmp_path):
    result = invoke("report", folder, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    for name in ("report.html", "roc.png", "accuracy_vs_resolution.png"):
        assert (tmp_path / "report" / name).is_file()
    assert {path.name for path in folder.iterdir()} == RUN_FILES  # nothing written beside the evidence


# --- (b) README.md's table is generated, not typed -----------------------------------------------------------


def test_readme_results_table_is_what_the_committed_runs_generate(capsys):
    if not any(spec.rows for spec in COMMITTED):
        pytest.skip("no table in benchmarks/results/ lists a run directory yet")
    assert results_table.main(["--check"]) == 0, capsys.readouterr().err
    readme = REPO / "README.md"
    named = {table for table, _, _ in results_table.blocks(readme.read_text(), readme, RESULTS / "table.toml")}
    assert named == set(RESULTS.glob("*.toml")), "every table in benchmarks/results/ has its README block"


# --- (c) the generator on two small synthetic runs -----------------------------------------------------------


@pytest.fixture(scope="module")
def evidence(synth_data, tmp_path_factory):
    """A results folder as committed: lbp with both images degraded (the baseline) and with only the probe
    degraded, at DFs 1 and 4 on fold 1; the five small files of each run, a table.toml and a README. Beside it,
    runs/all-folds: lbp at DF 1 on all ten folds."""
    root = tmp_path_factory.mktemp("evidence")
    common = ["-b", "lbp", "--data", synth_data.lfw_root, "--df", "1,4", "--report-folds", 1, "--workers", 1,
              "--no-cache", "--quiet"]
    for name, mode in (("teacher", "both"), ("student", "probe")):
        result = invoke("run", *common, "--mode", mode, "--label", f"lbp {mode}", "--out", root / "runs" / name)
        assert result.exit_code == 0, result.output
        (root / "results" / name).mkdir(parents=True)
        for file in RUN_FILES:
            shutil.copy(root / "runs" / name / file, root / "results" / name / file)
    result = invoke("run", *common[:4], "--df", 1, "--workers", 1, "--no-cache", "--quiet", "--out",
                    root / "runs" / "all-folds")
    assert result.exit_code == 0, result.output
    (root / "results" / "table.toml").write_text(
        'title = "synthetic"\ndfs = [1, 4]\nshow = ["accuracy", "eer"]\n\n'
        '[[rows]]\ndir = "teacher"\nlabel = "baseline"\n\n[[rows]]\ndir = "student"\n'
    )
    (root / "README.md").write_text("# Title\n\nbefore\n<!-- results-table:start (generated) -->\n| typed |\n"
                                    "<!-- results-table:end -->\nafter\n")
    return root


@pytest.fixture
def copied(evidence, tmp_path):
    """A private copy of the evidence folder, for tests that change it."""
    shutil.copytree(evidence, tmp_path / "copy")
    return tmp_path / "copy"


def _generate(root: Path) -> list[str]:
    return results_table.generate(results_table.read_spec(root / "results" / "table.toml"), root).splitlines()


def _row(lines: list[str], start: str) -> str:
    (row,) = [line for line in lines if line.startswith(start)]
    return row


def test_each_row_shows_the_accuracy_its_results_csv_reports_at_each_df(evidence):
    lines = _generate(evidence)
    assert lines[0] == "| synthetic fold 1 (8 pairs) | DF 1 (96×112) | DF 4 (24×28) |"
    for name, label in (("teacher", "baseline"), ("student", "lbp probe")):  # the run's own label by default
        results = pd.read_csv(evidence / "results" / name / "results.csv")
        row = _row(lines, f"| [{label}](results/{name}/) |")
        assert re.findall(r"(\d+\.\d\d) %", row) == [f"{100 * accuracy:.2f}" for accuracy in results["accuracy_mean"]]
        assert re.findall(r"EER (\d+\.\d) %", row) == [f"{100 * eer:.1f}" for eer in results["eer"]]


def test_the_best_accuracy_of_each_column_is_bold(evidence):
    lines = _generate(evidence)
    teacher, student = _row(lines, "| [baseline]"), _row(lines, "| [lbp probe]")
    accuracy = {name: pd.read_csv(evidence / "results" / name / "results.csv")["accuracy_mean"].round(4).tolist()
                for name in ("teacher", "student")}
    for k, (ours, theirs) in enumerate(zip(accuracy["teacher"], accuracy["student"])):
        assert (f"**{100 * ours:.2f} %**" in teacher.split(" | ")[k + 1]) == (ours >= theirs)
        assert (f"**{100 * theirs:.2f} %**" in student.split(" | ")[k + 1]) == (theirs >= ours)


def _discordant(evidence: Path, df: int) -> tuple[int, int]:
    """b / c by hand: fold-1 pairs only the teacher / only the student decides right with its fold's threshold."""
    right = []
    for name in ("teacher", "student"):
        scores = pd.read_csv(evidence / "results" / name / "scores.csv").query(f"df == {df} and fold == 1")
        folds = pd.read_csv(evidence / "results" / name / "folds.csv").query(f"df == {df}")
        right.append(((scores["score"] > folds["threshold"].item()) == scores["same"].astype(bool)).to_numpy())
    return int((right[0] & ~right[1]).sum()), int((~right[0] & right[1]).sum())


def test_the_comparison_counts_discordant_pairs_and_mcnemars_p_at_each_df(evidence):
    lines = _generate(evidence)
    for df, probe in ((1, "96×112"), (4, "24×28")):
        b, c = _discordant(evidence, df)
        p = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
        row = _row(lines, f"| {df} ({probe}) | lbp probe |")
        assert f" | {b} / {c} | {p:.3g} | " in row
    assert _discordant(evidence, 4) != (0, 0)  # the runs differ where the probe alone is degraded


def test_compare_dfs_limits_the_comparisons_shown_not_holms_adjustment(copied):
    table = copied / "results" / "table.toml"
    table.write_text(table.read_text().replace("dfs = [1, 4]\n", "dfs = [1, 4]\ncompare_dfs = [4]\n"))
    lines = _generate(copied)
    assert [line for line in lines if line.startswith("| 1 (")] == [] and _row(lines, "| 4 (24×28) | lbp probe |")
    assert "adjusted over all 2 tests" in " ".join(lines)


def test_ci_shows_each_accuracys_bootstrap_interval_recomputed_from_the_scores(copied, capsys):
    table = copied / "results" / "table.toml"
    table.write_text(table.read_text().replace('show = ["accuracy", "eer"]', 'show = ["accuracy", "ci"]'))
    lines = _generate(copied)
    for name, label in (("teacher", "baseline"), ("student", "lbp probe")):
        results = pd.read_csv(copied / "results" / name / "results.csv")
        shown = re.findall(r"(\d+\.\d\d) %(?:\*\*)? \[(\d+\.\d\d), (\d+\.\d\d)\]", _row(lines, f"| [{label}]"))
        assert shown == [tuple(f"{100 * value:.2f}" for value in row)
                         for row in results[["accuracy_mean", "accuracy_ci_low", "accuracy_ci_high"]].to_numpy()]
    assert "identity-bootstrap resamples" in " ".join(lines)

    path = copied / "results" / "student" / "results.csv"
    results = pd.read_csv(path)
    results.loc[results["df"] == 4, "accuracy_ci_low"] -= 0.01
    results.to_csv(path, index=False)
    assert _refused(copied, capsys).startswith(f"Error: {path}: DF 4: accuracy interval [")


def test_a_block_naming_its_table_is_generated_from_that_file(copied, capsys):
    other = copied / "results" / "other.toml"
    other.write_text('title = "other"\ndfs = [4]\n\n[[rows]]\ndir = "student"\n')
    readme = copied / "README.md"
    readme.write_text(readme.read_text() + "<!-- results-table:start other.toml (generated) -->\n"
                      "<!-- results-table:end -->\nend\n")
    args = ["--table", str(copied / "results" / "table.toml"), "--readme", str(readme)]
    assert results_table.main([*args, "--write"]) == 0
    first, second = readme.read_text().split("<!-- results-table:end -->")[:2]
    assert first.split("(generated) -->\n")[1].splitlines() == _generate(copied)
    assert second.split("(generated) -->\n")[1].splitlines() == results_table.generate(
        results_table.read_spec(other), copied).splitlines()
    readme.write_text(readme.read_text().replace("| [lbp probe]", "| [edited]", 2))  # the second block's row
    capsys.readouterr()
    assert results_table.main([*args, "--check"]) == 1
    assert capsys.readouterr().err.count(" generates from ") == 2


def test_write_replaces_only_the_block_and_check_then_passes(copied, capsys):
    args = ["--table", str(copied / "results" / "table.toml"), "--readme", str(copied / "README.md")]
    assert results_table.main([*args, "--check"]) == 1
    assert results_table.main([*args, "--write"]) == 0
    text = (copied / "README.md").read_text()
    head, rest = text.split("<!-- results-table:start (generated) -->\n")
    block, tail = rest.split("<!-- results-table:end -->")
    assert (head, tail) == ("# Title\n\nbefore\n", "\nafter\n")
    assert block.splitlines() == _generate(copied)
    capsys.readouterr()
    assert results_table.main([*args, "--check"]) == 0


def test_check_names_the_readme_whose_table_was_edited_by_hand(copied, capsys):
    args = ["--table", str(copied / "results" / "table.toml"), "--readme", str(copied / "README.md")]
    results_table.main([*args, "--write"])
    readme = copied / "README.md"
    readme.write_text(readme.read_text().replace("| [baseline]", "| [the teacher]"))
    capsys.readouterr()
    assert results_table.main([*args, "--check"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{readme}: its results table is not what benchmarks/results_table.py generates")


def _refused(root: Path, capsys) -> str:
    """The one-line error the script prints for this evidence folder (exit code 1)."""
    capsys.readouterr()
    assert results_table.main(["--table", str(root / "results" / "table.toml")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    return line


def test_a_results_csv_that_its_scores_do_not_give_is_refused(copied, capsys):
    path = copied / "results" / "student" / "results.csv"
    results = pd.read_csv(path)
    results.loc[results["df"] == 4, "accuracy_mean"] += 0.125
    results.to_csv(path, index=False)
    line = _refused(copied, capsys)
    assert line.startswith(f"Error: {path}: DF 4 accuracy_mean is ")
    assert f"but {path.parent / 'scores.csv'} gives" in line


def test_scores_changed_after_the_run_are_refused(copied, capsys):
    path = copied / "results" / "student" / "scores.csv"
    scores = pd.read_csv(path)
    scores.loc[(scores["df"] == 4) & (scores["fold"] == 1) & (scores["same"] == 1), "score"] = -5.0  # all "different"
    scores.to_csv(path, index=False)
    line = _refused(copied, capsys)
    assert line.startswith(f"Error: {path.parent / 'folds.csv'}: DF 4 fold 1 accuracy is ")
    assert f"but {path} gives" in line


def test_a_fold_threshold_that_its_scores_do_not_give_is_refused(copied, capsys):
    path = copied / "results" / "teacher" / "folds.csv"
    folds = pd.read_csv(path)
    folds.loc[folds["df"] == 1, "threshold"] += 0.01
    folds.to_csv(path, index=False)
    assert _refused(copied, capsys).startswith(f"Error: {path}: DF 1 fold 1 threshold is ")


def _merged(evidence: Path, folder: Path) -> Path:
    """The all-folds run dressed as the merge of ten per-fold runs (lrbench.report.crossval's manifest key)."""
    shutil.copytree(evidence / "runs" / "all-folds", folder, ignore=lambda _, names: set(names) - RUN_FILES)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["cross_validation"] = {"kind": "merged held-out folds", "folds": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_merged_cross_validated_run_keeps_its_folds_own_thresholds(evidence, tmp_path):
    folder = _merged(evidence, tmp_path / "merged")
    path = folder / "folds.csv"
    folds = pd.read_csv(path)
    folds.loc[folds["fold"] == 3, "threshold"] += 0.001  # as fold 3's own model might have chosen it
    folds.to_csv(path, index=False)
    load_run(folder)  # reads: the thresholds are not recomputable from the held-out scores, so they are given


def test_a_merged_run_whose_fold_accuracy_its_threshold_does_not_give_is_refused(evidence, tmp_path):
    folder = _merged(evidence, tmp_path / "merged")
    path = folder / "folds.csv"
    folds = pd.read_csv(path)
    assert folds.loc[folds["fold"] == 3, "accuracy"].item() != 0.5
    folds.loc[folds["fold"] == 3, "threshold"] = 10.0  # every fold-3 pair "different": half of them right
    folds.to_csv(path, index=False)
    with pytest.raises(DataError, match=re.escape(f"{path}: DF 1 fold 3 accuracy is ")):
        load_run(folder)


def test_a_df_the_table_shows_but_a_run_lacks_is_refused(copied):
    table = copied / "results" / "table.toml"
    table.write_text(table.read_text().replace("dfs = [1, 4]", "dfs = [1, 3]"))
    with pytest.raises(DataError, match=re.escape(f"{copied / 'results' / 'teacher' / 'results.csv'}: no DF 3, "
                                                  f"which {table} shows")):
        _generate(copied)


@pytest.mark.parametrize(("text", "message"), [
    ('dfs = [1]\ncolour = "red"\n', "unknown key colour (known: title, dfs, compare_dfs, show, rows)"),
    ('dfs = [1, 8]\ncompare_dfs = [12]\n', "'compare_dfs' must be some of 'dfs', got [12]"),
    ('dfs = [0]\n', "'dfs' must be a list of degradation factors (integers ≥ 1), got [0]"),
    ('dfs = [1]\nshow = ["speed"]\n', "'show' must list some of accuracy, ci, eer, auc once each, got ['speed']"),
    ('dfs = [1]\nshow = ["ci"]\n', "'show' has 'ci', the interval of the accuracy, without 'accuracy'"),
    ('dfs = [1]\n[[rows]]\ndir = "../elsewhere"\n', "rows[0].dir must name a folder beside table.toml"),
])
def test_a_bad_table_toml_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "table.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        results_table.read_spec(path)


def test_lrbench_report_renders_the_figures_from_the_five_files_alone(evidence, tmp_path):
    result = invoke("report", evidence / "results" / "teacher", "--out", tmp_path / "figures")
    assert result.exit_code == 0, result.output
    written = {path.name for path in (tmp_path / "figures").iterdir()}
    assert {"roc.png", "accuracy_vs_resolution.png", "report.html"} <= written
