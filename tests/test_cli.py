import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke, one_line_error

from lrbench import registry
from lrbench.data.crops import images_digest
from lrbench.report.metrics import naive_seed_fold_accuracies


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
    pair_set = registry.protocol("lfw-view2").load(data, None)
    assert manifest["data"]["images_sha256"] == images_digest(pair_set.root, pair_set.images)  # the faces seen
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
    # a cache of its own: the session's shared one may hold these crops already (it is keyed on content)
    cache = ["--cache-dir", tmp_path / "cache"]
    first = invoke(*run_args(data, tmp_path / "a", "--df", "1,6", "--mode", "probe", *cache))
    second = invoke(*run_args(data, tmp_path / "b", "--df", "1,6", "--mode", "probe", *cache))
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
    assert json.loads(listing.stdout)["backbones"]["lbp"]["score"] == "cosine"
    version = invoke("--version")
    assert version.exit_code == 0 and "lrbench" in version.output


def test_list_json_has_a_key_per_kind_and_the_full_input_spec():
    listing = json.loads(invoke("list", "--json").stdout)
    assert {"backbones", "degradations", "protocols", "trainers", "detectors"} <= listing.keys()
    sphereface = listing["backbones"]["sphereface"]["input"]
    assert sphereface["crop_size"] == [96, 112] and sphereface["channel_order"] == "BGR"
    assert sphereface["mean"] == [127.5, 127.5, 127.5] and len(sphereface["template_points"]) == 5


def test_a_piped_listing_in_a_narrow_terminal_cuts_no_name(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    listing = invoke("list", "backbones")
    names = json.loads(invoke("list", "backbones", "--json").stdout)["backbones"]
    truncated = [line for line in listing.stdout.splitlines() if re.search(r"…\s*│", line)]  # "0…255" is text
    assert listing.exit_code == 0 and not truncated, truncated
    assert max(len(line) for line in listing.stdout.splitlines()) <= 60
    values = [line.split("│")[2] for line in listing.stdout.splitlines() if line.count("│") == 3]
    joined = "".join("".join(value.split()) for value in values)  # a long value folds onto the next lines
    for name, info in names.items():
        assert f"│ {name} " in listing.stdout
        assert "".join(info["description"].split()) in joined


def test_embed_writes_features_per_df(data, tmp_path):
    out = tmp_path / "feats.npz"
    result = invoke("embed", "-b", "lbp", "--data", data, "--df", "1,8", "--out", out, "--fusion", "none")
    assert result.exit_code == 0, result.output
    arrays = np.load(out)
    assert arrays["dfs"].tolist() == [1, 8]
    assert arrays["features_df1"].shape == (len(arrays["images"]), 3776)
    assert not np.allclose(arrays["features_df1"], arrays["features_df8"])
    assert json.loads(str(arrays["manifest"]))["backbone"] == "lbp"


def sphereface_args(root, out, *extra):
    """An untrained SphereFace-4 at a quarter width: a real convolutional network that runs in seconds."""
    network = ["-b", "sphereface", "--weights", "random", "--option", "depth=4", "--option", "width=0.25"]
    return ["run", *network, "--data", root, "--out", out, "--workers", 1, *extra]


def test_seed_preset_evaluates_as_the_seed_did_unless_options_are_given(data, tmp_path):
    assert invoke(*sphereface_args(data, tmp_path / "seed", "--preset", "seed")).exit_code == 0
    same_choices = ["--degradation", "seed", "--fusion", "concat", "--threshold-rule", "grid"]
    assert invoke(*sphereface_args(data, tmp_path / "plain", *same_choices)).exit_code == 0
    mixed_args = sphereface_args(data, tmp_path / "mixed", "--preset", "seed", "--degradation", "bicubic")
    assert invoke(*mixed_args).exit_code == 0
    seed, plain, mixed = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("seed", "plain", "mixed"))
    assert (seed["degradation"]["name"], seed["degradation"]["mode"]) == ("seed", "both")
    assert (seed["settings"]["fusion"], seed["settings"]["threshold_rule"]) == ("concat", "grid")
    # SphereFace's seed input is (x - 127.5) / 127.5 in BGR, as in the seed's code; lrbench's own divides by 128
    assert [seed["input"][key] for key in ("channel_order", "mean", "std")] == ["BGR", [127.5] * 3, [127.5] * 3]
    assert plain["input"]["std"] == [128.0] * 3
    seed_scores, plain_scores = (pd.read_csv(tmp_path / n / "scores.csv")["score"] for n in ("seed", "plain"))
    assert not np.allclose(seed_scores, plain_scores, rtol=0, atol=1e-6)  # the seed normalisation really ran
    assert mixed["degradation"]["name"] == "bicubic" and mixed["settings"]["threshold_rule"] == "grid"


def test_bf16_gives_nearly_the_fp32_accuracy_from_different_arithmetic(data, tmp_path):
    assert invoke(*sphereface_args(data, tmp_path / "fp32", "--df", "1,6")).exit_code == 0
    assert invoke(*sphereface_args(data, tmp_path / "bf16", "--df", "1,6", "--precision", "bf16")).exit_code == 0
    fp32, bf16 = (pd.read_csv(tmp_path / n / "scores.csv")["score"] for n in ("fp32", "bf16"))
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.999
    assert np.abs(fp32 - bf16).max() > 1e-5  # bf16 really ran: fp32 twice gives the same scores to 1e-7
    accuracy = [pd.read_csv(tmp_path / n / "results.csv")["accuracy_mean"] for n in ("fp32", "bf16")]
    np.testing.assert_allclose(*accuracy, atol=2 / 80)  # within two of the 80 pairs


def test_probe_mode_compares_hr_first_images_with_degraded_second_images(data, tmp_path):
    embed = ["embed", *sphereface_args(data, tmp_path / "features.npz", "--df", "1,6")[1:]]
    assert invoke(*embed).exit_code == 0
    for mode in ("probe", "both"):
        result = invoke(*sphereface_args(data, tmp_path / mode, "--df", "1,6", "--mode", mode))
        assert result.exit_code == 0, result.output
    arrays = np.load(tmp_path / "features.npz")
    row = {name: index for index, name in enumerate(arrays["images"])}

    def cosine(pairs, first_df, second_df):
        a = arrays[f"features_df{first_df}"][[row[name] for name in pairs["image_a"]]]
        b = arrays[f"features_df{second_df}"][[row[name] for name in pairs["image_b"]]]
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    probe, both = (pd.read_csv(tmp_path / mode / "scores.csv") for mode in ("probe", "both"))
    for df in (1, 6):
        at_df = probe[probe["df"] == df]
        np.testing.assert_allclose(at_df["score"], cosine(at_df, 1, df), atol=1e-5)  # HR gallery, DF probe
        at_df = both[both["df"] == df]
        np.testing.assert_allclose(at_df["score"], cosine(at_df, df, df), atol=1e-5)
    assert np.abs(probe[probe["df"] == 6]["score"].to_numpy() - both[both["df"] == 6]["score"].to_numpy()).max() > 0.01


def test_weights_that_give_nan_features_are_one_clear_error(data, tmp_path):
    state = registry.backbone("sphereface").build("random", depth=4).state_dict()
    state["fc5.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    result = invoke("run", "-b", "sphereface", "--weights", tmp_path / "nan.pt", "--option", "depth=4",
                    "--data", data, "--out", tmp_path / "out", "--quiet")
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
