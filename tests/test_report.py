"""Reports a researcher can publish: units on every column, the figures' axes, ticks and legends, how many
impostor pairs a TAR@FAR rests on, the HTML as the record of a run, overlays, and an 80-column console."""

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.collections import PolyCollection

from lrbench.cli import cli
from lrbench.report.metrics import evaluate_verification
from lrbench.report.render import accuracy_figure, render, render_into, roc_figure, run_labels
from lrbench.report.results import OVERLAY_CSV, REPORT_FILES, RESULT_COLUMNS, RESULTS, RunData, load_run, write_run

LONG_LABEL = "SphereFace-20 student distilled at DF 8 from the CASIA teacher, epoch 30 of run seven"


def invoke(*args, **env):
    return CliRunner(env=env).invoke(cli, [str(a) for a in args])


def fake_run(dfs=range(1, 15), label="model", pairs_sha="a" * 64, backbone="lbp", seed=0) -> RunData:
    """A run of 10 folds × 40 pairs (200 impostors) at ``dfs``, shaped as lrbench writes it: made-up scores that
    separate less at larger DFs, and every number of results, folds and ROC computed from them, as readers check."""
    rng = np.random.default_rng(seed)
    same = np.tile([1, 0], 200)
    folds = np.repeat(np.arange(1, 11), 40)
    results, fold_rows, roc_rows, score_tables = [], [], [], []
    for df in dfs:
        w, h = 96 // df, 112 // df
        score = np.round(rng.normal(same * 2.5 / df, 1.0), 6)
        result = evaluate_verification(score, same.astype(bool), folds)
        results.append({
            "df": df, "probe_w": w, "probe_h": h, "probe_px": f"{w}×{h}", "interocular_px": round(35.24 * w / 96, 2),
            "accuracy_mean": result.accuracy_mean, "accuracy_std": result.accuracy_std,
            "accuracy_sem": result.accuracy_sem, "auc": result.auc, "eer": result.eer,
            **{f"tar_at_far_{far:g}": tar for far, tar in result.tar_at_far.items()}, "pairs": 400,
            "accuracy_ci_low": result.accuracy_mean - 0.02, "accuracy_ci_high": result.accuracy_mean + 0.02,
            "auc_ci_low": 0.5, "auc_ci_high": 0.99, "tar_at_far_0.001_ci_low": np.nan,
            "tar_at_far_0.001_ci_high": np.nan, "tar_at_far_0.01_ci_low": np.nan, "tar_at_far_0.01_ci_high": np.nan,
        })
        fold_rows += [{"df": df, "fold": int(fold), "accuracy": accuracy, "threshold": threshold}
                      for fold, accuracy, threshold in zip(result.fold_ids, result.fold_accuracy,
                                                           result.fold_threshold)]
        roc_rows += [{"df": df, "fpr": f, "tpr": t} for f, t in zip(result.roc_fpr, result.roc_tpr)]
        score_tables.append(pd.DataFrame({"pair": np.arange(400), "fold": folds, "same": same, "image_a": "a/1.jpg",
                                          "image_b": "b/1.jpg", "df": df, "score": score}))
    manifest = {
        "backbone": backbone, "protocol": "lfw-view2", "label": label,
        "degradation": {"name": "bicubic", "mode": "both", "description": "down and up again"},
        "settings": {"data": "/data/lfw", "device": "cpu", "fusion": "concat", "precision": "fp32"},
        "data": {"pairs_sha256": pairs_sha, "images_sha256": "b" * 64, "landmarks_sha256": "c" * 64, "pairs": 400},
        "input": {"template": "sphereface-96x112", "crop_size": [96, 112], "mean": [0.5, 0.5, 0.5]},
        "weights": {"value": "w.pth", "file": "/models/w.pth", "sha256": "d" * 64},
        "versions": {"lrbench": "0.1.0", "torch": "2.x"},
        "timings": {"features_s": 12.5, "metrics_s": 0.5},
        "command": "lrbench run -b lbp --data /data/lfw",
        "definitions": {"score": "cosine"},
    }
    return RunData(manifest, pd.DataFrame(results), pd.DataFrame(fold_rows), pd.DataFrame(roc_rows),
                   pd.concat(score_tables))


