"""torchrun: two CPU processes (gloo) train as one process does on the same global batch, and end identical."""

import json
import subprocess
import sys

import pytest
import torch
from cli_helpers import invoke

from lrbench import registry
from lrbench.eval.distributed import state_digest

TINY = {"depth": 4, "width": 0.125}


@pytest.fixture
def teacher(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "teacher.pt"
    torch.save(registry.backbone("sphereface").build("random", **TINY).state_dict(), path)
    return path


def _distill_args(data, teacher, out) -> list[str]:
    """Distillation with a random DF per sample and mirrored samples: every per-sample choice must be the
    same whether one process or two draw it."""
    options = [arg for name, value in TINY.items() for arg in ("--teacher-option", f"{name}={value}")]
    args = [
        "train",
        "distill",
        "--teacher",
        "sphereface",
        "--teacher-weights",
        teacher,
        *options,
        "--df",
        "2-8",
        "--data",
        data.train_images,
        "--out",
        out,
        "--batch-size",
        4,
        "--steps",
        6,
        "--optimizer",
        "sgd",
        "--lr",
        0.5,
    ]
    return [str(a) for a in args]


def _trained(out) -> tuple[dict, dict]:
    return json.loads((out / "summary.json").read_text()), torch.load(out / "model.pt", weights_only=True)


def test_torchrun_with_two_processes_matches_one_process_and_both_ranks_agree(synth_data, teacher, tmp_path):
    """torchrun needs processes of its own; the one-process reference runs in this one."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lrbench"]
    done = subprocess.run([*torchrun, *_distill_args(synth_data, teacher, tmp_path / "ddp")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = invoke(*_distill_args(synth_data, teacher, tmp_path / "single"))
    assert result.exit_code == 0, result.output
    (summary, distributed), (_, single) = _trained(tmp_path / "ddp"), _trained(tmp_path / "single")

    assert summary["processes"] == 2 and summary["global_batch"] == 4
    assert summary["teacher_cache"]["features"] == 2 * 12  # every image and its mirror, computed in shares
    ranks = summary["weights_sha256_per_rank"]
    assert len(ranks) == 2 and ranks[0] == ranks[1] == state_digest(distributed)

    initial = torch.load(teacher, weights_only=True)  # the student starts as the teacher
    assert not torch.equal(distributed["fc5.weight"], initial["fc5.weight"])
    for key, value in distributed.items():  # equal up to the order of summation
        torch.testing.assert_close(value, single[key], rtol=1e-4, atol=1e-6)
