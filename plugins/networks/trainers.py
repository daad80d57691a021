"""What the built-in trainers run (their commands are declared in plugins/trainers.py): the modules they optimise
and their tasks.

``classify`` trains a backbone and a margin head on identity folders; ``distill`` teaches a student that sees
the degraded face a frozen teacher's features on the high-resolution face, as the seed project did.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F
from torch import nn

from lrbench import DataError, UsageError, read_state_dict
from lrbench.training import (
    HEADS,
    LAST,
    CropBatches,
    MarginHead,
    Ranks,
    degradation,
    dfs_option,
    embedding_size,
    features_of_all,
    frozen_network,
    loop_settings,
    network_input,
    resolve_config,
    resolve_precision,
    train,
    trainable_network,
    training_data,
)

PROJECTION = "projection.pt"  # a distillation run's student → teacher feature projection, beside model.pt


def _head(name: str, dim: int, classes: int, scale: float | None, margin: float | None) -> MarginHead:
    """A margin head with the user's --scale/--margin where given (each head has its paper's defaults)."""
    if name == "softmax" and (scale, margin) != (None, None):
        raise UsageError("--scale/--margin: the softmax head has neither")
    if name == "asoftmax" and scale is not None:
        raise UsageError("--scale: A-Softmax scales each logit by the embedding's norm, not a constant")
    if name == "asoftmax" and margin is not None and margin not in (1, 2, 3, 4):
        raise UsageError(f"--margin {margin}: A-Softmax's margin is an integer m in 1…4 (cos mθ)")
    options = {key: value for key, value in (("scale", scale), ("margin", margin)) if value is not None}
    if name == "asoftmax" and margin is not None:
        options["margin"] = int(margin)
    return HEADS[name](dim, classes, **options)


class Classifier(nn.Module):
    """A backbone and a margin head; ``forward`` returns the cross-entropy loss."""

    def __init__(self, backbone: nn.Module, head: MarginHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor, labels: torch.Tensor, step: int = 0) -> torch.Tensor:
        embeddings = self.backbone(images)
        with torch.autocast(images.device.type, enabled=False):
            return F.cross_entropy(self.head(embeddings.float(), labels, step), labels)


class ClassifyTask:
    """Classification training on identity folders, optionally at a random DF per sample."""

    def __init__(self, config: dict, ranks: Ranks):
        self.spec, backbone = trainable_network(config["backbone"], config["weights"], config["option"])
        template = self.spec.input.template
        self.dfs = dfs_option(config["resolution_augment"], template, "--resolution-augment")
        self.degrade = degradation(config["degradation"], config["degradation_option"])
        folder, crops = training_data(config, {"crops": template}, ranks)
        if not folder.has_labels:
            raise DataError(f"{folder.root}: classification needs identity folders (one sub-folder per person)")
        head = _head(
            config["loss"],
            embedding_size(backbone, self.spec.input),
            len(folder.identities),
            config["scale"],
            config["margin"],
        )
        self.module = Classifier(backbone, head)
        self.dataset = CropBatches(crops, folder.labels)
        self.flip = config["flip"]
        self.backbone_name, self.backbone_options = config["backbone"], tuple(config["option"])
        self.data = folder.describe()

    def inputs(self, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        images = network_input(batch["crops"], self.spec.input, device, batch["df"], self.degrade)
        return {"images": images, "labels": batch["label"].to(device, non_blocking=True)}

    def summary(self) -> dict:
        return {"images": len(self.dataset), "identities": self.data["identities"], "data": self.data}


def distance_relations(features: torch.Tensor) -> torch.Tensor:
    """The batch's pairwise Euclidean distances (off the diagonal, row-major) over their mean: what relational
    distillation (Park et al., RKD, CVPR 2019) asks the student to share with the teacher, whatever the scale."""
    squared = features.pow(2).sum(dim=1)
    distances = (squared[:, None] + squared[None, :] - 2 * features @ features.T).clamp_min(1e-12).sqrt()
    off_diagonal = ~torch.eye(len(features), dtype=torch.bool, device=features.device)
    distances = distances[off_diagonal]
    return distances / distances.mean().clamp_min(1e-12)


class Distiller(nn.Module):
    """A student, its feature loss and optionally a classification head; ``forward`` returns the loss.

    With ``relation_weight`` > 0 the loss adds that times the smooth-L1 distance between the student's and the
    teacher's normalised pairwise distances within the batch: the student then also keeps how far apart the
    teacher places faces, which matters for verification more than each feature's exact position.

    ``projection`` (a linear map, learned with the student) carries the student's features into the teacher's
    space when their lengths differ, where they mimic the teacher's features less ``teacher_mean`` (its mean
    over the training images): descriptors such as dlib's share a large common part (on LFW their cosine to
    their mean is 0.92), which a projected student matches without learning anything of faces. Centring moves
    no Euclidean distance. The classification head sees the student's own features.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_loss: str,
        head: MarginHead | None,
        cls_weight: float,
        projection: nn.Linear | None = None,
        relation_weight: float = 0.0,
    ):
        super().__init__()
        self.backbone, self.head, self.feature_loss, self.cls_weight = backbone, head, feature_loss, cls_weight
        self.relation_weight = relation_weight
        self.projection = projection
        if projection is not None:
            self.register_buffer("teacher_mean", torch.zeros(projection.out_features))

    def forward(self, images, targets, labels=None, step: int = 0) -> torch.Tensor:
        embeddings = self.backbone(images)
        with torch.autocast(images.device.type, enabled=False):
            embeddings = embeddings.float()
            mimic = embeddings
            if self.projection is not None:
                mimic, targets = self.projection(embeddings), targets - self.teacher_mean
            if self.feature_loss == "mse":
                loss = F.mse_loss(mimic, targets)
            else:
                loss = (1 - F.cosine_similarity(mimic, targets)).mean()
            if self.relation_weight:
                relations = F.smooth_l1_loss(distance_relations(mimic), distance_relations(targets))
                loss = loss + self.relation_weight * relations
            if self.head is not None:
                loss = loss + self.cls_weight * F.cross_entropy(self.head(embeddings, labels, step), labels)
        return loss