@pytest.fixture
def run_dirs(tmp_path):
    """Two run directories on the same data, one on other pairs."""
    paths = {}
    for name, sha, seed in (("base", "a" * 64, 0), ("student", "a" * 64, 1), ("other", "e" * 64, 2)):
        paths[name] = write_run(fake_run(dfs=[1, 4, 8], label="lbp", pairs_sha=sha, seed=seed), tmp_path / name)
    return paths


# -- units ------------------------------------------------------------------------------------------------


def test_html_labels_every_rate_with_its_unit_and_shows_percent(tmp_path):
    run = fake_run(dfs=[1, 2])
    render([run], tmp_path)
    page = (tmp_path / "report.html").read_text()
    for header in ("accuracy %", "EER %", "AUC (0–1)", "interocular px", "TAR % at FAR 0.1 %"):
        assert f"<th>{header}" in page, header
    eer = run.results["eer"].iloc[0]
    assert f"<td>{100 * eer:.2f}</td>" in page and f"<td>{eer:.4f}</td>" not in page  # a fraction shown as %


def test_results_csv_keeps_fractions_and_the_manifest_names_each_columns_unit(tmp_path):
    run = fake_run(dfs=[1])
    out = write_run(run, tmp_path / "run")
    header = (out / RESULTS).read_text().splitlines()[0].split(",")
    columns = json.loads((out / "manifest.json").read_text())["columns"][RESULTS]
    assert set(header) <= set(columns) == set(RESULT_COLUMNS)
    assert columns["eer"]["unit"] == "fraction 0–1" and columns["interocular_px"]["unit"] == "px"
    assert load_run(out).results["eer"].iloc[0] == pytest.approx(run.results["eer"].iloc[0])


# -- figures ----------------------------------------------------------------------------------------------


def test_roc_starts_at_one_over_the_impostor_pairs_and_marks_that_floor():
    run = fake_run(dfs=[1, 8])
    ax = roc_figure([run]).axes[0]
    assert ax.get_xlim()[0] == pytest.approx(1 / 200)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    first = run.results.iloc[0]
    assert legend[0] == f"DF 1 (96×112) AUC {first['auc']:.3f} EER {100 * first['eer']:.1f} %"
    assert "smallest non-zero FAR: 1/200 impostor pairs" in legend


def test_roc_legend_sits_beside_the_curves_not_on_them():
    fig = roc_figure([fake_run(dfs=[1, 2, 4, 8, 12]), fake_run(dfs=[1, 8], label="other")])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent(renderer).x0 > ax.get_window_extent(renderer).x1


def contrast_with_white(colour) -> float:
    """WCAG 2 contrast ratio of an RGB colour (0-1) against white."""
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in colour[:3]]
    return 1.05 / (0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] + 0.05)


def test_roc_colours_stay_visible_on_white():
    lines = roc_figure([fake_run(dfs=list(range(1, 13)))]).axes[0].get_lines()
    curves = [line for line in lines if line.get_linestyle() == "-"]
    assert len(curves) == 5 and min(contrast_with_white(line.get_color()) for line in curves) > 2


def test_accuracy_tick_labels_never_overlap_and_show_probe_interocular_px_and_df():
    fig = accuracy_figure([fake_run(dfs=list(range(1, 15)))])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [label for label in fig.axes[0].get_xticklabels() if label.get_text()]
    boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda box: box.x0)
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:]))
    assert "96×112\n35.2 px\nDF 1" in [label.get_text() for label in labels]
    assert len(labels) >= 6  # thinned, not emptied


def test_accuracy_axis_has_a_fixed_floor_a_chance_line_and_a_title_naming_what_was_run():
    ax = accuracy_figure([fake_run(dfs=[1, 2])]).axes[0]  # accuracies 95 % and 75 %: no zoom into 70-100
    assert ax.get_ylim() == (45, 100.5)
    assert any(list(line.get_ydata()) == [50, 50] for line in ax.get_lines())
    assert ax.get_title() == "Accuracy vs resolution · lfw (lfw-view2) · bicubic · degraded: both"


def test_a_long_run_label_wraps_in_the_legend_instead_of_squeezing_the_axes():
    label = "one student: DF 1,2,4,6,8-13, mixed kernels, fused targets, RKD 0.3, 8 epochs (10-fold cross-validation)"
    runs = [fake_run(dfs=[1, 4, 8]), fake_run(dfs=[1, 4, 8], label=label, seed=1)]
    for figure in (accuracy_figure, roc_figure):
        fig = figure(runs)
        fig.canvas.draw()
        assert fig.axes[0].get_position().width > 0.45, figure.__name__  # of the figure's width
        texts = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        assert any(label.split()[0] in text and "\n" in text for text in texts)
        assert max(len(line) for text in texts for line in text.splitlines()) <= 44
        plt.close(fig)


