"""Training: margin heads, a data order that resumes exactly, classification and distillation end to end,
checkpoints that `lrbench run` evaluates and that resume to the same weights, and errors before training."""

import ast
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import invoke
from lrbench_plugins.networks.trainers import DistillTask
from lrbench_plugins.trainers import distill

import lrbench
import lrbench.training
from lrbench import BackboneSpec, DegradationSpec, InputSpec, SPHEREFACE_96x112, hookimpl, load_weights, registry
from lrbench.data.crops import images_digest
from lrbench.fileio import FILE_MODE, OutputLock
from lrbench.training import LAST, MODEL, Ranks, network_input, resolve_config, scan_folder
from lrbench.training.checkpoint import load_checkpoint, save_checkpoint
from lrbench.training.config import check_data_unchanged
from lrbench.training.data import EpochBatches, data_digest, degrade_each, people_by_fold, read_people
from lrbench.training.heads import ArcFace, ASoftmax, CosFace
from lrbench.training.loop import schedule_factor

TINY = ["--option", "depth=4", "--option", "width=0.125"]
TEACHER_TINY = ["--teacher-option", "depth=4", "--teacher-option", "width=0.125"]
QUICK = ["--batch-size", "8", "--workers", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small synthetic LFW-format set and a 6-identity × 4-image training set in CASIA layout."""
    from lrbench.data.synth import synthesize

    return synthesize(
        tmp_path_factory.mktemp("train") / "data",
        seed=1,
        pairs_per_fold=4,
        people_per_fold=3,
        images_per_person=3,
        train_identities=6,
        train_images_per_identity=4,
    )


def classify_args(data, out, *extra):
    return ["train", "classify", "--data", data.train_images, "--out", out, *TINY, *QUICK, *extra]


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    """A briefly trained tiny SphereFace, as a distillation teacher."""
    out = tmp_path_factory.mktemp("teacher") / "hr"
    result = invoke(*classify_args(data, out, "--steps", 6))
    assert result.exit_code == 0, result.output
    return out / "model.pt"


def distill_args(data, teacher, out, *extra):
    teacher_args = ["--teacher", "sphereface", "--teacher-weights", teacher, *TEACHER_TINY]
    return ["train", "distill", *teacher_args, "--data", data.train_images, "--out", out, *QUICK, *extra]


# -- heads ---------------------------------------------------------------------------------------------------


def _psi(theta):
    """SphereFace's ψ(θ) = (−1)^k cos(4θ) − 2k for θ in [kπ/4, (k+1)π/4]: decreasing over [0, π]."""
    k = torch.floor(4 * theta / math.pi)
    return (-1) ** k * torch.cos(4 * theta) - 2 * k


def _cosines(head, embeddings):
    return F.normalize(embeddings) @ F.normalize(head.weight).T


@pytest.mark.parametrize(
    "head, target",
    [
        (CosFace(8, 5, scale=30, margin=0.35), lambda cos, norm: 30 * (cos - 0.35)),
        (ArcFace(8, 5, scale=64, margin=0.5), lambda cos, norm: 64 * torch.cos(torch.acos(cos) + 0.5)),
        (ASoftmax(8, 5, lambda_min=0.0, base=0.0), lambda cos, norm: norm * _psi(torch.acos(cos))),
    ],
    ids=["cosface", "arcface", "asoftmax"],
)
def test_margin_heads_change_only_the_true_class_logit(head, target):
    torch.manual_seed(0)
    embeddings, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    head.weight.data = torch.randn(5, 8)
    logits = head(embeddings, labels, step=10**6)
    cos, norm = _cosines(head, embeddings), embeddings.norm(dim=1)
    scale = norm[:, None] if isinstance(head, ASoftmax) else head.scale
    others = ~F.one_hot(labels, 5).bool()
    torch.testing.assert_close(logits[others], (scale * cos)[others], rtol=1e-4, atol=1e-4)
    rows = torch.arange(6)
    torch.testing.assert_close(logits[rows, labels], target(cos[rows, labels], norm), rtol=1e-4, atol=1e-4)


def test_a_softmax_phases_its_margin_in_as_lambda_anneals():
    head = ASoftmax(8, 5)
    assert head.annealing(0) == 1000.0
    assert head.annealing(10**6) == 5.0
    embeddings, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    softmax_like = head(embeddings, labels, step=0)  # λ = 1000: the true logit barely moves from ‖x‖ cos θ
    cos = _cosines(head, embeddings)
    torch.testing.assert_close(softmax_like, embeddings.norm(dim=1, keepdim=True) * cos, atol=0.05, rtol=0.01)
    assert (head(embeddings, labels, step=10**6) < softmax_like - 1e-3).any()


# -- data ----------------------------------------------------------------------------------------------------


def test_data_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    full = list(EpochBatches(40, 8, seed=3, epoch=2, flip=True, dfs=[1, 4, 8]))
    assert len(full) == 5
    assert sorted(i for batch in full for i, _, _ in batch) == list(range(40))
    assert list(EpochBatches(40, 8, seed=3, epoch=2, start=3, flip=True, dfs=[1, 4, 8])) == full[3:]
    assert list(EpochBatches(40, 8, seed=3, epoch=3)) != list(EpochBatches(40, 8, seed=3, epoch=2))
    assert {df for batch in full for _, _, df in batch} == {1, 4, 8}


def test_processes_share_each_global_batch():
    single = list(EpochBatches(40, 8, seed=1, epoch=0, flip=True))
    ranks = [list(EpochBatches(40, 8, seed=1, epoch=0, rank=r, world=2, flip=True)) for r in range(2)]
    assert [a + b for a, b in zip(*ranks)] == single


def test_each_sample_is_degraded_at_its_own_df():
    apply = registry.degradation("bicubic").apply
    batch = torch.rand(3, 3, 112, 96) * 255
    out = degrade_each(batch, torch.tensor([1, 8, 4]), apply)
    torch.testing.assert_close(out[0], batch[0])
    torch.testing.assert_close(out[1:2], apply(batch[1:2], 8))
    torch.testing.assert_close(out[2:3], apply(batch[2:3], 4))


def test_identity_folders_give_labels_and_a_people_list_restricts_them(data, tmp_path):
    folder = scan_folder(data.train_images)
    assert len(folder.images) == 24 and folder.identities == [f"{k:07d}" for k in range(1, 7)]
    assert folder.labels.tolist() == [k for k in range(6) for _ in range(4)]
    (tmp_path / "people.txt").write_text("0000002\n0000005\n")
    chosen = scan_folder(data.train_images, read_people(tmp_path / "people.txt"))
    assert chosen.identities == ["0000002", "0000005"] and len(chosen.images) == 8


def test_lfw_people_files_select_people_by_fold(data):
    everyone = read_people(data.people)
    assert len(everyone) == 30
    assert read_people(data.people, "2-10") == everyone - read_people(data.people, "1")
    by_fold = people_by_fold(data.people)
    assert len(by_fold) == 10 and set(by_fold[0]) == read_people(data.people, "1")


def test_a_plain_name_list_has_no_folds(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("Ada_Lovelace\nAlan_Turing\n")
    with pytest.raises(lrbench.DataError, match=f"{names}: a plain list of names, not a people.txt with folds"):
        people_by_fold(names)


def test_a_flat_folder_has_no_labels(data, tmp_path):
    for rel in scan_folder(data.train_images).images[:3]:
        shutil.copy(data.train_images / rel, tmp_path / rel.replace("/", "_"))
    assert not scan_folder(tmp_path).has_labels


# -- classification --------------------------------------------------------------------------------------------


def test_classify_lowers_the_loss_and_its_checkpoints_evaluate_with_lrbench_run(data, tmp_path):
    out = tmp_path / "hr"
    validation = ["--val", "lfw-view2", "--val-data", data.lfw_root, "--val-every", 12]
    result = invoke(*classify_args(data, out, *["--steps", "24", "--lr", "3e-3", "--log-every", "3"], *validation))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 24 and summary["loss_last"] < 0.5 * summary["loss_first"]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "validation" in row] == [0, 12, 24]
    assert summary["best_validation"] == max(row["validation_mean"] for row in rows if "validation" in row)
    assert set(torch.load(out / "model.pt", weights_only=True)) == set(
        registry.backbone("sphereface").build("random", depth=4, width=0.125).state_dict()
    )
    accuracy = {}
    for weights in ("model.pt", "best.pt", "last.pt"):
        evaluation = ["--data", data.lfw_root, "--out", tmp_path / f"eval-{weights}", "--json"]
        run = invoke("run", "--backbone", "sphereface", "--weights", out / weights, *TINY, *evaluation)
        assert run.exit_code == 0, run.output
        accuracy[weights] = json.loads(run.stdout)["results"][0]["accuracy_mean"]
    assert accuracy["model.pt"] == accuracy["last.pt"] == pytest.approx(rows[-1]["validation"]["1"])
    assert accuracy["best.pt"] == pytest.approx(summary["best_validation"])


def test_the_learning_rate_warms_up_and_each_step_uses_its_scheduled_rate(data, tmp_path, recwarn):
    out = tmp_path / "hr"
    schedule = "--steps 9 --warmup-steps 3 --log-every 1 --optimizer sgd --lr 0.1 --schedule step --milestones 0.5"
    result = invoke(*classify_args(data, out, *schedule.split()))
    assert result.exit_code == 0, result.output
    logged = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    factor = schedule_factor("step", 9, 3, (0.5,))
    assert logged == pytest.approx([0.1 * factor(step) for step in range(9)])
    assert logged[:5] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1]) and logged[5] == pytest.approx(0.01)
    assert not [w for w in recwarn if "lr_scheduler" in str(w.message)]


