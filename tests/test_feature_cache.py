"""Gallery features computed once per study: a second identification run of the same network on the same images
reads them from the cache (the manifest's timings say so) and gives the same numbers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke
from test_identification import layout_toml, write_layout


def run(root, toml, out, *extra):
    result = invoke("run", "-b", "lbp", "--data", root, "--protocol", toml, "--out", out, "--workers", 1, "-q",
                    *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())["timings"], result


@pytest.fixture(autouse=True)
def cold_cache(tmp_path, monkeypatch):
    """A cache of this test's own: the session's shared one may hold the features already."""
    monkeypatch.setenv("LRBENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def layout(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    return root, layout_toml(tmp_path)


def test_a_second_run_with_other_dfs_reads_the_gallery_features(layout, tmp_path):
    root, toml = layout
    first, _ = run(root, toml, tmp_path / "first", "--df", "1,4")
    assert first["gallery_features"]["entries"] == 8  # 6 enrolled people + 2 distractors
    assert not first["gallery_features"]["cache"]["hit"]
    assert first["features_by_df"]["1"]["faces"] == 8 + 12 + 2  # gallery, probes and non-mated probes
    second, _ = run(root, toml, tmp_path / "second", "--df", "4,8")
    assert second["gallery_features"]["cache"]["hit"]
    assert "1" not in second["features_by_df"]  # nothing embedded at DF 1: only the probes, at DF 4 and 8
    assert second["gallery_features"]["cache"]["key"] == first["gallery_features"]["cache"]["key"]
    for name in ("results.csv", "ranks.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "first" / name).query("df == 4").reset_index(drop=True),
                                      pd.read_csv(tmp_path / "second" / name).query("df == 4").reset_index(drop=True))


def test_another_flip_fusion_does_not_read_the_features_of_the_first(layout, tmp_path):
    root, toml = layout
    first, _ = run(root, toml, tmp_path / "first", "--df", "4")
    other, _ = run(root, toml, tmp_path / "other", "--df", "4", "--fusion", "sum")
    assert not other["gallery_features"]["cache"]["hit"]
    assert other["gallery_features"]["cache"]["key"] != first["gallery_features"]["cache"]["key"]


def test_changed_gallery_images_do_not_read_the_features_of_the_first(layout, tmp_path):
    root, toml = layout
    first, _ = run(root, toml, tmp_path / "first", "--df", "4")
    shutil.copy(root / "Gallery_Match" / "1_0.jpg", root / "Gallery_Match" / "0_0.jpg")
    changed, _ = run(root, toml, tmp_path / "changed", "--df", "4")
    assert not changed["gallery_features"]["cache"]["hit"]


@pytest.mark.parametrize("damage", ["truncated", "another key"])
def test_a_damaged_entry_is_rebuilt_with_a_warning(layout, tmp_path, damage):
    root, toml = layout
    first, _ = run(root, toml, tmp_path / "first", "--df", "4")
    name = Path(first["gallery_features"]["cache"]["path"]).name  # the manifest names it by its file name
    entry = next((tmp_path / "cache").rglob(name))
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:200])
    else:
        with np.load(entry) as held:
            features = held["features"]
        with open(entry, "wb") as handle:
            np.savez(handle, key=np.asarray("another"), features=features)
    again, result = run(root, toml, tmp_path / "again", "--df", "4")
    assert again["gallery_features"]["cache"]["rebuilt"] and not again["gallery_features"]["cache"]["hit"]
    assert f"feature cache {entry}" in result.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "first" / "ranks.csv"),
                                  pd.read_csv(tmp_path / "again" / "ranks.csv"))
    assert run(root, toml, tmp_path / "third", "--df", "4")[0]["gallery_features"]["cache"]["hit"]  # rewritten
