"""Outputs: locks against concurrent writers, what --overwrite may replace, unwritable --out, damaged run
directories in `lrbench report`, and the permissions of what lrbench writes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import invoke, one_line_error

from lrbench import fileio
from lrbench.errors import UsageError
from lrbench.fileio import OutputLock
from lrbench.report.render import render, render_run
from lrbench.report.results import OVERLAY_FILES, REPORT_FILES, load_run, recover_run_dir, write_run


def run_args(data, out, *extra):
    return ["run", "--backbone", "lbp", "--data", data, "--out", out, "--workers", 1, "--no-cache", *extra]


def embed_args(data, out, *extra):
    return ["embed", "--backbone", "lbp", "--data", data, "--out", out, "--workers", 1, "--no-cache", *extra]


@pytest.fixture(scope="module")
def made_run(synth_data, tmp_path_factory):
    """One real run directory (LBP, DF 1), made once; tests work on copies."""
    out = tmp_path_factory.mktemp("made") / "run"
    result = invoke(*run_args(synth_data.lfw_root, out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def a_run(made_run, tmp_path):
    return Path(shutil.copytree(made_run, tmp_path / "a"))


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fails the test if an evaluation (or an embedding) starts: refusals must come first."""

    def started(*args, **kwargs):
        raise AssertionError("the evaluation started")

    monkeypatch.setattr("lrbench.eval.engine.evaluate", started)
    monkeypatch.setattr("lrbench.eval.engine.embed", started)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in sorted(folder.rglob("*"))}


# -- concurrent writers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "name"), [(run_args, "run"), (embed_args, "features.npz")])
def test_a_second_writer_of_the_same_out_is_refused_naming_the_holder(synth_data, tmp_path, no_evaluation, args, name):
    out = tmp_path / name
    with OutputLock(out, "--out", command="lrbench run --out elsewhere"):
        result = invoke(*args(synth_data.lfw_root, out))
    line = one_line_error(result, 2, f"--out {out}: in use by lrbench process {os.getpid()}", "started ")
    assert "lrbench run --out elsewhere" in line
    assert not out.exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(synth_data, tmp_path):
    out = tmp_path / "run"
    lock = fileio.lock_path(out)
    lock.write_text(json.dumps({"pid": dead_pid(), "host": "here", "command": "lrbench run", "started": "then"}))
    result = invoke(*run_args(synth_data.lfw_root, out))
    assert result.exit_code == 0, result.output
    assert load_run(out).results["df"].tolist() == [1]
    assert not lock.exists()


# -- what --overwrite may replace --------------------------------------------------------------------------

NOT_A_RUN = "already exists and is not an lrbench run directory"


def test_overwrite_refuses_a_folder_that_is_not_a_run_directory(synth_data, tmp_path, no_evaluation):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    result = invoke(*run_args(synth_data.lfw_root, out, "--overwrite"))
    one_line_error(result, 2, f"--out {out}: {NOT_A_RUN}", "no manifest.json", "notes.txt")
    assert (out / "notes.txt").read_text() == "precious"


def test_overwrite_refuses_a_run_directory_holding_files_lrbench_did_not_write(a_run, synth_data, no_evaluation):
    (a_run / "notes.txt").write_text("precious")
    (a_run / "extra").mkdir()
    result = invoke(*run_args(synth_data.lfw_root, a_run, "--overwrite"))
    one_line_error(result, 2, f"--out {a_run}: {NOT_A_RUN}", "extra/, notes.txt")
    assert (a_run / "notes.txt").read_text() == "precious"


def test_overwrite_refuses_a_folder_whose_manifest_is_not_an_lrbench_manifest(a_run, synth_data, no_evaluation):
    (a_run / "manifest.json").write_text('{"name": "someone else\'s"}\n')
    result = invoke(*run_args(synth_data.lfw_root, a_run, "--overwrite"))
    one_line_error(result, 2, f"--out {a_run}: {NOT_A_RUN}", "manifest.json is not an lrbench")


def test_an_existing_run_directory_needs_overwrite(a_run, synth_data, no_evaluation):
    one_line_error(invoke(*run_args(synth_data.lfw_root, a_run)), 2, f"--out {a_run}: already exists", "--overwrite")


def test_overwrite_replaces_a_run_directory_and_leaves_nothing_beside_it(a_run):
    run = load_run(a_run)
    run.manifest["label"] = "the new one"
    write_run(run, a_run, overwrite=True, render=render_run)
    assert load_run(a_run).label == "the new one"
    assert [p.name for p in a_run.parent.iterdir()] == ["a"]


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from lrbench.report.results import load_run, write_run

stage, run, flag = sys.argv[1:]
replace = os.replace


def stop(*args):
    Path(flag).write_text("")
    time.sleep(600)


def replace_then_stop(source, target):
    replace(source, target)
    stop()


if stage == "between the renames":
    os.replace = replace_then_stop