def test_accuracy_figure_draws_the_run_intervals_as_a_band():
    run = fake_run(dfs=[1, 2])
    ax = accuracy_figure([run]).axes[0]
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]  # fill_between: accuracy ± 2 points
    ends = sorted(100 * accuracy + delta for accuracy in run.results["accuracy_mean"] for delta in (-2, 2))
    assert sorted(set(band.get_paths()[0].vertices[:, 1])) == pytest.approx(ends)
    assert "band: 95 %" in ax.get_ylabel()


def test_overlay_titles_name_what_the_runs_share():
    seed = fake_run(dfs=[1, 2])
    seed.manifest["degradation"]["name"] = "seed"
    ax = accuracy_figure([fake_run(dfs=[1, 2]), seed]).axes[0]
    assert ax.get_title() == "Accuracy vs resolution · lfw (lfw-view2) · degraded: both"


def test_figures_are_saved_as_png_pdf_and_svg(tmp_path, vector_figures):
    render([fake_run(dfs=[1, 2])], tmp_path)
    assert {"roc.pdf", "roc.svg", "accuracy_vs_resolution.pdf", "accuracy_vs_resolution.svg"} <= set(REPORT_FILES)
    assert (tmp_path / "roc.pdf").read_bytes().startswith(b"%PDF")
    assert "<svg" in (tmp_path / "accuracy_vs_resolution.svg").read_text()


def test_lrbench_figure_formats_chooses_the_copies_and_a_render_removes_the_ones_not_chosen(
    tmp_path, vector_figures, monkeypatch
):
    render_into([fake_run(dfs=[1, 2])], tmp_path)
    assert (tmp_path / "roc.pdf").is_file() and (tmp_path / "roc.svg").is_file()
    monkeypatch.setenv("LRBENCH_FIGURE_FORMATS", "png,svg")
    render_into([fake_run(dfs=[1, 2])], tmp_path)
    figures = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".html")
    assert figures == ["accuracy_vs_resolution.png", "accuracy_vs_resolution.svg", "roc.png", "roc.svg"]
    monkeypatch.setenv("LRBENCH_FIGURE_FORMATS", "png,jpg")
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "$LRBENCH_FIGURE_FORMATS=png,jpg: jpg is not one of png, pdf, svg" in result.output


# -- uncertainty and the record of the run ----------------------------------------------------------------


