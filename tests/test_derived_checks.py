"""results.csv, folds.csv and roc.csv are derived from scores.csv: every reader (report, overlay, compare, the
results table) recomputes them and refuses a run whose files do not follow, naming the file, row and values."""

import pandas as pd
import pytest
from cli_helpers import invoke, one_line_error

from lrbench.errors import DataError
from lrbench.eval.engine import EvalSettings, evaluate
from lrbench.report.results import FOLDS, RESULTS, load_run, write_run


@pytest.fixture(scope="module")
def run_dir(synth_data, tmp_path_factory):
    run = evaluate(EvalSettings(backbone="lbp", data=synth_data.lfw_images, pairs=synth_data.pairs, dfs="1,4",
                                aligned=True, workers=1, show_progress="off", cache_dir=None))
    return write_run(run, tmp_path_factory.mktemp("runs") / "lbp")


def _edited(run_dir, tmp_path, name, row, column, value):
    copy = tmp_path / "edited"
    copy.mkdir()
    for file in run_dir.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    table = pd.read_csv(copy / name)
    table.loc[row, column] = value
    table.to_csv(copy / name, index=False)
    return copy


def test_an_untouched_run_reads_back(run_dir):
    assert sorted(load_run(run_dir).recomputed) == [1, 4]


def test_an_edited_accuracy_is_refused_naming_the_file_row_and_both_values(run_dir, tmp_path):
    stored = pd.read_csv(run_dir / RESULTS).loc[0, "accuracy_mean"]
    edited = _edited(run_dir, tmp_path, RESULTS, 0, "accuracy_mean", 0.999)
    with pytest.raises(DataError) as caught:
        load_run(edited)
    message = str(caught.value)
    assert message.startswith(f"{edited / RESULTS}: DF 1 accuracy_mean is 0.999, but ") and f"{stored:.10g}" in message


def test_an_edited_fold_threshold_is_refused(run_dir, tmp_path):
    edited = _edited(run_dir, tmp_path, FOLDS, 3, "threshold", 12.5)
    with pytest.raises(DataError, match=rf"{FOLDS}: DF 1 fold 4 threshold is 12\.5, but "):
        load_run(edited)


@pytest.mark.parametrize("command", [("report",), ("report", "OTHER", "--out", "OUT"), ("compare", "OTHER")])
def test_every_reader_refuses_an_edited_results_csv(run_dir, tmp_path, command):
    edited = _edited(run_dir, tmp_path, RESULTS, 1, "auc", 0.5)
    args = [{"OTHER": run_dir, "OUT": tmp_path / "overlay"}.get(part, part) for part in command]
    result = invoke(args[0], edited, *args[1:])
    one_line_error(result, DataError.exit_code, f"{edited / RESULTS}: DF 4 auc is 0.5, but")


def test_a_tar_below_one_impostor_pair_is_not_measured_anywhere(run_dir):
    from lrbench.report.render import console_table, results_html, results_json

    run = load_run(run_dir)  # synth: 10 folds × 4 impostor pairs; 1 % of 40 is 0.4 of a pair
    assert run.results["tar_at_far_0.01"].isna().all() and run.results["tar_at_far_0.001"].isna().all()
    assert ",," in (run_dir / RESULTS).read_text().splitlines()[1], "an empty cell in results.csv"
    import json

    assert json.loads(results_json([run]))["results"][0]["tar_at_far_0.01"] is None
    html = results_html(run)
    assert "n/a" in html
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(console_table(run))
    text = console.export_text()
    assert "n/a" in text and "not measured: it would rest on 0.4 of 40 impostor pairs, less than one" in " ".join(
        text.split())


def test_the_mean_embedding_norm_per_df_is_recorded_and_shown(run_dir):
    run = load_run(run_dir)
    norms = run.results.set_index("df")["embedding_norm"]
    assert (norms > 0).all() and list(norms.index) == [1, 4]
    assert "embedding_norm" in run.manifest["columns"][RESULTS]


def test_the_embedding_norm_is_the_mean_norm_of_the_unmirrored_network_output():
    import numpy as np
    import torch

    from lrbench import InputSpec, SPHEREFACE_96x112
    from lrbench.eval.engine import FeatureExtractor

    class Brightness(torch.nn.Module):
        """A 2-d embedding (mean, 0) of each image: its norm is the image's mean value, mirrored or not."""

        def forward(self, x):
            return torch.stack([x.mean(dim=(1, 2, 3)), torch.zeros(len(x))], dim=1)

    crops = np.stack([np.full((112, 96, 3), value, np.uint8) for value in (10, 30)])
    spec = InputSpec(SPHEREFACE_96x112, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    extractor = FeatureExtractor(Brightness(), crops, spec, lambda batch, df: batch, "concat", 2,
                                 torch.device("cpu"), show_progress=False)
    extractor.features(1, np.arange(2))
    assert extractor.embedding_norm(1) == pytest.approx(20.0)


def test_a_run_written_before_holds_an_unmeasurable_tar_and_still_reads_without_it(run_dir, tmp_path):
    edited = _edited(run_dir, tmp_path, RESULTS, 0, "tar_at_far_0.01", 0.25)  # what older lrbench wrote there
    run = load_run(edited)
    assert run.results["tar_at_far_0.01"].isna().all()