def test_dataloader_workers_do_not_change_what_is_trained(data, tmp_path):
    for workers in (0, 2):
        result = invoke(*classify_args(data, tmp_path / f"w{workers}", "--steps", 4, "--workers", workers))
        assert result.exit_code == 0, result.output
    alone, with_workers = (torch.load(tmp_path / f"w{w}" / "model.pt") for w in (0, 2))
    assert all(torch.equal(alone[k], with_workers[k]) for k in alone)


def test_validating_leaves_the_training_untouched(data, tmp_path):
    plain = invoke(*classify_args(data, tmp_path / "plain", "--steps", 4))
    validated = invoke(
        *classify_args(
            data, tmp_path / "val", "--steps", 4, "--val", "lfw-view2", "--val-data", data.lfw_root, "--val-every", 2
        )
    )
    assert plain.exit_code == validated.exit_code == 0, plain.output + validated.output
    a, b = (torch.load(tmp_path / run / LAST) for run in ("plain", "val"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # validation draws no random numbers


class RecordingDegradation:
    """A degradation that records each DF and option it is applied with, and leaves the images as they are."""

    def __init__(self):
        self.calls = []

    def apply(self, batch, df, strength=1.0):
        self.calls.append((df, strength))
        return batch

    @hookimpl
    def register_degradations(self, register):
        register(DegradationSpec("recording", self.apply, options={"strength": 1.0}))


def test_validation_uses_the_trainers_degradation_its_options_and_crop_cache(
    data, tmp_path, plugin_manager, monkeypatch
):
    recorder = RecordingDegradation()
    plugin_manager.register_for_test(recorder, name="recording-degradation")
    monkeypatch.setenv("LRBENCH_CACHE_DIR", str(tmp_path / "default-cache"))
    degradation = ["--degradation", "recording", "--degradation-option", "strength=3"]
    validation = ["--val", "lfw-view2", "--val-data", data.lfw_root, "--val-df", "1,4"]
    cache = ["--cache-dir", tmp_path / "cache"]
    result = invoke(*classify_args(data, tmp_path / "hr", "--steps", 2, *degradation, *validation, *cache))
    assert result.exit_code == 0, result.output
    assert (4, 3.0) in recorder.calls and {strength for _, strength in recorder.calls} == {3.0}
    assert any((tmp_path / "cache").iterdir()) and not (tmp_path / "default-cache").exists()


def test_cosine_schedule_decays_to_zero_after_warm_up():
    factor = schedule_factor("cosine", 100, 10, ())
    assert factor(0) == pytest.approx(0.1) and factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(99) < 0.001


# -- distillation --------------------------------------------------------------------------------------------


def _distill_task(data, teacher, tmp_path, *extra) -> DistillTask:
    args = [str(a) for a in distill_args(data, teacher, tmp_path / "lr", *extra)[2:]]
    ctx = distill.make_context("distill", args)
    config, _ = resolve_config(ctx, "distill", ctx.params)
    torch.manual_seed(0)
    return DistillTask(config, Ranks(0, 1, torch.device("cpu")))


def test_the_teacher_is_frozen_and_gets_no_gradients(data, teacher, tmp_path):
    task = _distill_task(data, teacher, tmp_path)
    assert not task.teacher.training and not any(p.requires_grad for p in task.teacher.parameters())
    assert not any(module is task.teacher for module in task.module.modules())
    batch = task.dataset.__getitems__([(0, False, 8), (5, True, 8)])
    task.module.train()(**task.inputs(batch, torch.device("cpu"))).backward()
    assert all(p.grad is None for p in task.teacher.parameters())
    assert all(p.grad is not None for p in task.module.parameters())


def test_the_student_starts_as_the_teacher(data, teacher, tmp_path):
    task = _distill_task(data, teacher, tmp_path)
    student, expected = task.module.backbone.state_dict(), torch.load(teacher, weights_only=True)
    assert all(torch.equal(student[k], expected[k]) for k in expected)


class GridColourNet(torch.nn.Module):
    """A tiny backbone: the mean colours of a 4×4 grid through a linear layer."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(48, 48)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(x, 4).flatten(1))


def _grid_colour_net(weights):
    """No --weights: fixed weights from the backbone's default source, as a package's shipped weights."""
    net = GridColourNet()
    if weights is None:
        with torch.no_grad():
            net.fc.weight.copy_(torch.linspace(-1, 1, 48 * 48).reshape(48, 48))
            net.fc.bias.fill_(0.5)
    elif weights != "random":
        load_weights(net, weights)
    return net


class DefaultWeightsPlugin:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneSpec("default-weights", _grid_colour_net, InputSpec(SPHEREFACE_96x112), 48))


def test_the_student_starts_as_a_teacher_whose_weights_come_from_its_default_source(data, tmp_path, plugin_manager):
    plugin_manager.register_for_test(DefaultWeightsPlugin(), name="default-weights-plugin")
    args = ["--teacher", "default-weights", "--data", data.train_images, "--out", tmp_path / "lr", *QUICK]
    ctx = distill.make_context("distill", [str(a) for a in args])
    task = DistillTask(resolve_config(ctx, "distill", ctx.params)[0], Ranks(0, 1, torch.device("cpu")))
    expected = _grid_colour_net(None).state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in task.module.backbone.state_dict().items())
    batch = task.dataset.__getitems__([(0, False, 1), (7, True, 1)])
    images = network_input(batch["student"], task.spec.input, torch.device("cpu"))
    assert torch.equal(task.module.backbone.eval()(images), task.teacher(images))


def test_cached_teacher_features_equal_the_teachers_own_on_the_crop_and_its_mirror(data, teacher, tmp_path):
    cached, live = _distill_task(data, teacher, tmp_path), _distill_task(data, teacher, tmp_path, "--no-teacher-cache")
    assert cached.targets.shape == (2, 24, 512) and live.targets is None
    batch = cached.dataset.__getitems__([(3, False, 8), (3, True, 8), (17, True, 8)])
    cpu = torch.device("cpu")
    torch.testing.assert_close(
        cached.inputs(batch, cpu)["targets"], live.inputs(batch, cpu)["targets"], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("flip", ["--flip", "--no-flip"])
def test_fused_targets_are_the_mean_of_the_teachers_features_on_the_crop_and_its_mirror(data, teacher, tmp_path, flip):
    own = _distill_task(data, teacher, tmp_path).targets
    fused = _distill_task(data, teacher, tmp_path, "--fused-targets", flip)
    live = _distill_task(data, teacher, tmp_path, "--fused-targets", flip, "--no-teacher-cache")
    torch.testing.assert_close(fused.targets[0], own.mean(dim=0))
    batch = fused.dataset.__getitems__([(3, False, 8), (3, True, 8), (17, True, 8)])
    cpu = torch.device("cpu")
    targets = fused.inputs(batch, cpu)["targets"]
    torch.testing.assert_close(targets[0], targets[1])
    torch.testing.assert_close(targets, live.inputs(batch, cpu)["targets"], rtol=1e-4, atol=1e-5)


def test_distance_relations_ignore_where_and_how_large_the_features_are():
    from lrbench_plugins.networks.trainers import distance_relations

    features = torch.randn(6, 5)
    relations = distance_relations(features)
    assert relations.shape == (30,) and relations.mean().item() == pytest.approx(1)
    torch.testing.assert_close(distance_relations(3 * features + 7), relations)
    assert not torch.allclose(distance_relations(features * torch.tensor([4.0, 1, 1, 1, 1])), relations)


def test_the_relational_loss_adds_to_the_feature_loss_and_trains(data, teacher, tmp_path):
    plain, related = (_distill_task(data, teacher, tmp_path / str(w), "--relation-weight", w) for w in (0, 10))
    batch = plain.dataset.__getitems__([(k, k % 2 == 0, 8) for k in range(8)])
    cpu = torch.device("cpu")
    losses = [task.module.train()(**task.inputs(batch, cpu)) for task in (plain, related)]
    assert losses[1] > losses[0] > 0
    losses[1].backward()
    assert all(p.grad is not None for p in related.module.backbone.parameters())
    out = tmp_path / "run"
    result = invoke(*distill_args(data, teacher, out, "--steps", 12, "--log-every", 3, "--df", "4-8",
                                  "--relation-weight", 1, "--fused-targets"))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"]


def test_distill_learns_from_a_folder_without_identities(data, teacher, tmp_path):
    flat = tmp_path / "faces"
    flat.mkdir()
    lines = (data.train_landmarks).read_text().splitlines()
    for line in lines:
        shutil.copy(data.train_images / line.split("\t")[0], flat / line.split("\t")[0].replace("/", "_"))
    (flat / "landmarks.txt").write_text("".join(line.replace("/", "_", 1) + "\n" for line in lines))
    out = tmp_path / "lr"
    teacher_args = ["--teacher", "sphereface", "--teacher-weights", teacher, *TEACHER_TINY]
    training = ["--steps", "12", "--log-every", "3", "--df", "4-8"]
    result = invoke("train", "distill", *teacher_args, "--data", flat, "--out", out, *QUICK, *training)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"]
    assert summary["teacher_cache"]["features"] == 2 * 24


# -- checkpoints and resume --------------------------------------------------------------------------------


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "lrbench", *(str(a) for a in args)]


def _step_of(path) -> int:
    return torch.load(path, weights_only=True)["step"]


def _start_and_wait_for_checkpoint(args, out) -> subprocess.Popen:
    process = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / LAST).exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.01)
    return process


def test_a_run_killed_with_sigkill_resumes_to_exactly_the_same_weights(data, tmp_path):
    """Only the killed run needs a process of its own; the reference and the resume run in this one."""
    steps = ("--steps", 60, "--checkpoint-every", 5, "--log-every", 10)
    reference = tmp_path / "reference"
    result = invoke(*classify_args(data, reference, *steps))
    assert result.exit_code == 0, result.output
    killed = tmp_path / "killed"
    process = _start_and_wait_for_checkpoint(classify_args(data, killed, *steps), killed)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert 0 < _step_of(killed / LAST) < 60, "the run finished before it was killed"
    assert not (killed / "model.pt").exists()
    result = invoke("train", "classify", "--resume", killed)
    assert result.exit_code == 0, result.output
    final, expected = torch.load(killed / "model.pt"), torch.load(reference / "model.pt")
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in expected)
    head, expected_head = torch.load(killed / LAST)["head"], torch.load(reference / LAST)["head"]
    assert torch.equal(head["head.weight"], expected_head["head.weight"])


def test_ctrl_c_saves_a_checkpoint_and_exits_with_130(data, tmp_path):
    out = tmp_path / "run"
    process = _start_and_wait_for_checkpoint(classify_args(data, out, "--steps", 5000, "--checkpoint-every", 5), out)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    step = _step_of(out / LAST)
    assert f"interrupted at step {step}" in stderr and f"--resume {out}" in stderr
    assert 0 < step < 5000


def test_resuming_a_finished_run_says_so_and_changes_nothing(data, tmp_path):
    out = tmp_path / "hr"
    assert invoke(*classify_args(data, out, "--steps", 2)).exit_code == 0
    files = ("summary.json", "log.jsonl", "model.pt", LAST)
    before = {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in files}
    result = invoke("train", "classify", "--resume", out)
    assert result.exit_code == 0
    assert result.output == f"--resume {out}: the run finished at step 2; nothing to do (its model: {out / MODEL})\n"
    assert {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in files} == before


def test_a_distillation_resumes_from_its_folder_alone(data, teacher, tmp_path):
    out = tmp_path / "lr"
    assert invoke(*distill_args(data, teacher, out, "--steps", 2)).exit_code == 0
    result = invoke("train", "distill", "--resume", out)  # the teacher comes from the run's configuration
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"--resume {out}: the run finished at step 2; nothing to do")


def test_resume_refuses_training_images_or_landmarks_that_changed(data, tmp_path):
    casia = tmp_path / "casia"
    shutil.copytree(data.train_images.parent, casia)
    out = tmp_path / "run"
    args = ["train", "classify", "--data", casia / "images", "--out", out, *TINY, *QUICK]
    process = _start_and_wait_for_checkpoint([*args, "--steps", 5000, "--checkpoint-every", 2], out)
    process.send_signal(signal.SIGINT)
    assert process.communicate(timeout=120) and process.returncode == 130

    image = casia / "images" / "0000002" / "003.jpg"
    image.write_bytes(image.read_bytes() + b"\0")  # edited: still a readable JPEG
    result = invoke("train", "classify", "--resume", out)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {casia / 'images'}: changed since the run in {out} started")

    shutil.copytree(data.train_images.parent, casia, dirs_exist_ok=True)  # the images as they were
    landmarks = casia / "landmarks.txt"
    name, *points = landmarks.read_text().splitlines()[0].split("\t")
    edited = "\t".join([name, *points[:-1], str(float(points[-1]) + 1)])
    landmarks.write_text(landmarks.read_text().replace("\t".join([name, *points]), edited, 1))
    result = invoke("train", "classify", "--resume", out)
    assert result.exit_code == 1 and result.output.startswith(f"Error: {landmarks}: changed since"), result.output


def test_the_data_digest_reads_the_images_bytes_not_their_dates(data, tmp_path):
    """A copy with fresh dates (another disk, a data folder provisioned afresh) resumes; an edit is still seen."""
    copy = tmp_path / "copy"
    shutil.copytree(data.train_images, copy, copy_function=shutil.copy)  # contents only: new modification times
    digests = [data_digest(images_digest(folder.root, folder.images), None)
               for folder in (scan_folder(data.train_images), scan_folder(copy))]
    assert digests[0] == digests[1]
    config = {"out": "run", "data_digest": digests[0]}
    check_data_unchanged(config, digests[1], copy, None)  # not refused

    image = next(copy.rglob("*.jpg"))
    image.write_bytes(image.read_bytes()[:-1] + b"\0")  # same size
    edited = data_digest(images_digest(copy, scan_folder(copy).images), None)
    with pytest.raises(lrbench.DataError, match=f"^{re.escape(str(copy))}: changed since the run in run started"):
        check_data_unchanged(config, edited, copy, None)


def test_a_record_by_file_dates_resumes_with_a_warning_and_becomes_a_content_record(data, tmp_path, capsys):
    landmarks = tmp_path / "landmarks.txt"
    landmarks.write_text("a.jpg\t1 2 3 4 5 6 7 8 9 10\n")
    now = data_digest(images_digest(data.train_images, scan_folder(data.train_images).images), landmarks)
    config = {"out": "run", "data_digest": {"images": "dates", "landmarks": now["landmarks"]}}
    check_data_unchanged(config, now, data.train_images, landmarks)
    assert "recorded its images by their file dates" in capsys.readouterr().err
    assert config["data_digest"] == now
    stale = {**config, "data_digest": {"images": "dates", "landmarks": "another file"}}
    with pytest.raises(lrbench.DataError, match=f"^{re.escape(str(landmarks))}: changed since"):
        check_data_unchanged(stale, now, data.train_images, landmarks)  # the landmark file is still checked


def _flip_a_byte_inside_a_tensor(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor's data (a ``data/`` entry of torch.save's zip)."""
    with zipfile.ZipFile(path) as archive:
        entry = max((e for e in archive.infolist() if "/data/" in e.filename), key=lambda e: e.file_size)
    assert entry.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[entry.header_offset + 26 : entry.header_offset + 30])
    raw[entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_a_checkpoint_is_an_error_naming_the_file(data, tmp_path):
    out = tmp_path / "hr"
    assert invoke(*classify_args(data, out, "--steps", 2)).exit_code == 0
    (out / "summary.json").unlink()  # as if killed after the last checkpoint: resuming reads last.pt
    _flip_a_byte_inside_a_tensor(out / LAST)
    result = invoke("train", "classify", "--resume", out)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {out / LAST}: damaged: ")
    assert "does not match its checksum" in result.output
    assert not (out / "summary.json").exists()


def test_a_second_trainer_on_the_same_run_folder_is_refused_before_writing(data, tmp_path):
    out = tmp_path / "hr"
    with OutputLock(out, command="another trainer"):
        result = invoke(*classify_args(data, out, "--steps", 2))
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: --out {out}: in use by lrbench process {os.getpid()}"), result.output
    assert not out.exists()


def test_run_files_get_the_users_umask_permissions(data, tmp_path):
    out = tmp_path / "hr"
    validation = ["--val", "lfw-view2", "--val-data", data.lfw_root]
    assert invoke(*classify_args(data, out, "--steps", 2, *validation)).exit_code == 0
    files = ("summary.json", "log.jsonl", "model.pt", LAST, "best.pt")
    assert {name: (out / name).stat().st_mode & 0o777 for name in files} == dict.fromkeys(files, FILE_MODE)


def test_resume_keeps_the_runs_settings(data, tmp_path):
    out = tmp_path / "hr"
    assert invoke(*classify_args(data, out, "--steps", 3)).exit_code == 0
    changed = invoke("train", "classify", "--resume", out, "--lr", "0.5")
    assert changed.exit_code == 2 and "--lr 0.5: the run in" in changed.output
    again = invoke(*classify_args(data, out, "--steps", 3))
    assert again.exit_code == 2 and f"--resume {out}" in again.output


def test_a_run_started_before_an_option_existed_resumes_with_its_default(data, teacher, tmp_path):
    """A checkpoint's configuration lacks the options added after it was written: they take their defaults."""
    out = tmp_path / "lr"
    assert invoke(*distill_args(data, teacher, out, "--steps", 4, "--checkpoint-every", 2)).exit_code == 0
    state = load_checkpoint(out / LAST)
    for option in ("fused_targets", "relation_weight", "detector", "detector_options", "detector_weights"):
        del state["config"][option]
    state["step"] = 2
    save_checkpoint(state, out / LAST)
    (out / "summary.json").unlink()
    result = invoke("train", "distill", "--resume", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


# -- what a training run may replace ---------------------------------------------------------------------------


def test_a_new_run_never_replaces_files_lrbench_did_not_write(data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"model.pt": b"my own weights", "log.jsonl": b"my own notes\n", "summary.json": b'{"mine": 1}\n'}
    for name, content in mine.items():
        (out / name).write_bytes(content)
    result = invoke(*classify_args(data, out, "--steps", 1))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: --out {out}: holds log.jsonl, model.pt, summary.json, which a new training run would replace or mix "
        "with, so lrbench will not start one there; choose a new or empty folder"
    )
    assert {path.name: path.read_bytes() for path in out.iterdir()} == mine


def test_a_new_run_starts_where_a_killed_one_left_only_its_log_and_temporaries(data, tmp_path):
    out = tmp_path / "hr"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 1, "epoch": 0, "loss": 9.5}\n{"step": 2, "ep')  # cut by the kill
    (out / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    assert invoke(*classify_args(data, out, "--steps", 2)).exit_code == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows and all(row["loss"] != 9.5 for row in rows)  # this run's log only, every line whole
    assert sorted(path.name for path in out.iterdir()) == ["last.pt", "log.jsonl", "model.pt", "summary.json"]


def test_a_full_disk_while_training_is_one_line_naming_the_checkpoint(data, tmp_path, monkeypatch):
    from full_disk import fill_disk

    out = tmp_path / "hr"
    fill_disk(monkeypatch, tmp_path, calls=("fsync",))
    result = invoke(*classify_args(data, out, "--steps", 2))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {out / LAST}: cannot write it (No space left on device)"
    assert sorted(path.name for path in out.iterdir()) == ["log.jsonl"]  # no temporary file, no lock


# -- errors before training ------------------------------------------------------------------------------------


def _bad_teacher(tmp_path):
    state = registry.backbone("sphereface").build("random", depth=4, width=0.25).state_dict()
    torch.save(state, tmp_path / "wide.pt")
    return tmp_path / "wide.pt"


def _nan_weights(tmp_path):
    """Tiny SphereFace weights whose every embedding is NaN in its first dimension."""
    state = registry.backbone("sphereface").build("random", depth=4, width=0.125).state_dict()
    state["fc5.bias"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    return tmp_path / "nan.pt"


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty folder", "no images"),
        ("landmarks miss images", "no landmarks for 4 of 24 images"),
        ("teacher does not fit", "fits none of the layouts"),
        ("teacher gives NaN", "the teacher's cached features: NaN or infinite values under --precision fp32"),
        ("student diverges", "the training loss by step 1: NaN or infinite values"),
        ("DF outside the crop", "--df 200: DF 200 is larger than the 96×112 crop"),
        ("resolution augment outside the crop", "--resolution-augment 1-99: DF"),
        ("distill without a teacher", "--teacher NAME is required"),
        ("validation DF of 0", "--val-df 0: DF must be at least 1"),
        ("a file in the way of --out", "is a file, not a folder"),
        ("no CUDA", "--device cuda: CUDA is not available"),
        ("fp16 on a CPU", "--precision fp16 needs a CUDA device"),
        ("batch larger than the data", "--batch-size 64: larger than the 24 training images"),
        ("resume without a checkpoint", "no last.pt there"),
        ("classify without identities", "classification needs identity folders"),
    ],
)
def test_bad_input_is_one_clear_error_before_anything_is_written(data, teacher, tmp_path, case, message):
    out = tmp_path / "out"
    args = {
        "empty folder": lambda: classify_args(data, out) + ["--data", tmp_path],
        "landmarks miss images": lambda: classify_args(data, out) + ["--landmarks", _cut_landmarks(data, tmp_path)],
        "teacher does not fit": lambda: distill_args(data, _bad_teacher(tmp_path), out),
        "teacher gives NaN": lambda: distill_args(data, _nan_weights(tmp_path), out),
        "student diverges": lambda: distill_args(data, teacher, out, "--student-weights", _nan_weights(tmp_path),
                                                 "--log-every", 1),
        "DF outside the crop": lambda: distill_args(data, teacher, out, "--df", 200),
        "resolution augment outside the crop": lambda: classify_args(data, out, "--resolution-augment", "1-99"),
        "distill without a teacher": lambda: ["train", "distill", "--data", data.train_images, "--out", out],
        "validation DF of 0": lambda: classify_args(
            data, out, "--val", "lfw-view2", "--val-data", data.lfw_root, "--val-df", 0
        ),
        "a file in the way of --out": lambda: classify_args(data, _a_file(tmp_path)),
        "no CUDA": lambda: classify_args(data, out, "--device", "cuda"),
        "fp16 on a CPU": lambda: classify_args(data, out, "--precision", "fp16"),
        "batch larger than the data": lambda: classify_args(data, out, "--batch-size", 64),
        "resume without a checkpoint": lambda: ["train", "classify", "--resume", tmp_path],
        "classify without identities": lambda: classify_args(data, out) + ["--data", _flat(data, tmp_path)],
    }[case]()
    if case == "no CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke(*args)
    assert result.exit_code in (1, 2) and message in result.output, result.output
    assert "Traceback" not in result.output and not (out / LAST).exists()


def _a_file(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    return tmp_path / "a-file"


def _cut_landmarks(data, tmp_path):
    lines = data.train_landmarks.read_text().splitlines()
    (tmp_path / "cut.txt").write_text("".join(line + "\n" for line in lines[4:]))
    return tmp_path / "cut.txt"


def _flat(data, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(data.train_images / "0000001" / "001.jpg", flat / "a.jpg")
    first = data.train_landmarks.read_text().splitlines()[0]
    (flat / "landmarks.txt").write_text("a.jpg\t" + first.split("\t", 1)[1] + "\n")
    return flat


def test_width_scales_sphereface_channels():
    spec = registry.backbone("sphereface")
    narrow = spec.build("random", depth=4, width=0.25)
    assert [m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64, 128]
    assert narrow(torch.zeros(1, 3, 112, 96)).shape == (1, 512)
    assert narrow.fc5.in_features == 128 * 7 * 6


def test_the_built_in_trainers_use_only_lrbench_and_the_documented_training_api():
    plugins = Path(__file__).resolve().parents[1] / "plugins"
    trees = [ast.parse((plugins / name).read_text()) for name in ("trainers.py", "networks/trainers.py")]
    public = {"lrbench": set(lrbench.__all__), "lrbench.training": set(lrbench.training.__all__)}
    imported = [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    from_lrbench = [node for node in imported if node.module.split(".")[0] == "lrbench"]
    assert {node.module for node in from_lrbench} == set(public)
    assert all(alias.name in public[node.module] for node in from_lrbench for alias in node.names)
    assert not [node for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Import)
                and any(alias.name.startswith("lrbench") for alias in node.names)]


def _documented_trainer() -> types.ModuleType:
    """The trainer built on lrbench.training in docs/plugins.md (the second example of its trainer section)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    section = doc.split("## register_trainers(", 1)[1].split("\n## ", 1)[0]
    module = types.ModuleType("doc_softmax_trainer")
    exec(compile(re.findall(r"```python\n(.*?)```", section, re.S)[1], "docs/plugins.md", "exec"), module.__dict__)
    return module


def test_the_documented_trainer_trains_with_the_public_api(data, tmp_path, plugin_manager):
    plugin_manager.register_for_test(_documented_trainer(), name="doc-softmax-trainer")
    out = tmp_path / "softmax"
    result = invoke("train", "softmax", "--data", data.train_images, "--out", out, *TINY, *QUICK, "--steps", 2)
    assert result.exit_code == 0, result.output
    assert result.output.endswith(f"2 steps; model: {out}/model.pt\n")
    expected = registry.backbone("sphereface").build("random", depth=4, width=0.125).state_dict()
    assert torch.load(out / MODEL, weights_only=True).keys() == expected.keys()
