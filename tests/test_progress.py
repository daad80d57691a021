"""Progress on stderr: a bar at a terminal, plain lines in logs, nothing with --quiet; speeds in the manifest."""

import io
import json
import re
import shutil

import pytest
from click.testing import CliRunner

from lrbench import progress
from lrbench.cli import cli
from lrbench.progress import progress_bar, progress_line, progress_mode

LINE = re.compile(r"^(decode \+ align|features DF \d+): (\d+)/(\d+) images, [\d.]+ images/s, .*\d+ s elapsed$")


@pytest.fixture
def data(synth_data, tmp_path):
    root = tmp_path / "lfw"
    shutil.copytree(synth_data.lfw_root, root)
    return root


@pytest.fixture
def every_step(monkeypatch):
    """A progress line for every advance, not every 30 s."""
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)


def run(root, out, *extra):
    args = ["run", "--backbone", "lbp", "--data", root, "--out", out, "--workers", 1, "--df", "1,8", "--no-cache",
            *extra]
    return CliRunner().invoke(cli, [str(a) for a in args])


def progress_lines(text):
    return [line for line in text.splitlines() if LINE.match(line)]


def test_a_progress_line_gives_images_done_speed_time_left_and_elapsed():
    line = progress_line("features DF 8", 3200, 7701, 78.0)
    assert line == "features DF 8: 3200/7701 images, 41.0 images/s, about 1 min 50 s left, 1 min 18 s elapsed"


def test_a_finished_stage_line_has_no_time_left_and_hours_read_as_hours():
    assert progress_line("decode + align", 7701, 7701, 5400.0) == (
        "decode + align: 7701/7701 images, 1.4 images/s, 1 h 30 min elapsed"
    )


def test_a_line_before_any_time_has_passed_gives_no_speed():
    assert progress_line("features DF 1", 0, 10, 0.0) == "features DF 1: 0/10 images, 0 s elapsed"


class Stderr(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize(("tty", "quiet", "mode"), [(True, False, "bar"), (False, False, "lines"),
                                                    (True, True, "off"), (False, True, "off")])
def test_the_mode_follows_whether_stderr_is_a_terminal_and_quiet(monkeypatch, tty, quiet, mode):
    monkeypatch.setattr("sys.stderr", Stderr(tty))
    assert progress_mode(quiet) == mode


def test_lines_come_at_the_interval_and_once_at_the_end_of_a_stage(every_step, capsys):
    with progress_bar("features DF 4", 5, "lines") as steps:
        steps.advance(2)
        steps.advance(3)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert [LINE.match(line).group(2) for line in captured.err.splitlines()] == ["2", "5"]


def test_a_stage_shorter_than_the_interval_prints_only_its_end_line(capsys):
    with progress_bar("decode + align", 3, "lines") as steps:
        steps.advance(1)
        steps.advance(2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("decode + align: 3/3 images, ")


def test_every_mode_counts_the_images_and_times_the_stage():
    with progress_bar("features DF 1", 4, "off") as steps:
        steps.advance(4)
    assert steps.done == 4 and steps.elapsed > 0


def test_run_without_a_terminal_prints_progress_lines_per_stage_on_stderr(data, tmp_path, every_step):
    result = run(data, tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = progress_lines(result.stderr)
    stages = {LINE.match(line).group(1) for line in lines}
    assert stages == {"decode + align", "features DF 1", "features DF 8"}
    finished = [line for line in lines if LINE.match(line).group(2) == LINE.match(line).group(3)]
    assert len(finished) == 3
    assert not progress_lines(result.stdout)


def test_quiet_prints_no_progress(data, tmp_path, every_step):
    result = run(data, tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    assert "images/s" not in result.stderr and "images/s" not in result.stdout


def test_json_output_stays_valid_with_progress_on_stderr(data, tmp_path, every_step):
    result = run(data, tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert [row["df"] for row in json.loads(result.stdout)["results"]] == [1, 8]
    assert progress_lines(result.stderr)


def test_embed_without_a_terminal_prints_progress_lines(data, tmp_path, every_step):
    args = ["embed", "-b", "lbp", "--data", data, "--df", "4", "--out", tmp_path / "f.npz", "--no-cache"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert {LINE.match(line).group(1) for line in progress_lines(result.stderr)} == {"decode + align", "features DF 4"}


def test_manifest_gives_images_per_second_per_df_each_face_once_and_with_mirrors(data, tmp_path):
    assert run(data, tmp_path / "run", "--fusion", "concat", "--quiet").exit_code == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    timings, faces = manifest["timings"], manifest["data"]["unique_images"]
    assert timings["decode_align_images_per_s"] > 0
    assert set(timings["features_by_df"]) == {"1", "8"}
    for stage in timings["features_by_df"].values():
        assert stage["faces"] == faces and stage["s"] > 0
        assert stage["faces_per_s"] == pytest.approx(faces / stage["s"], abs=0.05)
        assert stage["network_images_per_s"] == pytest.approx(2 * faces / stage["s"], abs=0.05)


def test_without_mirrors_the_network_sees_each_face_once(data, tmp_path):
    assert run(data, tmp_path / "run", "--fusion", "none", "--quiet", "--mode", "probe").exit_code == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    for stage in manifest["timings"]["features_by_df"].values():
        assert stage["network_images_per_s"] == stage["faces_per_s"]
