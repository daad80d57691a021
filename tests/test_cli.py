import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from lrbench import registry
from lrbench.cli import cli
from lrbench.metrics import naive_seed_fold_accuracies


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def data(synth_data, tmp_path):
    """A private copy of the synthetic set that a test may damage."""
    root = tmp_path / "lfw"
    shutil.copytree(synth_data.lfw_root, root)
    return root


def run_args(root, out, *extra):
    return ["run", "--backbone", "lbp", "--data", root, "--out", out, "--workers", 1, *extra]


def test_run_writes_a_complete_run_directory(data, tmp_path):
    out = tmp_path / "run"
    result = invoke(*run_args(data, out, "--df", "1,4,8", "--json"))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [row["df"] for row in payload["results"]] == [1, 4, 8]
    assert [row["probe_px"] for row in payload["results"]] == ["96×112", "24×28", "12×14"]
    expected = {
        "manifest.json",
        "results.csv",
        "folds.csv",
        "roc.csv",
        "scores.csv",
        "roc.png",
        "accuracy_vs_resolution.png",
        "report.html",
    }
    assert expected <= {p.name for p in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["definitions"]) >= {"score", "threshold", "flip_fusion", "spread"}
    assert manifest["data"]["pairs"] == 80 and manifest["settings"]["dfs"] == [1, 4, 8]
    assert manifest["command"].startswith("lrbench run")
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2
    assert not list(tmp_path.glob(".run.tmp-*"))


def test_reported_accuracy_equals_the_seed_rule_on_the_written_scores(data, tmp_path):
    out = tmp_path / "run"
    assert invoke(*run_args(data, out, "--df", "1,8", "--threshold-rule", "grid")).exit_code == 0
    scores, folds = pd.read_csv(out / "scores.csv"), pd.read_csv(out / "folds.csv")
    for df, table in scores.groupby("df"):
        naive = naive_seed_fold_accuracies(
            table["score"].to_numpy(), table["same"].to_numpy() == 1, table["fold"].to_numpy()
        )
        np.testing.assert_allclose(folds[folds["df"] == df]["accuracy"], naive)


def test_probe_mode_and_second_run_uses_the_crop_cache(data, tmp_path):
    first = invoke(*run_args(data, tmp_path / "a", "--df", "1,6", "--mode", "probe"))
    second = invoke(*run_args(data, tmp_path / "b", "--df", "1,6", "--mode", "probe"))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text()) for name in "ab"]
    assert [m["data"]["crop_cache"]["hit"] for m in manifests] == [False, True]
    a, b = (pd.read_csv(tmp_path / name / "results.csv") for name in "ab")
    pd.testing.assert_frame_equal(a, b)
    assert manifests[0]["degradation"]["mode"] == "probe"


def test_report_rerenders_and_overlays(data, tmp_path):
    assert invoke(*run_args(data, tmp_path / "a", "--df", "1,8")).exit_code == 0
    assert invoke(*run_args(data, tmp_path / "b", "--df", "1,8", "--degradation", "seed")).exit_code == 0
    (tmp_path / "a" / "report.html").unlink()
    single = invoke("report", tmp_path / "a")
    assert single.exit_code == 0 and (tmp_path / "a" / "report.html").is_file()
    overlay = invoke("report", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp", "--json")
    assert overlay.exit_code == 0, overlay.output
    assert len(json.loads(overlay.stdout)) == 2
    assert {"roc.png", "accuracy_vs_resolution.png", "report.html"} <= {
        p.name for p in (tmp_path / "cmp").iterdir()
    }


def one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_images_are_listed(data, tmp_path):
    victim = next(data.glob("images/*/*.jpg"))
    victim.unlink()
    result = invoke(*run_args(data, tmp_path / "out"))
    one_line_error(result, 1, "missing under", victim.name, "1 of")
    assert not (tmp_path / "out").exists()


def test_corrupt_image_is_named(data, tmp_path):
    victim = sorted(data.glob("images/*/*.jpg"))[0]
    victim.write_bytes(b"not a jpeg at all")
    one_line_error(invoke(*run_args(data, tmp_path / "out")), 1, "cannot decode image", victim.name)
    assert not (tmp_path / "out").exists()


def test_malformed_pairs_line_is_named(data, tmp_path):
    lines = (data / "pairs.txt").read_text().splitlines()
    lines[5] = lines[5] + "\textra"
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    one_line_error(invoke(*run_args(data, tmp_path / "out")), 1, "pairs.txt:6", "expected")


def test_pairs_reaching_outside_the_root_are_refused(data, tmp_path):
    lines = (data / "pairs.txt").read_text().splitlines()
    lines[1] = "../../x\t1\t2"
    (data / "pairs.txt").write_text("\n".join(lines) + "\n")
    one_line_error(invoke(*run_args(data, tmp_path / "out")), 1, "pairs.txt:2", "outside the data root")


def test_malformed_landmark_line_is_named(data, tmp_path):
    lines = (data / "landmarks.txt").read_text().splitlines()
    lines[2] = lines[2].rsplit("\t", 1)[0]
    (data / "landmarks.txt").write_text("\n".join(lines) + "\n")
    one_line_error(invoke(*run_args(data, tmp_path / "out")), 1, "landmarks.txt:3", "10 coordinates")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--backbone", "nope"], ["unknown backbone 'nope'; available:", "lbp"]),
        (["--degradation", "nope"], ["unknown degradation 'nope'; available:", "bicubic"]),
        (["--protocol", "nope"], ["unknown protocol 'nope'; available:", "lfw-view2"]),
        (["--df", "0"], ["--df 0", "at least 1"]),
        (["--df", "99"], ["--df 99", "larger than"]),
        (["--device", "cuda:7"], ["--device cuda:7"]),
    ],
)
def test_usage_errors_exit_2(data, tmp_path, args, fragments):
    one_line_error(invoke(*run_args(data, tmp_path / "out"), *args), 2, *fragments)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = invoke(*run_args(data, out))
    assert result.exit_code == 2 and "already exists" in result.output
    assert (out / "keep.txt").read_text() == "precious"


