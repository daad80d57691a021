"""Steady state (issue 24 items 5 and 6): the batch-size climb is not decided by warm-up or one noisy batch; crops
are prepared a block at a time, not once per small batch; a fixed-batch graph is handed many faces per call."""

import warnings

import numpy as np
import pytest
import torch

from lrbench import registry
from lrbench.eval import batching
from lrbench.eval.batching import BatchSizer
from lrbench.eval.engine import FeatureExtractor
from lrbench.eval.models import build_backbone


class PretendClock:
    """A network whose batch of n faces takes ``seconds(call, n)`` on a pretend clock (``call`` counts from 0)."""

    def __init__(self, monkeypatch, seconds):
        self.now, self.seconds, self.calls = 0.0, seconds, []
        monkeypatch.setattr(batching, "perf_counter", lambda: self.now)

    def compute(self, rows: np.ndarray) -> torch.Tensor:
        self.now += self.seconds(len(self.calls), len(rows))
        self.calls.append(len(rows))
        return torch.as_tensor(rows, dtype=torch.float32)[:, None]


def run_all(sizer: BatchSizer, clock: PretendClock, n: int) -> np.ndarray:
    return torch.cat([features for _, features in sizer.batches(np.arange(n), clock.compute)])[:, 0].numpy()


def test_one_slow_batch_does_not_stop_the_climb(monkeypatch, tmp_path):
    monkeypatch.setattr(batching, "CANDIDATES", (8, 16, 32, 64))
    monkeypatch.setattr(batching, "MIN_SECONDS", 0.0)
    per_face = {8: 0.0010, 16: 0.0009, 32: 0.0008, 64: 0.0012}  # 1000, 1111, 1250, 833 faces/s
    for slowed in ({3, 4}, {4}):  # both timed batches of 16 slowed by another process, or one: neither ends the climb
        clock = PretendClock(monkeypatch, lambda call, n, slowed=slowed: per_face[n] * n * (3 if call in slowed else 1))
        sizer = BatchSizer.choose("auto", {"device": "cpu"}, tmp_path / str(sorted(slowed)))
        assert np.array_equal(run_all(sizer, clock, 600), np.arange(600))
        assert sizer.size == 32 and {size: round(rate) for size, rate in sizer.rates.items()} == {
            8: 1000, 16: 1111, 32: 1250, 64: 833}
    # the drop at 64 was real: timed twice (2 + 2 batches), then the climb stopped
    assert clock.calls[:11] == [8, 8, 8, 16, 16, 32, 32, 64, 64, 64, 64] and set(clock.calls[11:-1]) == {32}


def test_the_network_warms_up_untimed_before_the_first_candidate(monkeypatch, tmp_path):
    """Three slow first batches (a network still warming: allocations, caches, thread start) count for nothing."""
    monkeypatch.setattr(batching, "CANDIDATES", (8, 16))
    clock = PretendClock(monkeypatch, lambda call, n: 0.2 if call < 3 else 0.001 * n)
    sizer = BatchSizer.choose("auto", {"device": "cpu"}, tmp_path)
    assert np.array_equal(run_all(sizer, clock, 400), np.arange(400))
    assert batching.MIN_SECONDS == 0.3 and round(sizer.rates[8]) == 1000 and round(sizer.rates[16]) == 1000


class CountingDegradation:
    """Adds each image's own noise (seeded by ``seeds``, as a random degradation does) and counts its calls."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch: torch.Tensor, df: int, seeds=None) -> torch.Tensor:
        self.batches.append(len(batch))
        noise = [torch.rand(batch.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return (batch + df * torch.stack(noise)).clamp(0, 255)


def sphereface_extractor(batch_size, degrade, fusion="concat", crops=10, model=None):
    spec = registry.backbone("sphereface")
    model = model or build_backbone(spec, "random", {"depth": 4, "width": 0.25})
    images = np.random.default_rng(0).integers(0, 256, (crops, 112, 96, 3), dtype=np.uint8)
    names = [f"person/{i}.jpg" for i in range(crops)]
    return FeatureExtractor(model, images, spec.input, degrade, fusion, batch_size, torch.device("cpu"),
                            show_progress=False, names=names, seed=3)


@pytest.mark.parametrize("fusion", ["concat", "sum", "none"])
def test_small_batches_degrade_a_block_at_a_time_with_the_same_features(fusion):
    rows = np.array([7, 3, 0, 9, 4, 1])  # some rows, in any order: the others stay zero
    one_batch = sphereface_extractor(128, CountingDegradation(), fusion)
    reference = one_batch.features(4, np.sort(rows))
    degrade = CountingDegradation()
    small = sphereface_extractor(2, degrade, fusion)
    features = small.features(4, rows)
    assert degrade.batches == [6]  # one block for the three batches of two, not one call per batch
    torch.testing.assert_close(features, reference, rtol=1e-5, atol=1e-6)
    assert not features[[2, 5, 6, 8]].any()
    assert small.embedding_norm(4) == pytest.approx(one_batch.embedding_norm(4), rel=1e-5)


def export_fixed(model: torch.nn.Module, path, batch: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(batch, 3, 112, 96), str(path), input_names=["data"],
                          output_names=["embedding"], dynamo=False)
    return path


@pytest.mark.parametrize("graph_batch", [1, 3])
def test_a_fixed_batch_graph_is_handed_many_faces_per_call_with_the_features_of_one_at_a_time(tmp_path, graph_batch):
    pytest.importorskip("onnxruntime")
    spec = registry.backbone("sphereface")
    model = build_backbone(spec, "random", {"depth": 4, "width": 0.25})
    graph = build_backbone(registry.backbone("onnx"), str(export_fixed(model, tmp_path / "fixed.onnx", graph_batch)),
                           {"preset": "sphereface"})
    assert graph.fixed_batch == graph_batch
    handed, runs = [], []
    graph.register_forward_hook(lambda module, args, out: handed.append((len(args[0]), len(out))))
    session = graph._session("cpu")
    real_run = session.run
    session.run = lambda names, feed: runs.append(len(feed["data"])) or real_run(names, feed)
    sizer = BatchSizer.choose("auto", {"device": "cpu"}, None, fixed=graph_batch)
    one_at_a_time = sphereface_extractor(1, CountingDegradation(), crops=40, model=model).features(2, np.arange(40))
    features = sphereface_extractor(sizer, CountingDegradation(), crops=40, model=graph).features(2, np.arange(40))
    per_call = sizer.size  # with their mirror images, twice as many images
    assert per_call == {1: 32, 3: 33}[graph_batch]
    assert handed == [(2 * per_call, 2 * per_call), (2 * (40 - per_call), 2 * (40 - per_call))]
    assert set(runs) == {graph_batch} and len(runs) == sum(-(-images // graph_batch) for images, _ in handed)
    # the last piece of a graph of 3 is padded (14 images: 4 pieces and 2 of padding); no padding row leaks
    torch.testing.assert_close(features, one_at_a_time, rtol=1e-4, atol=1e-4)
