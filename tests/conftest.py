"""Test set-up: no installed third-party plugins, a private cache, and small synthetic LFW-format data."""

import os

os.environ["LRBENCH_LOAD_PLUGINS"] = ""  # before lrbench loads plugins: only built-ins and test plugins

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lrbench.plugins import load_plugins  # noqa: E402

SHARED_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


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
