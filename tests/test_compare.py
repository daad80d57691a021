import json
import shutil

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error

from lrbench.report.compare import COMPARE_FILES
from lrbench.report.results import RunData, load_run, recompute

# Ten pairs, two folds of five, one threshold (0.5) in each: a pair is decided "same" iff its score > 0.5.
SAME = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
RIGHT_A = {0, 1, 2, 3}  # pair 3 only A gets right
RIGHT_B = {0, 1, 2, 4, 5, 6, 7, 8, 9}  # pairs 4-9 only B gets right: b = 1, c = 6


def hand_run(path, right, dfs=(1,), protocol="lfw-view2", pairs_sha="p" * 64, label=None, images_sha="i" * 64):
    """A run directory written by hand: scores 0.9 or 0.1 so that exactly the pairs in ``right`` are right."""
    path.mkdir()
    manifest = {
        "backbone": "hand",
        "protocol": protocol,
        "label": label or path.name,
        "degradation": {"name": "bicubic", "mode": "both", "description": "by hand"},
        "settings": {"aligned": False},
        "data": {"pairs_sha256": pairs_sha, "images_sha256": images_sha, "landmarks_sha256": "l" * 64,
                 "image_root": "/data"},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    same = np.array(SAME, dtype=bool)
    correct = np.isin(np.arange(10), list(right))
    score = np.where(same == correct, 0.9, 0.1)
    images_a = [f"P{i}/a.jpg" for i in range(10)]
    images_b = [f"P{i}/b.jpg" if s else f"Q{i}/b.jpg" for i, s in enumerate(SAME)]
    base = pd.DataFrame({"pair": range(10), "fold": np.repeat([1, 2], 5), "same": SAME, "image_a": images_a,
                         "image_b": images_b})
    pd.concat([base.assign(df=df, score=score) for df in dfs]).to_csv(path / "scores.csv", index=False)
    folds = pd.DataFrame([{"df": df, "fold": fold, "accuracy": 0.0, "threshold": 0.5} for df in dfs for fold in (1, 2)])
    # the thresholds are set by hand, as a merged cross-validated run's are given: the rest is computed from them
    run = RunData({**manifest, "cross_validation": {"kind": "by hand"}}, pd.DataFrame(), folds, pd.DataFrame(),
                  pd.read_csv(path / "scores.csv"), path=path)
    metrics = recompute(run)
    folds["accuracy"] = [accuracy for df in dfs for accuracy in metrics[df].fold_accuracy]
    folds.to_csv(path / "folds.csv", index=False)
    roc = [{"df": df, "fpr": f, "tpr": t} for df in dfs for f, t in zip(metrics[df].roc_fpr, metrics[df].roc_tpr)]
    pd.DataFrame(roc).to_csv(path / "roc.csv", index=False)
    results = [{"df": df, "probe_px": f"{96 // df}×{112 // df}", "interocular_px": 35.0 / df,
                "accuracy_mean": metrics[df].accuracy_mean, "accuracy_std": metrics[df].accuracy_std,
                "accuracy_sem": metrics[df].accuracy_sem, "auc": metrics[df].auc, "eer": metrics[df].eer,
                **{f"tar_at_far_{far:g}": tar for far, tar in metrics[df].tar_at_far.items()}} for df in dfs]
    pd.DataFrame(results).to_csv(path / "results.csv", index=False)
    (path / "manifest.json").write_text(json.dumps(run.manifest))
    return path


def test_mcnemar_counts_and_p_value_from_the_runs_own_decisions(tmp_path):
    a, b = hand_run(tmp_path / "a", RIGHT_A), hand_run(tmp_path / "b", RIGHT_B)
    result = invoke("compare", a, b, "--json", "--resamples", 200)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    (row,) = payload["comparisons"]
    assert (row["only_base_right"], row["only_run_right"]) == (1, 6)
    assert row["mcnemar_p"] == pytest.approx(0.125)  # 2 · P(X ≤ 1), X ~ Bin(7, 1/2) = 2 · 8/128
    assert row["mcnemar_p_holm"] == pytest.approx(0.125)  # one test: nothing to adjust
    assert (row["accuracy_base"], row["accuracy"]) == (0.4, 0.9)
    assert row["delta"]["accuracy"]["value"] == pytest.approx(0.5)  # (c − b) / pairs
    assert row["delta"]["accuracy"]["ci_low"] <= 0.5 <= row["delta"]["accuracy"]["ci_high"]
    assert (payload["resamples"], payload["seed"]) == (200, 0)


def test_holm_adjusts_over_every_run_and_df(tmp_path):
    a = hand_run(tmp_path / "a", RIGHT_A, dfs=(1, 2))
    b = hand_run(tmp_path / "b", RIGHT_B, dfs=(1, 2))
    c = hand_run(tmp_path / "c", RIGHT_A, dfs=(2, 4))
    payload = json.loads(invoke("compare", a, b, c, "--json", "--resamples", 100).stdout)
    rows = [(row["label"], row["df"], row["mcnemar_p"], row["mcnemar_p_holm"]) for row in payload["comparisons"]]
    # DF 2 is the only DF all three share; b: p = 0.125, c: identical to a, p = 1; Holm: 2 · 0.125, then 1
    assert payload["dfs"] == [2]
    assert rows == [("b", 2, pytest.approx(0.125), pytest.approx(0.25)), ("c", 2, 1.0, 1.0)]
    assert "2 tests" in payload["definitions"]["multiple_comparisons"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"protocol": "my.toml"}, "different protocol (lfw-view2 vs my.toml)"),
        ({"pairs_sha": "q" * 64}, f"different pairs sha256 ({'p' * 64} vs {'q' * 64})"),
        ({"images_sha": "j" * 64}, f"different images sha256 ({'i' * 64} vs {'j' * 64})"),  # LFW vs deep-funneled
    ],
)
def test_runs_of_different_protocols_or_pairs_are_refused(tmp_path, change, fragment):
    a, b = hand_run(tmp_path / "a", RIGHT_A), hand_run(tmp_path / "b", RIGHT_B, **change)
    line = one_line_error(invoke("compare", a, b), 2, fragment)
    assert line.startswith(f"Error: {b}: cannot be compared with {a}: different ")


