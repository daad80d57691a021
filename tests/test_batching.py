"""--batch-size auto: measured on the run's first crops, remembered in the cache folder, recorded in the manifest."""

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import invoke

from lrbench.eval import batching
from lrbench.eval.batching import BatchSizer


def use_small_candidates(monkeypatch):
    """Candidates the synthetic set (82 unique images) always climbs through completely: 2 + 2 × (2 + 4 + 8) faces."""
    monkeypatch.setattr(batching, "CANDIDATES", (2, 4, 8))
    monkeypatch.setattr(batching, "MIN_SECONDS", 0.0)


@pytest.fixture(autouse=True)
def small_candidates(monkeypatch):
    use_small_candidates(monkeypatch)


def run(data, out, cache, *extra):
    """``lrbench run`` of the LBP baseline at one DF (the climb uses the first crops, whatever the DFs); returns the
    manifest and what went to stderr."""
    result = invoke("run", "-b", "lbp", "--data", data, "--df", 1, "--out", out, "--workers", 1, "--cache-dir", cache,
                    *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text()), result.stderr


def remembered(cache):
    return json.loads((cache / batching.MEMORY_FILE).read_text())["choices"]


@pytest.fixture(scope="module")
def measured(synth_data, tmp_path_factory):
    """The manifest and cache folder of a run that measured its batch size into an empty cache (copy the folder
    to change it)."""
    folder = tmp_path_factory.mktemp("measured")
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_small_candidates(monkeypatch)
        manifest, _ = run(synth_data.lfw_root, folder / "run", folder / "cache")
    return manifest, folder / "cache"


def test_auto_is_the_default_and_the_measured_choice_is_recorded(measured):
    manifest, cache = measured
    chosen = manifest["batching"]
    assert chosen["chosen"] == "measured" and manifest["settings"]["batch_size"] == chosen["batch_size"]
    assert chosen["batch_size"] in (2, 4, 8)
    assert set(chosen["images_per_s"]) <= {"2", "4", "8"} and all(r > 0 for r in chosen["images_per_s"].values())
    assert str(chosen["batch_size"]) in chosen["images_per_s"]
    assert chosen["key"]["backbone"] == "lbp" and chosen["key"]["precision"] == "fp32"
    [entry] = remembered(cache).values()
    assert entry["batch_size"] == chosen["batch_size"] and entry["key"] == chosen["key"]
    assert chosen["memory_file"] == batching.MEMORY_FILE  # a manifest names no path of the machine


def test_an_explicit_batch_size_wins_and_measures_nothing(synth_data, tmp_path):
    manifest, _ = run(synth_data.lfw_root, tmp_path / "run", tmp_path / "cache", "--batch-size", 5)
    assert manifest["settings"]["batch_size"] == 5
    assert manifest["batching"] == {"batch_size": 5, "chosen": "explicit"}
    assert not (tmp_path / "cache" / batching.MEMORY_FILE).exists()


def test_the_remembered_choice_is_reused_and_measured_again_when_the_precision_changes(synth_data, measured, tmp_path):
    data, cache = synth_data.lfw_root, tmp_path / "cache"
    first, _ = measured
    shutil.copytree(measured[1], cache)
    memory = cache / batching.MEMORY_FILE
    choices = remembered(cache)
    [key] = choices
    choices[key]["batch_size"] = 3  # no candidate: only the file can have said 3
    memory.write_text(json.dumps({"format": batching.FORMAT, "choices": choices}))
    second, _ = run(data, tmp_path / "b", cache)
    assert second["settings"]["batch_size"] == 3
    assert second["batching"]["chosen"] == "remembered" and second["batching"]["memory_file"] == memory.name
    assert second["batching"]["images_per_s"] == first["batching"]["images_per_s"]
    third, _ = run(data, tmp_path / "c", cache, "--precision", "bf16")
    assert third["batching"]["chosen"] == "measured" and third["batching"]["key"]["precision"] == "bf16"
    assert sorted(entry["key"]["precision"] for entry in remembered(cache).values()) == ["bf16", "fp32"]


def test_without_a_cache_the_batch_size_is_measured_each_time_and_nothing_is_written(synth_data, tmp_path):
    for out in (tmp_path / "a", tmp_path / "b"):
        result = invoke("run", "-b", "lbp", "--data", synth_data.lfw_root, "--df", 1, "--out", out, "--workers", 1,
                        "--no-cache")
        assert result.exit_code == 0, result.output
        chosen = json.loads((out / "manifest.json").read_text())["batching"]
        assert chosen["chosen"] == "measured" and chosen["memory_file"] is None


