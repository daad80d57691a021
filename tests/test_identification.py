"""Identification: rank-k / CMC / TPIR@FPIR by hand, the chunked search, layouts, lfw-ident and `lrbench run`."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import invoke

from lrbench.data.identification_layout import IdentificationLayout, check_set
from lrbench.errors import DataError
from lrbench.eval.identification import (
    NO_ID,
    cmc,
    generated_distractors,
    rank_accuracy,
    search,
    search_set,
    tpir_at_fpir,
)
from lrbench.specs import IdentificationSet

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols" / "identification"


def unit(*angles_deg):
    a = np.radians(angles_deg)
    return torch.tensor(np.stack([np.cos(a), np.sin(a)], 1), dtype=torch.float32)


# --- metrics by hand --------------------------------------------------------------------------------------------


def test_a_tie_with_another_identity_counts_against_the_probe():
    # probe at 0°; A at +30° and B at -30° score exactly the same, C at 90° lower: A's rank is 2, not 1
    found = search(unit(0), unit(30, -30, 90), np.array([0]), np.array([0, 1, 2]))
    assert found.rank.tolist() == [2]


def test_the_best_mate_of_a_multi_image_identity_sets_the_rank():
    # A has a poor image (80°) and a good one (10°); B (40°) only beats the poor one: rank 1
    found = search(unit(0), unit(80, 10, 40), np.array([0]), np.array([0, 0, 1]))
    assert found.rank.tolist() == [1]
    assert found.top_index[0, :3].tolist() == [1, 2, 0]


def test_a_probe_whose_identity_is_absent_is_a_miss_at_every_rank():
    found = search(unit(0, 0), unit(10, 20), np.array([0, 7]), np.array([0, 1]))
    assert found.rank.tolist() == [1, np.inf]
    assert rank_accuracy(found.rank, 1) == 0.5
    assert rank_accuracy(found.rank, 20) == 0.5


def test_k_larger_than_the_gallery_counts_every_probe_with_a_mate():
    rank = np.array([1, 3, 2, np.inf])
    assert rank_accuracy(rank, 20) == 0.75
    assert cmc(rank, 3).tolist() == [0.25, 0.5, 0.75]


def test_top_k_is_padded_past_the_end_of_a_small_gallery():
    found = search(unit(0), unit(10, 20), np.array([0]), np.array([0, 1]), k=5)
    assert found.top_index[0].tolist() == [0, 1, -1, -1, -1]


def test_distractors_count_in_closed_set_ranks_but_not_in_open_set_ones():
    gallery_ids = np.array([0, 1, NO_ID])  # the distractor (5°) beats the mate (10°)
    found = search(unit(0), unit(10, 50, 5), np.array([0]), gallery_ids, open_gallery=np.array([1, 1, 0], bool))
    assert (found.rank.tolist(), found.open_rank.tolist()) == ([2], [1])


def test_tpir_thresholds_at_the_allowed_number_of_non_mated_alarms():
    non_mated = np.array([0.9, 0.5, 0.4, 0.3, 0.3, 0.2, 0.1, 0.1, 0.0, 0.0])  # N = 10
    mated_score = np.array([0.95, 0.6, 0.45, 0.8])
    open_rank = np.array([1, 1, 1, 2])
    # FPIR 0.1: one alarm allowed, threshold 0.5 (the second highest); hits: 0.95 and 0.6 at rank 1
    assert tpir_at_fpir(mated_score, open_rank, non_mated, 0.1) == 0.5
    # FPIR 0.01: no alarm allowed, threshold 0.9: only 0.95
    assert tpir_at_fpir(mated_score, open_rank, non_mated, 0.01) == 0.25
    assert np.isnan(tpir_at_fpir(mated_score, open_rank, np.zeros(0), 0.1))


def test_non_mated_probes_are_searched_in_the_gallery_without_the_distractors():
    # images: gallery A (10°), distractor (0°), mated probe of A (-10°), non-mated probe (0°, the distractor's twin)
    ident = IdentificationSet(Path("."), ["a", "d", "p", "n"], np.array([0]), ["A"], np.array([2]), ["A"],
                              Path("set"), distractors=np.array([1]), non_mated=np.array([3]))
    features = unit(10, 0, -10, 0)
    mated, non_mated, rows = search_set(ident, features, features, "cosine")
    assert rows.tolist() == [0, 1] and mated.rank.tolist() == [2] and mated.open_rank.tolist() == [1]
    assert non_mated.open_best[0] == pytest.approx(np.cos(np.radians(10)))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_chunked_search_equals_the_full_matrix(metric):
    rng = np.random.default_rng(0)
    probes, gallery = torch.randn(37, 8), torch.randn(53, 8)
    probe_ids, gallery_ids = rng.integers(0, 20, 37), rng.integers(0, 20, 53)
    gallery_ids[:5] = NO_ID
    found = search(probes, gallery, probe_ids, gallery_ids, metric=metric, probe_chunk=8, gallery_chunk=16)
    p, g = probes.double().numpy(), gallery.double().numpy()
    if metric == "cosine":
        p, g = p / np.linalg.norm(p, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
        full = p @ g.T
    else:
        full = -np.linalg.norm(p[:, None] - g[None], axis=2)
    for i in range(37):
        mates = gallery_ids == probe_ids[i]
        if not mates.any():
            assert found.rank[i] == np.inf
            continue
        best = full[i, mates].max()
        assert found.rank[i] == 1 + np.sum((full[i] >= best - 1e-6) & ~mates)
        np.testing.assert_allclose(found.top_scores[i], np.sort(full[i])[::-1][:5], atol=1e-5)


def overlap_set(**extra):
    """Gallery A1 (0°), A2 (40°), B1 (10°); probe A1 is gallery image A1 itself."""
    return IdentificationSet(Path("."), ["A/1.jpg", "A/2.jpg", "B/1.jpg", "./A/1.jpg"], np.array([0, 1, 2]),
                             ["A", "A", "B"], np.array([3]), ["A"], Path("set"), **extra)


def test_a_probe_that_is_also_a_gallery_image_is_refused_naming_it():
    with pytest.raises(DataError) as refused:
        check_set(overlap_set(), unique_gallery_ids=False)
    assert str(refused.value).startswith("set: 1 probe images are also gallery images (A/1.jpg); a probe searched "
                                         "among its own image is found at rank 1 whatever the model")


def test_non_mated_probes_may_be_distractors_but_not_gallery_images():
    # lfw-ident: people with one image are distractors for the mated search and non-mated probes against the
    # gallery alone, which holds neither
    ident = IdentificationSet(Path("."), ["a", "p", "s"], np.array([0]), ["A"], np.array([1]), ["A"], Path("set"),
                              distractors=np.array([2]), non_mated=np.array([2]))
    check_set(ident)
    ident.non_mated = np.array([0])
    with pytest.raises(DataError, match=r"1 probe images are also gallery images \(a\)"):
        check_set(ident)


def test_leave_one_out_searches_each_probe_without_its_own_entry():
    ident = overlap_set(leave_one_out=True)
    check_set(ident, unique_gallery_ids=False)
    features = unit(0, 40, 10, 0)
    mated, _, _ = search_set(ident, features, features, "cosine")
    # its own entry (score 1) is left out: A2 at 40° is its mate, B1 at 10° beats it
    assert mated.rank.tolist() == [2] and mated.true_score[0] == pytest.approx(np.cos(np.radians(40)))
    assert mated.top_index[0].tolist() == [2, 1, -1, -1, -1]


# --- folder layouts ---------------------------------------------------------------------------------------------


def write_layout(synth_data, root: Path, people: int = 6, distractor_people: int = 2, non_mated_people: int = 2):
    """A generated folder in TinyFace's layout from the synthetic people, with a matching landmarks.txt."""
    images = synth_data.lfw_images
    marks = dict(line.split("\t", 1) for line in synth_data.lfw_landmarks.read_text().splitlines())
    names = sorted(p.name for p in images.iterdir())
    lines = []

    def put(source: str, target: str):
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(images / source, root / target)
        lines.append(f"{target}\t{marks[source]}")

    for n, name in enumerate(names[:people]):
        files = sorted(f"{name}/{f.name}" for f in (images / name).iterdir())
        put(files[0], f"Gallery_Match/{n}_0.jpg")
        for k, file in enumerate(files[1:], 1):
            put(file, f"Probe/{n}_{k}.jpg")
    for n, name in enumerate(names[people : people + distractor_people]):
        put(f"{name}/{name}_0001.jpg", f"Gallery_Distractor/{n}.jpg")
    for n, name in enumerate(names[people + distractor_people : people + distractor_people + non_mated_people]):
        put(f"{name}/{name}_0001.jpg", f"Unknown/{n + 100}_0.jpg")
    (root / "landmarks.txt").write_text("\n".join(lines) + "\n")
    return root


