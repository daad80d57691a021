"""glibc's malloc tuned at start-up: large tensors stop being mapped, faulted in and unmapped every batch."""

import json
import os
import platform
import subprocess
import sys

import pytest

from lrbench.eval import allocator

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# Allocate, touch and free a 64 MiB tensor 20 times, as a network's activations are every batch; the fewest page
# faults of three such rounds. On a busy machine some of the kept pages are faulted in again (up to 3.5 times as
# many under a load of 8 on 2 cores), which only ever adds faults, so the best round is the one to compare.
FAULTS = """
import resource, sys, torch
from lrbench.eval.allocator import tune_allocator
state = tune_allocator()
rounds = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(16 * 2**20).fill_(1.0)
    rounds.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(rounds), state["tuned"])
"""


def _faults(**env) -> tuple[int, bool]:
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    faults, tuned = done.stdout.split()
    return int(faults), tuned == "True"


@glibc_only
def test_tuned_malloc_stops_refaulting_large_tensors_every_batch():
    default_faults, tuned = _faults(LRBENCH_TUNE_MALLOC="0")
    assert not tuned
    tuned_faults, tuned = _faults()
    assert tuned
    # 20 × 64 MiB = 327,680 pages faulted in afresh by glibc's default in every round; tuned, the heap keeps them
    assert default_faults > 200_000
    assert tuned_faults < default_faults / 2


@pytest.mark.parametrize(
    "env, why",
    [
        ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, "left to the user's MALLOC_MMAP_THRESHOLD_"),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "left to the user's GLIBC_TUNABLES"),
        ({"LRBENCH_TUNE_MALLOC": "0"}, "LRBENCH_TUNE_MALLOC=0"),
    ],
)
def test_the_users_own_malloc_settings_are_left_alone(monkeypatch, env, why):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    allocator.tune_allocator.cache_clear()
    try:
        state = allocator.tune_allocator()
    finally:
        allocator.tune_allocator.cache_clear()
    assert state["tuned"] is False and state["why"] == why


def test_the_manifest_records_the_allocator(synth_data, tmp_path):
    from click.testing import CliRunner

    from lrbench.cli import cli

    args = ["run", "--backbone", "lbp", "--data", str(synth_data.lfw_root), "--df", "1", "--out", str(tmp_path / "run"),
            "--json"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    recorded = json.loads((tmp_path / "run" / "manifest.json").read_text())["allocator"]
    assert recorded == allocator.tune_allocator()
    assert recorded["libc"].startswith(platform.libc_ver()[0] or "unknown")