def test_features_with_auto_equal_features_with_an_explicit_batch(synth_data, tmp_path):
    """The measurement batches are the run's own batches: only floating-point order could differ."""
    arrays = {}
    for name, batch in (("auto", "auto"), ("explicit", 128)):
        out = tmp_path / f"{name}.npz"
        result = invoke("embed", "-b", "sphereface", "-w", "random", "--option", "depth=4", "--option", "width=0.25",
                        "--data", synth_data.lfw_root, "--df", "1,4", "--workers", 1, "--no-cache",
                        "--batch-size", batch, "--out", out)
        assert result.exit_code == 0, result.output
        arrays[name] = np.load(out)
    assert json.loads(str(arrays["auto"]["manifest"]))["batching"]["chosen"] == "measured"
    for df in (1, 4):
        auto, explicit = arrays["auto"][f"features_df{df}"], arrays["explicit"][f"features_df{df}"]
        assert auto.shape == explicit.shape and np.abs(auto - explicit).max() < 1e-5


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5"])
def test_a_batch_size_that_is_neither_a_positive_number_nor_auto_is_refused(synth_data, tmp_path, value):
    result = invoke("run", "-b", "lbp", "--data", synth_data.lfw_root, "--out", tmp_path / "run",
                    "--batch-size", value)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --batch-size {value}: "), result.stderr
    assert "auto" in lines[0] and not (tmp_path / "run").exists()


class FakeCuda:
    """A network on a pretend GPU with a pretend clock: a batch of n faces takes ``seconds(n)`` (by default a fixed
    cost per batch, so larger batches are faster per face), out of memory above ``fits`` faces."""

    def __init__(self, monkeypatch, fits: int, seconds=lambda n: 0.05 + 0.0005 * n):
        self.now, self.fits, self.seconds, self.emptied, self.calls = 0.0, fits, seconds, 0, []
        monkeypatch.setattr(batching, "perf_counter", lambda: self.now)
        monkeypatch.setattr(torch.cuda, "empty_cache", self.empty_cache)

    def empty_cache(self):
        self.emptied += 1

    def compute(self, rows: np.ndarray) -> torch.Tensor:
        self.calls.append(len(rows))
        if len(rows) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        self.now += self.seconds(len(rows))
        return torch.as_tensor(rows, dtype=torch.float32)[:, None]


def run_all(sizer: BatchSizer, fake: FakeCuda, n: int) -> np.ndarray:
    rows = np.arange(n)
    out = [features for _, features in sizer.batches(rows, fake.compute)]
    return torch.cat(out)[:, 0].numpy()


def test_the_climb_stops_when_throughput_falls_and_keeps_the_largest_batch_near_the_best(monkeypatch, tmp_path):
    monkeypatch.setattr(batching, "CANDIDATES", (8, 16, 32, 64, 128))
    per_face = {8: 0.00100, 16: 0.00095, 32: 0.00097, 64: 0.00125}  # 1000, 1053, 1031 (within 5 %), 800 faces/s
    fake = FakeCuda(monkeypatch, fits=1000, seconds=lambda n: per_face.get(n, 0.002) * n)
    sizer = BatchSizer.choose("auto", {"device": "cpu"}, tmp_path)
    assert np.array_equal(run_all(sizer, fake, 500), np.arange(500))
    assert {size: round(rate) for size, rate in sizer.rates.items()} == {8: 1000, 16: 1053, 32: 1031, 64: 800}
    assert sizer.size == 32 and 128 not in fake.calls  # 64 was slower: no further climb
    measured = 8 + 2 * (8 + 16 + 32 + 64 + 64)  # the warm-up batch, two timed batches per candidate, 64 timed again
    assert fake.calls[:11] == [8, 8, 8, 16, 16, 32, 32, 64, 64, 64, 64] and set(fake.calls[11:-1]) == {32}
    assert sum(fake.calls) == 500 and fake.calls[-1] == (500 - measured) % 32


