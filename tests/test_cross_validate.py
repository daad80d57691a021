"""Cross-validation of a student: per-fold runs merged into one run directory, and the driver that makes them.

One tiny 3-fold synthetic LFW, a tiny untrained SphereFace as the teacher, 2 training steps per fold: the
driver runs folds 1-2, then (a second call) skips them and does fold 3 and the merge.
"""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import benchmark_script, invoke

from lrbench import registry
from lrbench.data.crops import load_crops
from lrbench.data.landmarks import landmarks_for
from lrbench.data.synth import synthesize
from lrbench.errors import UsageError
from lrbench.fileio import image_files, sha256_file
from lrbench.report.crossval import merge_held_out_folds
from lrbench.report.metrics import evaluate_verification
from lrbench.report.results import RESULTS, load_run

TINY = ("--teacher-option", "depth=4", "--teacher-option", "width=0.125")
RECIPE = (*TINY, "--df", "2-4", "--steps", "2", "--batch-size", "4", "--workers", "0")
DFS = "1,3"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cv") / "data", seed=5, folds=3, pairs_per_fold=4, people_per_fold=3,
                      images_per_person=3, train_identities=4, train_images_per_identity=3)


def _drive(data, out: Path, *extra, recipe=RECIPE) -> int:
    return benchmark_script("cross_validate").main([
        "--data", str(data.lfw_images), "--pairs", str(data.pairs), "--people", str(data.people),
        "--landmarks", str(data.lfw_landmarks), "--teacher", "sphereface", "--teacher-weights", "random",
        "--df-eval", DFS, "--device", "cpu", "--cache-dir", str(out.parent / "cache"), "--out", str(out), *extra,
        "--", *recipe,
    ])


@pytest.fixture(scope="module")
def driven(data, tmp_path_factory):
    """The driver's two calls (folds 1-2, then the rest) and what each printed."""
    out = tmp_path_factory.mktemp("driven") / "cv"
    printed = []
    for extra in (["--folds", "1,2"], []):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert _drive(data, out, *extra) == 0
        printed.append(buffer.getvalue())
    return out, printed


def _eval(out: Path, fold: int) -> Path:
    return out / f"fold-{fold:02d}" / "eval"


def test_the_driver_does_the_folds_asked_then_skips_them_and_merges_once_all_are_done(driven):
    out, (first, second) = driven
    assert "fold 1: training on the people of folds 2-3" in first
    assert "fold 2: training on the people of folds 1,3" in first
    assert "folds done: 1-2; still to do: 3" in first and "merged" not in first
    assert "fold 1: done earlier" in second and "fold 2: done earlier" in second
    assert "fold 3: training on the people of folds 1-2" in second
    assert "images/s on cpu" in second and "merged run directory" in second
    assert load_run(out / "merged").manifest["cross_validation"]["kind"] == "merged held-out folds"


def test_each_fold_evaluates_its_own_student_on_its_held_out_fold(driven):
    out, _ = driven
    for fold in (1, 2, 3):
        run = load_run(_eval(out, fold))
        assert sorted(run.folds["fold"].unique()) == [fold]
        student = out / f"fold-{fold:02d}" / "train" / "model.pt"  # a manifest names it by file name and hash
        assert run.manifest["weights"]["file"] == "model.pt"
        assert run.manifest["weights"]["sha256"] == sha256_file(student)
        config = json.loads((out / f"fold-{fold:02d}" / "training.json").read_text())
        others = {1: "2-3", 2: "1,3", 3: "1-2"}[fold]
        assert f"--people-folds {others}" in config["command"]


def test_merged_fold_rows_are_those_each_run_reported(driven):
    out, _ = driven
    merged = load_run(out / "merged")
    for fold in (1, 2, 3):
        own = load_run(_eval(out, fold)).folds.set_index("df")
        rows = merged.folds[merged.folds["fold"] == fold].set_index("df")
        assert np.array_equal(rows["accuracy"], own["accuracy"]) and np.array_equal(rows["threshold"], own["threshold"])


def test_merged_scores_hold_every_pair_once_scored_by_its_folds_student(driven):
    out, _ = driven
    merged = load_run(out / "merged").scores
    for df in (1, 3):
        at_df = merged[merged["df"] == df]
        assert sorted(at_df["pair"]) == list(range(24))
        for fold in (1, 2, 3):
            own = load_run(_eval(out, fold)).scores
            expected = own[(own["df"] == df) & (own["fold"] == fold)].set_index("pair")["score"]
            got = at_df[at_df["fold"] == fold].set_index("pair")["score"]
            assert np.allclose(got.sort_index(), expected.sort_index(), rtol=1e-7)


