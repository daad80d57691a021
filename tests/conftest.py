"""Test set-up: no installed third-party plugins, a private cache, and small synthetic LFW-format data."""

import os

os.environ["LRBENCH_LOAD_PLUGINS"] = ""  # before lrbench loads plugins: only built-ins and test plugins
# One CPU thread for torch here and in every subprocess a test starts (before torch is imported): the tests' tiny
# networks and images gain nothing from more, and on a shared machine OpenMP threads waiting for each other cost
# more than the work (LBP on the synthetic set: 0.6 s on one thread, 8.9 s on two under a load of 9 on 2 cores).
os.environ["OMP_NUM_THREADS"] = "1"
# Console tables as lrbench prints them into a pipe, whatever terminal width the environment (or pytest-xdist's
# workers) passes down; tests of the width rules set COLUMNS themselves.
os.environ.pop("COLUMNS", None)
# Reports draw their figures as PNG only here: the PDF and SVG copies cost about two thirds of the drawing time in a
# suite of hundreds of tiny runs; the tests of those copies ask for them with the ``vector_figures`` fixture.
os.environ["LRBENCH_FIGURE_FORMATS"] = "png"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from lrbench.plugins import load_plugins  # noqa: E402

SHARED_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
DEFAULT_RUNS = Path.cwd() / "runs"  # where `lrbench run` without --out writes: no test may leave a run there
_RUNS_BEFORE = pytest.StashKey[set]()


torch.set_num_threads(1)  # in case something imported torch before this file set OMP_NUM_THREADS


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LRBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """A tiny synthetic LFW-format set (10 folds × 4 + 4 pairs), generated once per test session."""
    from lrbench.data.synth import synthesize

    return synthesize(
        tmp_path_factory.mktemp("synth") / "data",
        seed=3,
        pairs_per_fold=4,
        people_per_fold=3,
        images_per_person=3,
        train_identities=4,
        train_images_per_identity=3,
    )


# The demo at a size for the test suite (benchmarks/bench_demo.py checks the published numbers at the demo's own
# size, 200 identities × 8 images, in about three times the time): the same commands, options and 5 epochs.
SMALL_DEMO_TRAINING_SET = ("--train-identities", "100", "--train-images-per-identity", "6")


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """``lrbench demo --df 1,8`` on 100 training identities × 6 images: its folder, the mean accuracy per (run name,
    DF) and the runs it printed. tests/test_demo.py pins its numbers; tests/test_robust_distill.py distils from its
    HR model."""
    import lrbench_plugins.demo
    from cli_helpers import benchmark_script

    out = tmp_path_factory.mktemp("small-demo") / "demo"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(lrbench_plugins.demo, "TRAINING_SET", SMALL_DEMO_TRAINING_SET)
        accuracy, runs = benchmark_script("bench_demo").demo_accuracies(out, "--df", "1,8")
    return out, accuracy, runs


def _default_runs() -> set[str]:
    return set(os.listdir(DEFAULT_RUNS)) if DEFAULT_RUNS.is_dir() else set()


def pytest_sessionstart(session):
    session.config.stash[_RUNS_BEFORE] = _default_runs()


def pytest_sessionfinish(session, exitstatus):
    left = sorted(_default_runs() - session.config.stash.get(_RUNS_BEFORE, set()))
    if left:
        session.config.get_terminal_writer().line(f"tests left run directories in {DEFAULT_RUNS}: {left}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items):
    """The tests sharing the demo run first, side by side: pytest-xdist hands each worker a contiguous share of the
    list, so one worker builds ``small_demo`` (half a minute) for both instead of each building its own."""
    items.sort(key=lambda item: "small_demo" not in getattr(item, "fixturenames", ()))


@pytest.fixture
def vector_figures(monkeypatch):
    """Reports with their PDF and SVG copies, as users get them (the suite draws PNG only)."""
    monkeypatch.delenv("LRBENCH_FIGURE_FORMATS")


@pytest.fixture
def plugin_manager():
    """The plugin manager; plugins a test registers through ``register`` are removed afterwards."""
    pm = load_plugins()
    added = []

    def register(plugin, name):
        pm.register(plugin, name=name)
        added.append(plugin)

    pm.register_for_test = register
    yield pm
    for plugin in added:
        pm.unregister(plugin)
    del pm.register_for_test


@pytest.fixture
def shared_lfw():
    if not (SHARED_LFW / "pairs.txt").is_file():
        pytest.skip("real LFW copy (../shared/data/lfw) not present")
    return SHARED_LFW