def test_list_and_version():
    listing = invoke("list", "backbones", "--json")
    assert listing.exit_code == 0
    assert json.loads(listing.stdout)["backbone"]["lbp"]["score"] == "cosine"
    version = invoke("--version")
    assert version.exit_code == 0 and "lrbench" in version.output


def test_embed_writes_features_per_df(data, tmp_path):
    out = tmp_path / "feats.npz"
    result = invoke("embed", "-b", "lbp", "--data", data, "--df", "1,8", "--out", out, "--fusion", "none")
    assert result.exit_code == 0, result.output
    arrays = np.load(out)
    assert arrays["dfs"].tolist() == [1, 8]
    assert arrays["features_df1"].shape == (len(arrays["images"]), 3776)
    assert not np.allclose(arrays["features_df1"], arrays["features_df8"])
    assert json.loads(str(arrays["manifest"]))["backbone"] == "lbp"


def test_seed_preset_sets_the_seed_choices_unless_given(data, tmp_path):
    assert invoke(*run_args(data, tmp_path / "a", "--preset", "seed")).exit_code == 0
    assert invoke(*run_args(data, tmp_path / "b", "--preset", "seed", "--degradation", "bicubic")).exit_code == 0
    seed, explicit = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in "ab")
    assert seed["degradation"]["name"] == "seed" and seed["settings"]["threshold_rule"] == "grid"
    assert seed["settings"]["fusion"] == "concat" and seed["degradation"]["mode"] == "both"
    assert explicit["degradation"]["name"] == "bicubic" and explicit["settings"]["threshold_rule"] == "grid"


def test_bf16_gives_nearly_the_fp32_accuracy(data, tmp_path):
    assert invoke(*run_args(data, tmp_path / "a", "--df", "2")).exit_code == 0
    assert invoke(*run_args(data, tmp_path / "b", "--df", "2", "--precision", "bf16")).exit_code == 0
    a, b = (pd.read_csv(tmp_path / n / "scores.csv")["score"] for n in "ab")
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_weights_that_give_nan_features_are_one_clear_error(data, tmp_path):
    state = registry.backbone("sphereface").build("random", depth=4).state_dict()
    state["fc5.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    result = invoke("run", "-b", "sphereface", "--weights", tmp_path / "nan.pt", "--option", "depth=4",
                    "--data", data, "--out", tmp_path / "out")
    one_line_error(result, 1, "features at DF 1: NaN or infinite values under --precision fp32")
    assert not (tmp_path / "out").exists()


def test_random_weights_run_with_a_warning_and_missing_weights_are_a_usage_error(data, tmp_path):
    result = invoke("run", "-b", "sphereface", "--weights", "random", "--data", data, "--out", tmp_path / "r",
                    "--option", "depth=4", "--json")
    assert result.exit_code == 0, result.output
    assert "untrained" in result.stderr
    assert json.loads(result.stdout)["results"][0]["df"] == 1
    one_line_error(invoke("run", "-b", "sphereface", "--data", data, "--out", tmp_path / "s"), 2, "needs --weights")
    one_line_error(invoke("run", "-b", "sphereface", "--weights", "random", "--option", "depth=7", "--data", data,
                          "--out", tmp_path / "t"), 2, "depth 7")


def test_report_folds_reports_one_fold_thresholded_on_the_others(data, tmp_path):
    result = invoke(*run_args(data, tmp_path / "run", "--report-folds", "1", "--json"))
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["results"][0]
    assert row["pairs"] == 8 and row["accuracy_std"] == 0.0
    folds = pd.read_csv(tmp_path / "run" / "folds.csv")
    assert folds["fold"].tolist() == [1]
    shown = invoke("report", tmp_path / "run").output
    assert f"{100 * row['accuracy_mean']:.2f}" in shown and "±" not in shown  # no spread over a single fold
    one_line_error(invoke(*run_args(data, tmp_path / "bad", "--report-folds", "11")), 2, "--report-folds 11")