def test_runs_whose_scores_list_other_pairs_are_refused(tmp_path):
    a, b = hand_run(tmp_path / "a", RIGHT_A), hand_run(tmp_path / "b", RIGHT_B)
    scores = pd.read_csv(b / "scores.csv")
    scores.loc[0, "image_b"] = "Z/z.jpg"
    scores.to_csv(b / "scores.csv", index=False)
    one_line_error(invoke("compare", a, b), 2,
                   f"{b}: cannot be compared with {a}: their scores.csv list different pairs")


def test_runs_without_a_common_df_are_refused(tmp_path):
    a, b = hand_run(tmp_path / "a", RIGHT_A, dfs=(1, 2)), hand_run(tmp_path / "b", RIGHT_B, dfs=(4,))
    one_line_error(invoke("compare", a, b), 2, f"no DF common to all runs: {a} has 1, 2; {b} has 4")


def test_one_run_is_refused(tmp_path):
    one_line_error(invoke("compare", hand_run(tmp_path / "a", RIGHT_A)), 2,
                   "RUNS: compare needs at least two run directories, got 1")


def test_without_out_nothing_is_written(tmp_path, monkeypatch):
    a, b = hand_run(tmp_path / "a", RIGHT_A), hand_run(tmp_path / "b", RIGHT_B)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert invoke("compare", a, b, "--json", "--resamples", 50).exit_code == 0
    assert invoke("compare", a, b, "--resamples", 50).exit_code == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_out_holding_other_files_is_refused(tmp_path):
    a, b = hand_run(tmp_path / "a", RIGHT_A), hand_run(tmp_path / "b", RIGHT_B)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_line_error(invoke("compare", a, b, "--out", out), 2,
                   f"--out {out}: holds notes.txt, which lrbench compare did not write")