def test_report_says_how_many_impostor_pairs_each_tar_rests_on(tmp_path):
    render([fake_run(dfs=[1])], tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "TAR at FAR 0.1 %: n/a, not measured: it would rest on 0.2 of 200 impostor pairs, less than one" in page
    assert "TAR at FAR 1 % rests on 2 of 200 impostor pairs (fewer than 10: no interval" in page


def test_html_shows_input_spec_and_weights_as_tables_with_device_versions_timings_and_command(tmp_path):
    render([fake_run(dfs=[1])], tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert '{"template"' not in page and '"sha256"' not in page  # no raw JSON
    for fact in ("<th>template</th><td class='text'>sphereface-96x112", "<th>crop_size</th><td class='text'>96, 112",
                 "<th>file</th><td class='text'>/models/w.pth", "<th>device</th><td class='text'>cpu · fp32",
                 "<th>torch</th><td class='text'>2.x", "<th>features_s</th><td class='text'>12.5",
                 "<th>command</th><td class='text'>lrbench run -b lbp", "<th>written</th>"):
        assert fact in page, fact


# -- overlays ---------------------------------------------------------------------------------------------


def test_overlay_of_runs_on_different_data_is_refused_in_one_line(run_dirs, tmp_path):
    out = tmp_path / "overlay"
    result = invoke("report", run_dirs["base"], run_dirs["other"], "--out", out)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {run_dirs['other']}: evaluated on other data"), lines
    assert "pairs sha256 aaaaaaaaaaaa vs eeeeeeeeeeee" in lines[0] and "--allow-different-data" in lines[0]
    assert not out.exists()


def test_the_refusal_names_the_run_whose_data_differ_from_the_first(run_dirs):
    result = invoke("report", run_dirs["base"], run_dirs["student"], run_dirs["other"], "--json")
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {run_dirs['other']}: evaluated on other data")


def test_allowed_overlay_of_different_data_says_so_on_the_figures_and_the_page(run_dirs, tmp_path):
    out = tmp_path / "overlay"
    result = invoke("report", run_dirs["base"], run_dirs["other"], "--out", out, "--allow-different-data")
    assert result.exit_code == 0, result.output
    assert "overlaying runs on different data: pairs sha256" in result.stderr
    assert "NOTE: runs on DIFFERENT data (pairs sha256" in (out / "report.html").read_text()
    runs = [load_run(run_dirs["base"]), load_run(run_dirs["other"])]  # figures draw text as paths: ask them
    for figure in (roc_figure, accuracy_figure):
        assert "NOTE: runs on DIFFERENT data (pairs sha256 x vs y)" in figure(runs, ["pairs sha256 x vs y"]).axes[
            0].get_title()


def test_overlay_labels_tell_runs_of_one_label_apart_and_the_csv_holds_both(run_dirs, tmp_path):
    out = tmp_path / "overlay"
    assert invoke("report", run_dirs["base"], run_dirs["student"], "--out", out).exit_code == 0
    overlay = pd.read_csv(out / OVERLAY_CSV)
    assert sorted(overlay["label"].unique()) == ["lbp (base)", "lbp (student)"]
    assert list(overlay.columns[:3]) == ["label", "run", "df"] and len(overlay) == 6
    page = (out / "report.html").read_text()
    assert "<h2>Side by side</h2>" in page and "<tr class='differs'><td>run directory</td>" in page


def test_run_labels_prefer_the_weights_file_to_tell_runs_apart():
    a, b = fake_run(dfs=[1]), fake_run(dfs=[1])
    b.manifest["weights"] = {"file": "/models/student.pth"}
    assert run_labels([a, b]) == ["model (w.pth)", "model (student.pth)"]


def test_report_json_of_an_overlay_without_out_writes_nothing(run_dirs, tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    result = invoke("report", run_dirs["base"], run_dirs["student"], "--json")
    assert result.exit_code == 0, result.output
    assert [run["label"] for run in json.loads(result.stdout)] == ["lbp", "lbp"]
    assert list(here.iterdir()) == []


# -- console ----------------------------------------------------------------------------------------------


def test_results_table_cuts_no_number_or_name_at_80_columns(tmp_path):
    out = write_run(fake_run(dfs=[1, 4, 8, 12], label=LONG_LABEL), tmp_path / "run")
    result = invoke("report", out, COLUMNS="80")
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    words = result.stdout.split()
    for word in LONG_LABEL.split():
        assert word in words, word
    for row in load_run(out).results.to_dict("records"):
        for number in (f"{100 * row['accuracy_mean']:.2f}", f"±{100 * row['accuracy_std']:.2f}", f"{row['auc']:.4f}",
                       f"{100 * row['eer']:.2f}", f"{100 * row['tar_at_far_0.01']:.2f}", row["probe_px"]):
            assert re.search(rf"(^|\s){re.escape(number)}(\s|$)", result.stdout, re.MULTILINE), number


def test_overlay_side_by_side_wraps_long_paths_inside_the_page(tmp_path):
    """A run directory's path has no space to break at: the table cells may break it anywhere, so the
    side-by-side table stays within the page's width instead of overflowing it."""
    deep = tmp_path / ("a_rather_long_folder_name_without_any_space_" * 4)
    runs = [write_run(fake_run(dfs=[1], label=label, seed=seed), deep / label) for seed, label in enumerate("xy")]
    out = tmp_path / "overlay"
    assert invoke("report", *runs, "--out", out).exit_code == 0
    page = (out / "report.html").read_text()
    style = re.search(r"<style>(.*?)</style>", page).group(1)
    rules = dict(rule.rstrip("}").split("{") for rule in style.split("}") if "{" in rule)
    wrapping = [selector for selector, body in rules.items() if "overflow-wrap:anywhere" in body]
    assert wrapping and {"td", "th"} <= set(wrapping[0].split(","))
    assert "max-width:1100px" in rules["body"]
    assert f"<td>{runs[0]}</td>" in page  # the long path is in a cell of the side-by-side table