write_run(load_run(run), Path(run), overwrite=True, render=stop if stage == "while rendering" else None)
"""


@pytest.mark.parametrize("stage", ["while rendering", "between the renames"])
def test_a_replacement_killed_with_sigkill_leaves_the_previous_run_and_no_debris(a_run, tmp_path, stage):
    before, flag = snapshot(a_run), tmp_path / "stopped"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, stage, str(a_run), str(flag)])
    while not flag.exists() and writer.poll() is None:
        time.sleep(0.05)
    writer.kill()
    assert writer.wait() == -signal.SIGKILL
    assert len(list(a_run.parent.glob(".a.*"))) == 1  # what the killed writer left
    recover_run_dir(a_run)
    assert snapshot(a_run) == before
    assert sorted(p.name for p in a_run.parent.iterdir()) == ["a", "stopped"]


def test_debris_of_dead_writers_is_removed_and_that_of_live_ones_kept(a_run):
    pid, alive = dead_pid(), os.getppid()
    for name in (f".a.old-{pid}", f".a.tmp-{pid}-x1y2", f".a.tmp-{alive}-x1y2", f".ab.old-{pid}"):
        (a_run.parent / name).mkdir()
    recover_run_dir(a_run)
    assert sorted(p.name for p in a_run.parent.iterdir()) == sorted(["a", f".a.tmp-{alive}-x1y2", f".ab.old-{pid}"])


def test_embed_overwrite_refuses_a_file_it_did_not_write(synth_data, tmp_path, no_evaluation):
    out = tmp_path / "features.npz"
    out.write_bytes(b"someone's archive")
    result = invoke(*embed_args(synth_data.lfw_root, out, "--overwrite"))
    one_line_error(result, 2, f"--out {out}: already exists and is not an lrbench embedding file")
    assert out.read_bytes() == b"someone's archive"


# -- lrbench report --out ----------------------------------------------------------------------------------


def test_report_out_refuses_a_run_directory(a_run, made_run):
    (a_run / "report.html").write_text("the run's own report")
    result = invoke("report", made_run, a_run, "--out", a_run)
    one_line_error(result, 2, f"--out {a_run}: is a run directory", "own report")
    assert (a_run / "report.html").read_text() == "the run's own report"


def test_report_out_refuses_a_folder_with_files_lrbench_did_not_write(a_run, made_run, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    one_line_error(invoke("report", made_run, a_run, "--out", target), 2, f"--out {target}: holds notes.txt")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_report_out_rewrites_an_earlier_overlay(a_run, made_run, tmp_path, vector_figures):
    target = tmp_path / "compare"
    assert invoke("report", made_run, a_run, "--out", target).exit_code == 0
    result = invoke("report", made_run, a_run, "--out", target)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in target.iterdir()) == sorted(OVERLAY_FILES)  # the report files and overlay.csv


def test_report_of_a_run_in_use_is_refused(a_run):
    with OutputLock(a_run, "--out"):
        one_line_error(invoke("report", a_run), 2, f"run directory {a_run}: in use by lrbench process")


def test_rerendering_removes_what_a_killed_render_left_in_the_run(a_run):
    leftover = a_run / f".report.tmp-{dead_pid()}-x1y2"
    leftover.mkdir()
    (leftover / "roc.png").write_bytes(b"half")
    assert invoke("report", a_run).exit_code == 0
    assert not leftover.exists()


def test_render_writes_exactly_the_report_files(a_run, tmp_path, vector_figures):
    """results.REPORT_FILES is what --overwrite and report --out accept as lrbench's own files."""
    render([load_run(a_run)], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(REPORT_FILES)


# -- unwritable --out: refused before the evaluation -------------------------------------------------------


def test_run_out_under_a_file_is_refused_before_the_evaluation(synth_data, tmp_path, no_evaluation):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"
    one_line_error(invoke(*run_args(synth_data.lfw_root, out)), 2, f"--out {out}: {tmp_path / 'file'} is a file")


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_run_out_that_is_a_file_is_refused_before_the_evaluation(synth_data, tmp_path, no_evaluation, overwrite):
    out = tmp_path / "results.txt"
    out.write_text("precious")
    result = invoke(*run_args(synth_data.lfw_root, out, *overwrite))
    one_line_error(result, 2, f"--out {out}: is a file, not a folder")
    assert out.read_text() == "precious"


def test_embed_out_that_is_a_folder_or_under_a_file_is_refused(synth_data, tmp_path, no_evaluation):
    (tmp_path / "f.npz").mkdir()
    one_line_error(invoke(*embed_args(synth_data.lfw_root, tmp_path / "f.npz")), 2, "f.npz: is a folder")
    (tmp_path / "file").write_text("")
    one_line_error(invoke(*embed_args(synth_data.lfw_root, tmp_path / "file" / "x.npz")), 2, "file is a file")


def test_report_out_that_is_a_file_is_refused(a_run, made_run, tmp_path):
    (tmp_path / "out.html").write_text("precious")
    one_line_error(invoke("report", made_run, a_run, "--out", tmp_path / "out.html"), 2, "out.html: is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_run_out_in_a_read_only_folder_is_refused_before_the_evaluation(synth_data, tmp_path, no_evaluation):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        result = invoke(*run_args(synth_data.lfw_root, parent / "sub" / "run"))
    finally:
        parent.chmod(0o755)
    one_line_error(result, 2, f"cannot create anything in {parent} (permission denied)")


# -- damaged run directories in lrbench report: one line, nothing written ----------------------------------


def rename_column(path: Path, old: str, new: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0].replace(old, new, 1) + "".join(lines[1:]))


def replace_field(path: Path, line: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[line - 1].split(",")
    fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


DAMAGES = {
    "no manifest": (lambda run: (run / "manifest.json").unlink(), ["manifest.json: missing"]),
    "manifest not JSON": (lambda run: (run / "manifest.json").write_text('{\n"backbone": '), ["manifest.json:2: not"]),
    "manifest not lrbench's": (
        lambda run: (run / "manifest.json").write_text('{"backbone": "x"}'),
        ["manifest.json: not an lrbench run manifest", "'protocol'", "'degradation'"],
    ),
    "renamed column": (
        lambda run: rename_column(run / "results.csv", "auc", "AUC"),
        ["results.csv: no column 'auc'", "AUC"],
    ),
    "missing column": (
        lambda run: (run / "roc.csv").write_text("df,fpr\n1,0.0\n"),
        ["roc.csv: no column 'tpr'"],
    ),
    "column twice": (
        lambda run: (run / "roc.csv").write_text("df,fpr,tpr,tpr\n1,0.0,0.0,0.0\n"),
        ["roc.csv: column 'tpr' more than once"],
    ),
    "text for a number": (
        lambda run: replace_field(run / "folds.csv", 3, "accuracy", "high"),
        ["folds.csv:3: column 'accuracy' is not a number: 'high'"],
    ),
    "fraction for an integer": (
        lambda run: replace_field(run / "scores.csv", 5, "fold", "1.5"),
        ["scores.csv:5: column 'fold' is not an integer: '1.5'"],
    ),
    "empty value": (
        lambda run: replace_field(run / "results.csv", 2, "eer", ""),
        ["results.csv:2: column 'eer' is empty"],
    ),
    "ragged row": (
        lambda run: replace_field(run / "roc.csv", 4, "tpr", "0.5,7"),
        ["roc.csv:4: 4 fields, but the header has 3"],
    ),
    "repeated row": (
        lambda run: (run / "folds.csv").write_text(
            "df,fold,accuracy,threshold\n1,1,0.5,0.1\n1,2,0.5,0.1\n1,1,0.6,0.2\n"
        ),
        ["folds.csv:4: a second row for df 1, fold 1"],
    ),
    "empty file": (lambda run: (run / "scores.csv").write_text(""), ["scores.csv: empty file"]),
    "header only": (
        lambda run: (run / "folds.csv").write_text("df,fold,accuracy,threshold\n"),
        ["folds.csv: no rows below the header"],
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_is_one_error_naming_the_file_and_nothing_is_written(a_run, made_run, tmp_path, damage):
    spoil, fragments = DAMAGES[damage]
    spoil(a_run)
    before = snapshot(a_run)
    line = one_line_error(invoke("report", a_run), 1, *fragments)
    assert line.startswith(f"Error: {a_run}/")
    one_line_error(invoke("report", made_run, a_run, "--out", tmp_path / "compare"), 1, *fragments)
    assert snapshot(a_run) == before
    assert not (tmp_path / "compare").exists()


# -- permissions --------------------------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o027])
def umask(request, monkeypatch):
    """The process runs under this umask, as if lrbench had been started with it."""
    previous = os.umask(request.param)
    monkeypatch.setattr(fileio, "UMASK", request.param)
    monkeypatch.setattr(fileio, "FILE_MODE", 0o666 & ~request.param)
    monkeypatch.setattr(fileio, "DIR_MODE", 0o777 & ~request.param)
    yield request.param
    os.umask(previous)


def modes(folder: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777) for p in [folder, *folder.rglob("*")]}


def test_run_directories_and_reports_get_the_umask(a_run, made_run, tmp_path, umask):
    expected = {("dir", 0o777 & ~umask), ("file", 0o666 & ~umask)}
    written = write_run(load_run(a_run), tmp_path / "new", render=render_run)
    assert modes(written) == expected
    assert invoke("report", made_run, written, "--out", tmp_path / "compare").exit_code == 0
    assert modes(tmp_path / "compare") == expected
    assert invoke("report", written).exit_code == 0
    assert modes(written) == expected


def test_an_embedding_file_gets_the_umask(synth_data, tmp_path, umask):
    out = tmp_path / "features.npz"
    assert invoke(*embed_args(synth_data.lfw_root, out)).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_writing_a_run_over_a_file_is_refused_by_write_run_itself(a_run, tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(UsageError, match="is a file, not a run directory"):
        write_run(load_run(a_run), tmp_path / "taken", overwrite=True)


def test_a_synthetic_dataset_gets_the_umask(tmp_path, umask):
    from lrbench.data.synth import synthesize

    synthesize(tmp_path / "synth", pairs_per_fold=1, people_per_fold=2, images_per_person=2, folds=2,
               train_identities=1, train_images_per_identity=1)
    assert modes(tmp_path / "synth") == {("dir", 0o777 & ~umask), ("file", 0o666 & ~umask)}