@pytest.fixture(scope="module")
def two_backbones(synth_data, tmp_path_factory):
    """lbp and an untrained quarter-width SphereFace-4 on the synthetic set, at DFs 1 and 4."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--data", synth_data.lfw_root, "--df", "1,4", "--workers", 1, "--no-cache", "--quiet"]
    lbp = invoke("run", "-b", "lbp", "--out", root / "lbp", *common)
    sphereface = invoke("run", "-b", "sphereface", "--weights", "random", "--option", "depth=4", "--option",
                        "width=0.25", "--out", root / "sphereface", *common)
    assert lbp.exit_code == 0 and sphereface.exit_code == 0, lbp.output + sphereface.output
    return root / "lbp", root / "sphereface"


def test_run_results_carry_identity_bootstrap_intervals(two_backbones):
    run = load_run(two_backbones[0])
    assert "2000 identity-bootstrap resamples (seed 0)" in run.manifest["definitions"]["intervals"]
    for row in run.results.to_dict("records"):
        assert row["accuracy_ci_low"] <= row["accuracy_mean"] <= row["accuracy_ci_high"]
        assert row["auc_ci_low"] <= row["auc"] <= row["auc_ci_high"]
        assert np.isnan(row["tar_at_far_0.01_ci_low"])  # 40 impostor pairs: 0.4 beyond FAR 1e-2, too few
    assert "95% identity-bootstrap interval" in invoke("report", two_backbones[0]).stdout
    strict = json.loads(invoke("report", two_backbones[0], "--json").stdout, parse_constant=pytest.fail)
    assert strict["results"][0]["tar_at_far_0.01_ci_low"] is None  # no interval: null, never NaN


def test_runs_written_before_the_intervals_still_read(two_backbones, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(two_backbones[0], old)
    results = pd.read_csv(old / "results.csv")
    results.drop(columns=[c for c in results if "_ci_" in c]).to_csv(old / "results.csv", index=False)
    assert "_ci_" not in " ".join(load_run(old).results.columns)
    assert invoke("report", old).exit_code == 0


def test_a_comparison_written_again_with_png_only_removes_the_earlier_vector_copies(
    two_backbones, tmp_path, vector_figures, monkeypatch
):
    out = tmp_path / "cmp"
    assert invoke("compare", *two_backbones, "--out", out, "--resamples", 50).exit_code == 0
    monkeypatch.setenv("LRBENCH_FIGURE_FORMATS", "png")
    assert invoke("compare", *two_backbones, "--out", out, "--resamples", 50).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json", "delta_accuracy.png"]


def test_compare_two_backbones_end_to_end(two_backbones, tmp_path, vector_figures):
    lbp, sphereface = two_backbones
    out = tmp_path / "cmp"
    result = invoke("compare", lbp, sphereface, "--out", out, "--resamples", 300, "--seed", 5)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(COMPARE_FILES)
    payload = json.loads((out / "compare.json").read_text())
    assert [row["df"] for row in payload["comparisons"]] == [1, 4]
    assert (payload["resamples"], payload["seed"]) == (300, 5)
    # the counts are those of each run's decisions from its own folds.csv thresholds
    base, other = load_run(lbp), load_run(sphereface)
    for row in payload["comparisons"]:
        right = []
        for run in (base, other):
            scores = run.scores[run.scores["df"] == row["df"]].sort_values("pair")
            thresholds = run.folds[run.folds["df"] == row["df"]].set_index("fold")["threshold"]
            right.append((scores["score"].to_numpy() > thresholds[scores["fold"]].to_numpy()) == scores["same"])
        assert row["only_base_right"] == int((right[0] & ~right[1]).sum())
        assert row["only_run_right"] == int((~right[0] & right[1]).sum())
        assert row["accuracy_base"] == pytest.approx(base.results.set_index("df").loc[row["df"], "accuracy_mean"])
    assert "data:image/png;base64," in (out / "compare.html").read_text()
    assert "b / c" in result.stdout and "p Holm" in result.stdout
    again = invoke("compare", lbp, sphereface, "--out", out, "--resamples", 300, "--seed", 5, "--json")
    assert json.loads(again.stdout) == payload  # seeded, and an earlier comparison's folder may be reused
