"""Writes the system refuses: --out in /proc or /sys for every writing command, a full disk while a run, a
report, pairs or a lock is written, and a swap whose second rename fails. Each ends in one line naming the
file or option, and leaves nothing behind."""

import errno
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import invoke
from full_disk import fill_disk

from lrbench import fileio
from lrbench.fileio import WriteError, built_in_place, swap_into_place


def run_args(data, out, *extra):
    return ["run", "--backbone", "lbp", "--data", data, "--df", "1,8", "--out", out, "--workers", 1, "--no-cache", "-q",
            *extra]


@pytest.fixture(scope="module")
def made_run(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("made") / "run"
    assert invoke(*run_args(synth_data.lfw_root, out)).exit_code == 0
    return out


@pytest.fixture
def a_run(made_run, tmp_path):
    return Path(shutil.copytree(made_run, tmp_path / "inputs" / "a"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"/" for p in sorted(folder.rglob("*"))}


def error_line(result) -> str:
    """The one line a failed command printed (no traceback)."""
    assert result.exit_code not in (0, None), result.output
    assert result.exc_info is None or result.exc_info[0] is SystemExit, result.exc_info
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


# -- /proc and /sys: refused before any work, for every writing command ----------------------------------------


WRITERS = {
    "run": lambda data, run, out: run_args(data.lfw_root, out),
    "embed": lambda data, run, out: ["embed", "--backbone", "lbp", "--data", data.lfw_root, "--out", f"{out}.npz"],
    "report": lambda data, run, out: ["report", run, run, "--out", out],
    "compare": lambda data, run, out: ["compare", run, run, "--out", out, "--resamples", 10],
    "train": lambda data, run, out: ["train", "classify", "--data", data.train_images, "--out", out, "--option",
                                     "depth=4", "--batch-size", 4, "--workers", 0, "--steps", 1],
    "landmarks": lambda data, run, out: ["landmarks", data.lfw_images, "--out", f"{out}.txt"],
    "pairs make": lambda data, run, out: ["pairs", "make", data.lfw_images, "--folds", 2, "--pairs-per-fold", 2,
                                          "--out", f"{out}.txt"],
    "bin make": lambda data, run, out: ["bin", "make", "--data", data.lfw_root, "--out", f"{out}.bin"],
    "synth": lambda data, run, out: ["synth", out],
}


@pytest.mark.parametrize("system", ["/proc", "/sys"])
@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("depth", ["lrbench-out", "lrbench-a/b"])
def test_an_out_in_a_kernel_file_system_is_one_line_naming_it(synth_data, made_run, system, command, depth):
    if not Path(system).is_dir():
        pytest.skip(f"no {system} here")
    out = Path(system) / depth
    line = error_line(invoke(*WRITERS[command](synth_data, made_run, out)))
    assert str(out) in line and "cannot" in line, line
    assert not Path(system, depth.split("/")[0]).exists()


# -- a full disk -------------------------------------------------------------------------------------------------


def test_a_full_disk_while_a_run_is_written_is_one_line_and_leaves_no_folder(synth_data, tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    fill_disk(monkeypatch, tmp_path, calls=("fsync",))
    line = error_line(invoke(*run_args(synth_data.lfw_root, out)))
    assert line == f"Error: {out / 'manifest.json'}: cannot write it (No space left on device)"
    assert list(tmp_path.iterdir()) == []  # no run, no temporary folder, no lock, no empty "new"


def test_a_full_disk_while_a_run_is_replaced_keeps_the_previous_run(synth_data, a_run, monkeypatch):
    before = snapshot(a_run.parent)
    fill_disk(monkeypatch, a_run.parent, calls=("fsync",))
    error_line(invoke(*run_args(synth_data.lfw_root, a_run, "--overwrite")))
    assert snapshot(a_run.parent) == before


def test_a_full_disk_while_a_report_is_written_names_the_report_file_and_leaves_nothing(a_run, tmp_path,
                                                                                         monkeypatch):
    out = tmp_path / "new" / "overlay"
    fill_disk(monkeypatch, tmp_path / "new", calls=("fsync",))
    line = error_line(invoke("report", a_run, a_run, "--out", out))
    assert line == f"Error: {out / 'roc.png'}: cannot write it (No space left on device)"
    assert not (tmp_path / "new").exists()


def test_a_full_disk_while_a_run_is_rerendered_keeps_its_report(a_run, monkeypatch):
    before = snapshot(a_run)
    fill_disk(monkeypatch, a_run, calls=("fsync",))
    assert "cannot write it (No space left on device)" in error_line(invoke("report", a_run))
    assert snapshot(a_run) == before


def test_pairs_are_written_all_three_or_none(synth_data, tmp_path, monkeypatch):
    out = tmp_path / "new" / "pairs.txt"
    fill_disk(monkeypatch, tmp_path, calls=("fsync",), after=1)  # pairs.txt fits, people.txt does not
    line = error_line(invoke("pairs", "make", synth_data.lfw_images, "--folds", 2, "--pairs-per-fold", 2, "--out",
                             out))
    assert line == f"Error: {out.with_name('people.txt')}: cannot write it (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_a_lock_that_cannot_be_written_leaves_no_empty_lock_file_or_folder(synth_data, tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    fill_disk(monkeypatch, tmp_path, calls=("write",))
    line = error_line(invoke(*run_args(synth_data.lfw_root, out)))
    assert line == f"Error: {tmp_path / 'new' / '.run.lock'}: cannot write it (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_names_the_file_and_leaves_the_previous_content(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_text("previous")
    fill_disk(monkeypatch, tmp_path, calls=("fsync",))
    with pytest.raises(WriteError) as error:
        fileio.write_atomic(target, "new")
    assert str(error.value) == f"{target}: cannot write it (No space left on device)"
    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC  # caches still fall back on it
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"] and target.read_text() == "previous"


# -- swapping a folder into place ------------------------------------------------------------------------------


def failing_rename(monkeypatch, fails: dict[int, OSError]):
    """``os.replace`` whose n-th call (1-based) raises ``fails[n]``."""
    real, calls = os.replace, []

    def replace(source, target):
        calls.append((source, target))
        if len(calls) in fails:
            raise fails[len(calls)]
        return real(source, target)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_a_failed_swap_puts_the_previous_output_back_and_raises_the_first_error(tmp_path, monkeypatch):
    target, new = tmp_path / "out", tmp_path / "new"
    target.mkdir(), new.mkdir()
    (target / "old.txt").write_text("previous")
    failing_rename(monkeypatch, {2: OSError(errno.EIO, "Input/output error")})
    with pytest.raises(WriteError) as error:
        swap_into_place(new, target)
    assert str(error.value) == f"{target}: cannot write it (Input/output error)"
    assert (target / "old.txt").read_text() == "previous" and new.is_dir()


def test_a_rollback_that_fails_too_does_not_hide_the_first_error(tmp_path, monkeypatch, capsys):
    target, new = tmp_path / "out", tmp_path / "new"
    target.mkdir(), new.mkdir()
    failing_rename(monkeypatch, {2: OSError(errno.EIO, "Input/output error"),
                                 3: OSError(errno.EACCES, "Permission denied")})
    with pytest.raises(WriteError) as error:
        swap_into_place(new, target)
    assert error.value.errno == errno.EIO
    old = tmp_path / f".out.old-{os.getpid()}"
    assert f"{target}: cannot put the previous one back (Permission denied); it is whole in {old}" in (
        capsys.readouterr().err)
    assert old.is_dir()


def test_a_failed_swap_never_moves_in_an_older_leftover(tmp_path, monkeypatch):
    target, new = tmp_path / "out", tmp_path / "new"
    new.mkdir()
    leftover = tmp_path / f".out.old-{os.getpid()}"  # a previous output this process could not remove
    leftover.mkdir()
    (leftover / "stale.txt").write_text("stale")
    failing_rename(monkeypatch, {1: OSError(errno.EIO, "Input/output error")})
    with pytest.raises(WriteError):
        swap_into_place(new, target)
    assert not target.exists() and (leftover / "stale.txt").read_text() == "stale"


def test_a_failed_build_removes_its_folder_and_the_parents_it_made(tmp_path):
    with pytest.raises(RuntimeError), built_in_place(tmp_path / "a" / "b" / "out") as folder:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_an_error_writing_into_a_build_names_the_file_in_the_target(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(WriteError) as error, built_in_place(target) as folder:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "images" / "1.jpg"))
    assert error.value.filename == str(target / "images" / "1.jpg")
    assert list(tmp_path.iterdir()) == []