def layout_toml(tmp_path: Path, **extra) -> Path:
    keys = {"kind": "identification", "name": "mine", "description": "generated", "gallery": "Gallery_Match",
            "probes": "Probe", "distractors": "Gallery_Distractor", "non_mated": "Unknown",
            "identity": "^([^_]+)_", **extra}
    def toml(value):
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + " }"
        return json.dumps(value)

    text = "".join(f"{k} = {toml(v)}\n" for k, v in keys.items())
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_a_layout_lists_gallery_probes_distractors_and_non_mated_probes(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    ident = IdentificationLayout.from_toml(layout_toml(tmp_path)).load(root)
    assert (len(ident.gallery), len(ident.probes), len(ident.distractors), len(ident.non_mated)) == (6, 12, 2, 2)
    assert ident.probe_ids[:2] == ["0", "0"] and ident.images[ident.gallery[0]] == "Gallery_Match/0_0.jpg"
    assert ident.landmarks == root / "landmarks.txt"


def test_run_on_a_layout_writes_an_identification_run_directory(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    out = tmp_path / "run"
    result = invoke("run", "-b", "lbp", "--data", root, "--protocol", layout_toml(tmp_path), "--df", "1,4",
                    "--out", out, "--workers", 1, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "results.csv", "ranks.csv", "cmc.csv", "cmc.png", "rank1_vs_resolution.png", "report.html"]
    )
    results = pd.read_csv(out / "results.csv")
    assert results["df"].tolist() == [1, 4] and results["probe_px"].tolist() == ["96×112", "24×28"]
    assert results["non_mated"].tolist() == [2, 2] and results["tpir_at_fpir_0.1"].notna().all()
    ranks = pd.read_csv(out / "ranks.csv")
    assert len(ranks) == 2 * 12 and ranks["rank"].between(1, 8).all()
    assert results["rank1"].tolist() == ranks.groupby("df")["rank"].apply(lambda r: (r == 1).mean()).tolist()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "identification" and manifest["degradation"]["mode"] == "probe"
    assert manifest["data"]["distractors"] == 2 and "rank" in manifest["definitions"]
    assert "rank-1" in result.output  # the console table (its header folds at a narrow terminal width)
    (out / "report.html").unlink()
    rerendered = invoke("report", out)  # re-renders the run's figures and page in place
    assert rerendered.exit_code == 0, rerendered.output
    assert "rank-1 %" in rerendered.output and "<h1>" in (out / "report.html").read_text()


def test_report_overlays_identification_runs_and_refuses_mixing_kinds(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    runs = []
    for backbone, options in (("lbp", ()), ("sphereface", ("-w", "random", "--option", "depth=4",
                                                            "--option", "width=0.25"))):
        runs.append(tmp_path / backbone)
        result = invoke("run", "-b", backbone, *options, "--data", root, "--protocol", layout_toml(tmp_path),
                        "--df", "1,4", "--out", runs[-1], "--workers", 1, "-q")
        assert result.exit_code == 0, result.output
    overlay = tmp_path / "overlay"
    result = invoke("report", *runs, "--out", overlay)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in overlay.iterdir()) == ["overlay.csv", "rank1_vs_resolution.png", "report.html"]
    rows = pd.read_csv(overlay / "overlay.csv")
    assert rows["run"].nunique() == 2 and rows["df"].tolist() == [1, 4, 1, 4]
    verification = tmp_path / "verification"
    assert invoke("run", "-b", "lbp", "--data", synth_data.lfw_root, "--out", verification, "--workers", 1,
                  "-q").exit_code == 0
    mixed = invoke("report", runs[0], verification, "--out", tmp_path / "mixed")
    assert mixed.exit_code == 2
    assert mixed.stderr.strip() == (
        f"Error: {verification}: a verification run cannot be overlaid with identification runs"
    )
    assert not (tmp_path / "mixed").exists()


def test_generated_distractors_enlarge_the_gallery_and_the_search_shows_its_progress(synth_data, tmp_path):
    """A large gallery at the feature level (here 2,000 entries; benchmarks/bench_identification.py runs 200,000):
    every rank can only grow, and each DF's search stage prints its progress line."""
    root = write_layout(synth_data, tmp_path / "set")
    plain, large = tmp_path / "plain", tmp_path / "large"
    common = ["run", "-b", "lbp", "--data", root, "--df", "1,8", "--workers", 1]
    assert invoke(*common, "--protocol", layout_toml(tmp_path), "--out", plain, "-q").exit_code == 0
    toml = layout_toml(tmp_path, generated_distractors=2000)
    result = invoke(*common, "--protocol", toml, "--out", large)
    assert result.exit_code == 0, result.output
    manifest = json.loads((large / "manifest.json").read_text())
    assert (manifest["data"]["distractors"], manifest["data"]["generated_distractors"]) == (2, 2000)
    assert pd.read_csv(large / "cmc.csv").groupby("df")["k"].max().tolist() == [2008, 2008]
    searched = [line for line in result.stderr.splitlines() if line.startswith("search DF ")]
    assert [line.split(",")[0] for line in searched] == [
        text for df in (1, 8) for text in (f"search DF {df}: 2008/2008 images",
                                           f"search DF {df} (non-mated probes): 6/6 images")]
    before, after = pd.read_csv(plain / "ranks.csv"), pd.read_csv(large / "ranks.csv")
    assert (after["rank"] >= before["rank"]).all() and (after["rank"] > before["rank"]).any()
    generated = after.filter(like="_image").stack()
    assert generated.str.startswith("generated distractor ").any()
    # the open set has no distractors: TPIR does not move
    pd.testing.assert_series_equal(pd.read_csv(plain / "results.csv")["tpir_at_fpir_0.1"],
                                   pd.read_csv(large / "results.csv")["tpir_at_fpir_0.1"])


def test_generated_distractors_spread_as_the_real_features_do():
    real = torch.from_numpy(np.random.default_rng(2).standard_normal((6, 10))) * torch.arange(1, 11)
    drawn = generated_distractors(real, 100_000).double()
    centred = (real - real.mean(0)).numpy()
    np.testing.assert_allclose(drawn.mean(0).numpy(), real.mean(0).numpy(), atol=0.05)
    np.testing.assert_allclose(np.cov(drawn.numpy().T, bias=True), centred.T @ centred / 6, atol=0.05 * 100)
    span = np.linalg.svd(centred, full_matrices=False)[2][:5]  # 6 real features span 5 directions around the mean
    off = (drawn.numpy() - real.mean(0).numpy()) @ (np.eye(10) - span.T @ span)
    assert np.abs(off).max() < 1e-3
    assert torch.equal(generated_distractors(real, 10), generated_distractors(real, 10))


def test_probe_groups_are_reported_each(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    toml = layout_toml(tmp_path, probe_group="_(\\d)\\.", group_names={"1": "near", "2": "far"})
    out = tmp_path / "run"
    result = invoke("run", "-b", "lbp", "--data", root, "--protocol", toml, "--out", out, "--workers", 1, "-q")
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv")
    assert results["group"].tolist() == ["all", "far", "near"]
    assert results["probes"].tolist() == [12, 6, 6]


def test_lfw_ident_on_a_synthetic_lfw_folder(synth_data, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "-b", "lbp", "--data", synth_data.lfw_root, "--protocol", "lfw-ident", "--out", out,
                    "--workers", 1, "-q", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    # 30 people × 3 images: the first of each is enrolled, the other two are probes; nobody has one image
    assert (manifest["data"]["gallery"], manifest["data"]["probes"], manifest["data"]["distractors"]) == (30, 60, 0)


# --- bad input: one line each, nothing written ------------------------------------------------------------------


def bad_run(tmp_path, root, toml):
    out = tmp_path / "run"
    result = invoke("run", "-b", "lbp", "--data", root, "--protocol", toml, "--out", out, "--workers", 1, "-q")
    assert result.exit_code == 1 and not out.exists()  # a DataError
    return result.output.strip()


def test_an_empty_gallery_is_refused(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    for image in (root / "Gallery_Match").iterdir():
        image.unlink()
    assert bad_run(tmp_path, root, layout_toml(tmp_path)) == (
        f"Error: {root / 'Gallery_Match'}: no images ('Gallery_Match' of protocol mine)"
    )


def test_duplicate_gallery_ids_are_refused_where_one_image_per_identity_is_enrolled(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    shutil.copy(root / "Gallery_Match/0_0.jpg", root / "Gallery_Match/0_9.jpg")
    assert bad_run(tmp_path, root, layout_toml(tmp_path)) == (
        f"Error: {root / 'Gallery_Match'}: duplicate gallery id '0' (Gallery_Match/0_0.jpg and "
        "Gallery_Match/0_9.jpg); this protocol enrols one image per identity"
    )


def test_a_layout_whose_probes_are_its_gallery_is_refused(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    assert bad_run(tmp_path, root, layout_toml(tmp_path, probes="Gallery_Match")).startswith(
        f"Error: {root / 'Gallery_Match'}: 6 probe images are also gallery images (Gallery_Match/0_0.jpg, "
        "Gallery_Match/1_0.jpg, Gallery_Match/2_0.jpg, Gallery_Match/3_0.jpg, Gallery_Match/4_0.jpg, … (6 in all)); "
    )


def test_a_leave_one_out_layout_never_finds_a_probe_itself(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    for probe in (root / "Probe").iterdir():
        shutil.move(probe, root / "Gallery_Match" / probe.name)
    marks = root / "landmarks.txt"
    marks.write_text(marks.read_text().replace("Probe/", "Gallery_Match/"))
    toml = layout_toml(tmp_path, probes="Gallery_Match", leave_one_out=True, unique_gallery_ids=False)
    out = tmp_path / "run"
    result = invoke("run", "-b", "lbp", "--data", root, "--protocol", toml, "--out", out, "--workers", 1, "-q")
    assert result.exit_code == 0, result.output
    ranks = pd.read_csv(out / "ranks.csv")
    assert len(ranks) == 18 and (ranks["top1_image"] != ranks["probe"]).all()
    assert not any((ranks[f"top{j}_image"] == ranks["probe"]).any() for j in range(1, 6))


def test_an_identity_pattern_matching_no_file_name_is_refused(synth_data, tmp_path):
    root = write_layout(synth_data, tmp_path / "set")
    toml = layout_toml(tmp_path, probe_identity="^id(\\d+)-")
    assert bad_run(tmp_path, root, toml) == (
        f"Error: {root / 'Probe/0_1.jpg'}: the identity pattern '^id(\\\\d+)-' of {toml} matches nothing in this "
        "file name"
    )


def test_a_layout_key_with_a_wrong_value_names_the_file_and_key(tmp_path):
    toml = layout_toml(tmp_path, identity="no group")
    with pytest.raises(DataError, match=r"mine\.toml: identity must be a regular expression with one group"):
        IdentificationLayout.from_toml(toml)


@pytest.mark.parametrize("name", ["tinyface", "scface"])
def test_the_shipped_layouts_read(name):
    layout = IdentificationLayout.from_toml(PROTOCOLS / f"{name}.toml")
    assert layout.name == name


def test_scface_reports_per_distance_on_a_generated_folder(synth_data, tmp_path):
    images = synth_data.lfw_images
    marks = dict(line.split("\t", 1) for line in synth_data.lfw_landmarks.read_text().splitlines())
    root, lines = tmp_path / "SCface", []
    for n, name in enumerate(sorted(p.name for p in images.iterdir())[:4], 1):
        files = sorted(f"{name}/{f.name}" for f in (images / name).iterdir())
        targets = [f"mugshot_frontal_cropped_all/{n:03d}_frontal.JPG", f"surveillance_cameras_all/{n:03d}_cam1_1.jpg",
                   f"surveillance_cameras_all/{n:03d}_cam2_3.jpg"]
        for source, target in zip(files, targets):
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(images / source, root / target)
            lines.append(f"{target}\t{marks[source]}")
    (root / "landmarks.txt").write_text("\n".join(lines) + "\n")
    ident = IdentificationLayout.from_toml(PROTOCOLS / "scface.toml").load(tmp_path)
    assert sorted(set(ident.probe_groups)) == ["distance 1 (4.20 m)", "distance 3 (1.00 m)"]
    assert ident.probe_ids == ["001", "001", "002", "002", "003", "003", "004", "004"]


# --- real data --------------------------------------------------------------------------------------------------


@pytest.mark.lfw
def test_lfw_ident_rank1_matches_an_independent_computation_from_embed(shared_lfw, tmp_path):
    """On the first 60 LFW people (a copy of their images): rank-1 from `run` equals numpy's on `embed`'s
    features, with the split rebuilt from the file names alone."""
    data = tmp_path / "lfw"
    people = sorted(p.name for p in (shared_lfw / "lfw-deepfunneled").iterdir() if p.is_dir())[:60]
    for name in people:
        shutil.copytree(shared_lfw / "lfw-deepfunneled" / name, data / "images" / name)
    wanted = tuple(f"{name}/" for name in people)
    lines = [line for line in (shared_lfw / "landmarks.txt").read_text().splitlines() if line.startswith(wanted)]
    (data / "landmarks.txt").write_text("\n".join(lines) + "\n")
    common = ["-b", "lbp", "--data", data, "--protocol", "lfw-ident", "--workers", 2, "-q"]
    assert invoke("embed", *common, "--out", tmp_path / "f.npz").exit_code == 0
    result = invoke("run", *common, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output

    arrays = np.load(tmp_path / "f.npz")
    images, features = [str(i) for i in arrays["images"]], arrays["features_df1"].astype(np.float64)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    person = [i.split("/")[0] for i in images]
    by_person: dict[str, list[int]] = {}
    for index in sorted(range(len(images)), key=images.__getitem__):
        by_person.setdefault(person[index], []).append(index)
    gallery = [rows[0] for rows in by_person.values()]  # the first image by number, singles included
    probes = [row for rows in by_person.values() if len(rows) > 1 for row in rows[1:]]
    best = np.asarray(gallery)[np.argmax(features[probes] @ features[gallery].T, axis=1)]
    expected = np.mean([person[b] == person[p] for b, p in zip(best, probes)])
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert results["rank1"].iloc[0] == pytest.approx(expected, abs=1e-12)
    assert results["probes"].iloc[0] == len(probes)


# --- torchrun ---------------------------------------------------------------------------------------------------


def test_torchrun_with_two_processes_gives_the_numbers_of_one(synth_data, tmp_path):
    """Each of two gloo processes embeds half the images; rank 0 gathers, searches and alone writes --out. Only
    torchrun needs processes of its own; the one-process reference runs in this one."""
    import subprocess
    import sys

    args = ["run", "-b", "lbp", "--data", synth_data.lfw_root, "--protocol", "lfw-ident", "--df", "1,3",
            "--workers", 1, "-q", "--device", "cpu"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lrbench"]
    done = subprocess.run([*torchrun, *map(str, args), "--out", str(tmp_path / "two")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = invoke(*args, "--out", tmp_path / "one")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["processes"] == 2
    for name in ("results.csv", "ranks.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / name), pd.read_csv(tmp_path / "one" / name))