def test_merged_results_are_the_fold_mean_and_the_pooled_metrics_in_a_normal_runs_columns(driven):
    out, _ = driven
    merged, normal = load_run(out / "merged"), load_run(_eval(out, 1))
    assert list(pd.read_csv(out / "merged" / RESULTS).columns) == list(pd.read_csv(_eval(out, 1) / RESULTS).columns)
    for row in merged.results.itertuples():
        accuracy = merged.folds.loc[merged.folds["df"] == row.df, "accuracy"].to_numpy()
        assert row.accuracy_mean == pytest.approx(accuracy.mean())
        assert row.accuracy_std == pytest.approx(accuracy.std())
        assert row.pairs == 24
        scores = merged.scores[merged.scores["df"] == row.df]
        pooled = evaluate_verification(scores["score"], scores["same"], scores["fold"])
        assert row.auc == pytest.approx(pooled.auc) and row.eer == pytest.approx(pooled.eer)
    assert merged.manifest["columns"] == normal.manifest["columns"]


def test_the_manifest_names_every_folds_run_command_and_weights(driven):
    out, _ = driven
    folds = load_run(out / "merged").manifest["cross_validation"]["folds"]
    assert [entry["fold"] for entry in folds] == [1, 2, 3]
    for entry in folds:
        own = load_run(_eval(out, entry["fold"])).manifest
        assert entry["command"] == own["command"] and "--report-folds" in entry["command"]
        assert entry["weights"]["sha256"] == own["weights"]["sha256"]
        assert entry["training"]["steps"] == 2


def test_the_merged_run_renders_and_compares_with_a_full_run_of_the_same_pairs(driven, data, tmp_path):
    out, _ = driven
    full = tmp_path / "teacher"
    result = invoke("run", "--backbone", "sphereface", "--weights", "random", "--option", "depth=4", "--option",
                    "width=0.125", "--data", data.lfw_images, "--landmarks", data.lfw_landmarks, "--df", DFS,
                    "--no-cache", "--quiet", "--out", full)
    assert result.exit_code == 0, result.output
    report = invoke("report", out / "merged", "--json")
    assert report.exit_code == 0, report.output
    assert [row["df"] for row in json.loads(report.stdout)["results"]] == [1, 3]
    compared = invoke("compare", full, out / "merged", "--json", "--resamples", "20")
    assert compared.exit_code == 0, compared.output
    assert {row["pairs"] for row in json.loads(compared.stdout)["comparisons"]} == {24}


def test_a_fold_given_twice_is_refused(driven, tmp_path):
    out, _ = driven
    again = tmp_path / "again"
    shutil.copytree(_eval(out, 2), again)
    with pytest.raises(UsageError) as error:
        merge_held_out_folds([_eval(out, 1), _eval(out, 2), again, _eval(out, 3)], tmp_path / "merged")
    assert str(error.value) == f"{again}: reports fold 2, as {_eval(out, 2)} does; give each fold once"


def test_a_missing_fold_is_refused(driven, tmp_path):
    out, _ = driven
    with pytest.raises(UsageError) as error:
        merge_held_out_folds({1: _eval(out, 1), 3: _eval(out, 3)}, tmp_path / "merged")
    assert str(error.value) == "fold 2: no run given; a merged result needs a held-out run for each of the 3 folds"


def test_a_run_reporting_another_fold_than_assigned_is_refused(driven, tmp_path):
    out, _ = driven
    with pytest.raises(UsageError) as error:
        merge_held_out_folds({1: _eval(out, 1), 2: _eval(out, 3), 3: _eval(out, 2)}, tmp_path / "merged")
    assert str(error.value) == (
        f"{_eval(out, 3)}: reports fold 3, not fold 2 it is merged as; evaluate it with --report-folds 2"
    )


def _altered(run: Path, copy: Path, section: str, key: str, value) -> tuple[Path, object]:
    """A copy of a run directory whose manifest says ``value`` at ``section.key``; the value it had."""
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    before, manifest[section][key] = manifest[section][key], value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy, before


def test_a_run_on_other_images_is_refused(driven, tmp_path):
    out, _ = driven
    other, ours = _altered(_eval(out, 2), tmp_path / "other", "data", "images_sha256", "f" * 64)
    with pytest.raises(UsageError) as error:
        merge_held_out_folds({1: _eval(out, 1), 2: other, 3: _eval(out, 3)}, tmp_path / "merged")
    assert str(error.value) == (
        f"{other}: cannot be merged with {_eval(out, 1)}: different images sha256 {ours[:12]} vs {'f' * 12}"
    )


def test_a_run_scored_another_way_is_refused(driven, tmp_path):
    out, _ = driven
    other, _ = _altered(_eval(out, 2), tmp_path / "probe-only", "degradation", "mode", "probe")
    with pytest.raises(UsageError) as error:
        merge_held_out_folds({1: _eval(out, 1), 2: other, 3: _eval(out, 3)}, tmp_path / "merged")
    assert str(error.value) == (
        f"{other}: cannot be merged with {_eval(out, 1)}: different degraded images both vs probe"
    )