def test_no_candidate_is_tried_that_would_take_the_measurement_past_its_time_budget(monkeypatch, tmp_path):
    monkeypatch.setattr(batching, "CANDIDATES", (8, 16, 32))
    fake = FakeCuda(monkeypatch, fits=1000, seconds=lambda n: n / 10)  # 10 faces/s at any batch size
    sizer = BatchSizer.choose("auto", {"device": "cpu"}, tmp_path)
    assert np.array_equal(run_all(sizer, fake, 64), np.arange(64))
    # two timed batches of 8 spent 1.6 s; two of 16 would take 3.2 s more, past MEASURE_SECONDS (2 s)
    assert batching.MEASURE_SECONDS == 2.0 and sizer.rates == {8: 10.0} and sizer.size == 8
    assert set(fake.calls) == {8} and sizer.complete


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "damaged JSON"), ('{"format": "something else", "choices": {}}', "not an lrbench batch-size file"),
     ('{"format": "lrbench batch sizes 1", "choices": {"k": {"batch_size": 0}}}', "not an lrbench batch-size file")],
)
def test_a_damaged_or_foreign_memory_file_warns_once_and_is_rewritten(monkeypatch, tmp_path, capsys, content, problem):
    (tmp_path / batching.MEMORY_FILE).write_text(content)
    fake = FakeCuda(monkeypatch, fits=1000)
    sizer = BatchSizer.choose("auto", {"device": "cpu"}, tmp_path)
    assert np.array_equal(run_all(sizer, fake, 40), np.arange(40))
    stderr = capsys.readouterr().err
    warnings = [line for line in stderr.splitlines() if batching.MEMORY_FILE in line]
    assert len(warnings) == 1 and "warning:" in warnings[0] and problem in warnings[0], stderr
    assert sizer.describe()["chosen"] == "measured"
    [entry] = remembered(tmp_path).values()
    assert entry["batch_size"] == sizer.size


def test_running_out_of_cuda_memory_steps_down_to_the_largest_batch_that_fits(monkeypatch, tmp_path):
    monkeypatch.setattr(batching, "CANDIDATES", (8, 16, 32, 64, 128))
    fake = FakeCuda(monkeypatch, fits=32)
    sizer = BatchSizer.choose("auto", {"device": "cuda"}, tmp_path)
    assert np.array_equal(run_all(sizer, fake, 500), np.arange(500))  # every row once, in order
    assert sizer.size == 32 and set(sizer.rates) == {8, 16, 32} and fake.emptied == 1
    assert fake.calls.count(64) == 1 and 128 not in fake.calls  # one failed try, then no further climb
    [entry] = json.loads((tmp_path / batching.MEMORY_FILE).read_text())["choices"].values()
    assert entry["batch_size"] == 32


def test_a_remembered_batch_that_no_longer_fits_steps_down_for_the_rest_of_the_run(monkeypatch, tmp_path):
    monkeypatch.setattr(batching, "CANDIDATES", (8, 16, 32, 64, 128))
    key = {"device": "cuda"}
    memory = {"format": batching.FORMAT, "choices": {batching._key_text(key): {"batch_size": 64}}}
    (tmp_path / batching.MEMORY_FILE).write_text(json.dumps(memory))
    fake = FakeCuda(monkeypatch, fits=16)  # another process holds memory now
    sizer = BatchSizer.choose("auto", key, tmp_path)
    assert sizer.how == "remembered"
    assert np.array_equal(run_all(sizer, fake, 100), np.arange(100))
    assert sizer.size == 16 and sizer.stepped_down == [32, 16] and fake.emptied == 2
    assert sizer.describe()["stepped_down_to"] == [32, 16]


def test_an_explicit_batch_that_does_not_fit_fails_as_asked(monkeypatch):
    fake = FakeCuda(monkeypatch, fits=16)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_all(BatchSizer.choose(64, None, None), fake, 100)


def test_a_network_with_a_fixed_batch_is_handed_many_faces_without_measuring(monkeypatch, tmp_path):
    fake = FakeCuda(monkeypatch, fits=1000)
    sizer = BatchSizer.choose("auto", {"device": "cpu"}, tmp_path, fixed=1)
    assert np.array_equal(run_all(sizer, fake, 40), np.arange(40))
    assert fake.calls == [32, 8] and not sizer.rates  # no climb through the candidates
    assert not (tmp_path / batching.MEMORY_FILE).exists()  # nothing measured, nothing to remember
    assert sizer.describe() == {"batch_size": 32, "chosen": "fixed", "network_batch": 1,
                                "note": "the network runs 1 at a time whatever it is handed: nothing to measure; "
                                "it is handed 32 per call and runs them 1 at a time"}
    assert BatchSizer.choose(16, None, None, fixed=1).describe() == {"batch_size": 16, "chosen": "explicit"}