class DistillTask:
    """Feature distillation: the student sees each crop degraded at its DF, the teacher the crop itself.

    The teacher is frozen (eval mode, no gradients, outside the optimised module). Its inputs never change
    (the crop and, with --flip, its mirror image), so by default its features are computed once, before
    training, instead of in every step. With ``--fused-targets`` the target of a crop and of its mirror image is
    the mean of the teacher's features on both: one pose-symmetric description of the face, as flip-fused
    evaluation describes it.
    """

    def __init__(self, config: dict, ranks: Ranks):
        self.teacher_spec, self.teacher = frozen_network(
            config["teacher"],
            config["teacher_weights"],
            config["teacher_option"],
            "--teacher-weights",
            "--teacher-option",
        )
        name = config["student"] or config["teacher"]
        same = name == config["teacher"] and not config["student_option"]
        options = config["teacher_option"] if same else config["student_option"]
        if same and not config["student_weights"]:
            # The teacher's weights as they were loaded, whatever their source (a file, or the backbone's
            # default such as weights shipped with a package), not a second reading of --teacher-weights.
            try:
                self.spec, student = trainable_network(name, "random", options, "--student-option")
            except UsageError:  # what cannot be built untrained (a model file: onnx, torchscript) cannot learn
                raise UsageError(
                    f"--teacher {name}: runs a model file, whose network is not trained here; name the student's "
                    "backbone with --student (e.g. --student iresnet)"
                ) from None
            student.load_state_dict(self.teacher.state_dict())
        else:
            self.spec, student = trainable_network(name, config["student_weights"], options, "--student-option")
        self.dfs = dfs_option(config["df"], self.spec.input.template, "--df")
        self.degrade = degradation(config["degradation"], config["degradation_option"])
        dims = embedding_size(self.teacher, self.teacher_spec.input), embedding_size(student, self.spec.input)
        projection = None if dims[0] == dims[1] else nn.Linear(dims[1], dims[0])
        self.projection = None
        if projection is not None:
            if not config["teacher_cache"]:
                raise UsageError(f"--no-teacher-cache: the student embeds {dims[1]}-d, the teacher {dims[0]}-d, and "
                                 "the projection between them needs the teacher's mean feature, which the cache gives")
            self.projection = {"student": dims[1], "teacher": dims[0], "targets": "centred on the teacher's mean "
                               "feature over the training images", "file": PROJECTION}
            if ranks.main:
                click.echo(
                    f"distill: the student embeds {dims[1]}-d, the teacher {dims[0]}-d: a linear projection "
                    f"{dims[1]} → {dims[0]}, learned with the student, carries its features to the teacher's (centred "
                    f"on their mean) for the loss (saved as {PROJECTION}; evaluation uses the student's own "
                    f"{dims[1]}-d features)",
                    err=True,
                )
        templates = {"student": self.spec.input.template}
        if self.teacher_spec.input.template != self.spec.input.template:
            templates["teacher"] = self.teacher_spec.input.template
        folder, crops = training_data(config, templates, ranks)
        head = None
        if config["cls_weight"] > 0:
            if not folder.has_labels:
                raise DataError(f"{folder.root}: --cls-weight needs identity folders (one sub-folder per person)")
            head = _head(config["cls_loss"], dims[1], len(folder.identities), config["scale"], config["margin"])
        self.module = Distiller(
            student,
            config["loss"],
            head,
            config["cls_weight"],
            projection=projection,
            relation_weight=config["relation_weight"],
        )
        self.fused = config["fused_targets"]
        self.teacher.to(ranks.device, memory_format=torch.channels_last)
        self.targets, self.cache_s = None, None
        if config["teacher_cache"]:
            started = time.perf_counter()
            teacher_crops = crops.pop("teacher", crops["student"])
            self.targets = features_of_all(
                self.teacher,
                teacher_crops,
                self.teacher_spec.input,
                config["flip"] or self.fused,
                ranks,
                config["batch_size"],
                resolve_precision(config["precision"], ranks.device),
            )
            if self.fused:  # one target per image, the same for its mirror image (still indexed by flip)
                self.targets = self.targets.mean(dim=0, keepdim=True).expand(2, -1, -1)
            self.cache_s = time.perf_counter() - started
            if projection is not None:
                self.module.teacher_mean.copy_(self.targets.mean(dim=(0, 1)))
        self.dataset = CropBatches(crops, folder.labels)
        self.flip = config["flip"]
        self.backbone_name, self.backbone_options = name, tuple(options)
        self.data = folder.describe()
        self.teacher_name = config["teacher"]

    def inputs(self, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        images = network_input(batch["student"], self.spec.input, device, batch["df"], self.degrade)
        if self.targets is not None:
            targets = self.targets[batch["flip"].long(), batch["index"]].to(device, non_blocking=True)
        else:
            with torch.no_grad():
                hr = network_input(batch.get("teacher", batch["student"]), self.teacher_spec.input, device)
                targets = self.teacher(hr).float()
                if self.fused:
                    targets = (targets + self.teacher(hr.flip(3)).float()) / 2
        inputs = {"images": images, "targets": targets}
        if self.module.head is not None:
            inputs["labels"] = batch["label"].to(device, non_blocking=True)
        return inputs

    def summary(self) -> dict:
        cached = (
            None
            if self.targets is None
            else {"features": self.targets.shape[0] * self.targets.shape[1], "seconds": round(self.cache_s, 2)}
        )
        return {"images": len(self.dataset), "identities": self.data["identities"], "data": self.data,
                "teacher": self.teacher_name, "projection": self.projection, "teacher_cache": cached}


def train_task(ctx: click.Context, trainer: str, params: dict, task) -> tuple[dict, dict]:
    """Train; (configuration, summary) on every process, the summary printed by the first."""
    config, state = resolve_config(ctx, trainer, params)
    summary = train(trainer, config, loop_settings(config), task, state)
    if _main_process():
        found = f"{summary['images']:,} images"
        if summary["identities"]:
            found += f" of {summary['identities']:,} identities"
        click.echo(
            f"{trainer}: {found}; {summary['steps']} steps ({summary['epochs']:.1f} epochs) in "
            f"{summary['wall_s']:.0f} s, "
            f"{summary['images_per_s']:.0f} images/s; loss {summary['loss_first']:.4g} → {summary['loss_last']:.4g}; "
            f"model: {config['out']}/model.pt"
        )
    return config, summary


def _main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def save_projection(out: Path) -> Path:
    """The trained projection (from the final checkpoint's head) as ``projection.pt``: ``weight`` (teacher ×
    student), ``bias`` and ``teacher_mean``; ``features @ weight.T + bias + teacher_mean`` is the student in the
    teacher's space."""
    head = read_state_dict(out / LAST, key="head")
    state = {key.removeprefix("projection."): value for key, value in head.items() if key.startswith("projection.")}
    state["teacher_mean"] = head["teacher_mean"]
    temporary = out / f".{PROJECTION}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, out / PROJECTION)
    return out / PROJECTION


def run_classify(ctx: click.Context, params: dict) -> None:
    """``lrbench train classify``, once its options are collected."""
    train_task(ctx, "classify", params, ClassifyTask)


def run_distill(ctx: click.Context, params: dict) -> None:
    """``lrbench train distill``, once its options are collected: train, then keep the projection if there is one."""
    config, summary = train_task(ctx, "distill", params, DistillTask)
    if summary["projection"] and _main_process():
        save_projection(Path(config["out"]))