def test_a_training_stopped_before_its_model_was_written_is_resumed(driven, data, capsys):
    out, _ = driven
    train = out / "fold-03" / "train"
    for name in ("summary.json", "model.pt"):
        (train / name).unlink()
    shutil.rmtree(_eval(out, 3))
    assert _drive(data, out, "--folds", "3") == 0
    printed = capsys.readouterr().out
    assert f"fold 3: resuming the interrupted training in {train}" in printed
    assert (train / "model.pt").is_file() and "merged run directory" in printed


def test_a_later_call_with_another_recipe_is_refused(driven, data, capsys):
    out, _ = driven
    other = [*TINY, "--df", "2-4", "--steps", "3"]
    assert _drive(data, out, recipe=other) == 2
    assert capsys.readouterr().err.strip() == (
        f"Error: --out {out}: holds folds of another recipe (train_args: {list(RECIPE)} vs {other}); "
        "choose another --out to train this one"
    )


def test_packed_crops_are_lrbenchs_aligned_crops_as_jpeg_beside_the_protocol_files(data, tmp_path):
    source = tmp_path / "lfw"
    source.mkdir()
    (source / "lfw-deepfunneled").symlink_to(data.lfw_images)
    for path in (data.pairs, data.people, data.lfw_landmarks):
        shutil.copyfile(path, source / path.name)
    record = benchmark_script("pack_lfw_crops").pack(source, tmp_path / "packed", "sphereface", quality=95)
    packed = tmp_path / "packed"
    images = image_files(data.lfw_images)
    assert record["images"] == len(images) == len(image_files(packed)) and record["template"] == "sphereface-96x112"
    assert (packed / "pairs.txt").read_bytes() == data.pairs.read_bytes()
    assert (packed / "people.txt").read_bytes() == data.people.read_bytes()
    template = registry.backbone("sphereface").input.template
    aligned, _ = load_crops(data.lfw_images, images, template, landmarks_for(images, data.lfw_landmarks,
                                                                             data.lfw_images), show_progress=False)
    decoded, _ = load_crops(packed, images, template, None, show_progress=False)
    assert decoded.shape == aligned.shape
    # JPEG (4:2:0, quality 95) of these noisy synthetic faces: 2.3 grey levels; the crop shifted by one pixel: 18.8
    assert np.abs(decoded.astype(float) - aligned).mean() < 4


def _same_numbers(a, b) -> None:
    """Two merged runs with the same folds, fold rows, scores and results."""
    for table in ("folds", "scores", "results"):
        left, right = getattr(a, table), getattr(b, table)
        assert left.reset_index(drop=True).equals(right[left.columns].reset_index(drop=True)), table


def test_a_merge_of_some_folds_is_a_run_of_those_folds_that_a_later_merge_takes_as_they_are(driven, tmp_path):
    out, _ = driven
    partial = merge_held_out_folds({1: _eval(out, 1), 2: _eval(out, 2)}, tmp_path / "progress", partial=True)
    loaded = load_run(tmp_path / "progress")  # a normal run directory, checked on reading
    assert sorted(loaded.folds["fold"].unique()) == [1, 2] and sorted(loaded.scores["fold"].unique()) == [1, 2]
    assert loaded.manifest["cross_validation"]["all_folds"] == [1, 2, 3]
    assert loaded.manifest["label"].endswith(", folds 1-2 of 3 so far")
    assert (loaded.scores["df"] == 1).sum() == 16  # the held-out pairs only: 2 folds of 8
    assert partial.results["accuracy_mean"].tolist() == loaded.results["accuracy_mean"].tolist()
    _same_numbers(merge_held_out_folds([tmp_path / "progress", _eval(out, 3)], tmp_path / "full"),
                  load_run(out / "merged"))
    records = load_run(tmp_path / "full").manifest["cross_validation"]["folds"]
    assert [record["weights"]["sha256"] for record in records] == [
        load_run(_eval(out, fold)).manifest["weights"]["sha256"] for fold in (1, 2, 3)]


def test_the_driver_takes_the_folds_of_an_earlier_merge_with_from_and_refuses_another_recipes(driven, data,
                                                                                           tmp_path):
    out, _ = driven
    assert load_run(out / "progress").manifest["cross_validation"]["folds"][-1]["fold"] == 3  # kept after each fold
    shutil.copytree(out / "merged", tmp_path / "committed")
    fresh = tmp_path / "cv"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert _drive(data, fresh, "--from", str(tmp_path / "committed")) == 0
    assert "fold 1: done earlier" in buffer.getvalue() and "training" not in buffer.getvalue()
    _same_numbers(load_run(fresh / "merged"), load_run(out / "merged"))
    other = tmp_path / "other"
    assert _drive(data, other, "--from", str(tmp_path / "committed"), recipe=(*RECIPE[:-2], "--workers", "1")) == 2
