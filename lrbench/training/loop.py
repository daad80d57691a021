"""The training loop every trainer shares: one code path for CPU and CUDA, one process or many.

A trainer supplies a ``Task``: the module to optimise (its ``forward`` returns the loss; its ``backbone``
attribute is the network that checkpoints hold), the dataset, the augmentation, and how a batch becomes
the module's inputs. The loop does the rest: device and mixed precision, DistributedDataParallel under
torchrun, optimizer and learning-rate schedule with warm-up, gradient clipping, progress and logs,
validation with lrbench's own evaluation, atomic checkpoints, exact resume and clean interruption.
"""

from __future__ import annotations

import json
import math
import signal
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import registry
from ..data.degrade import parse_dfs
from ..errors import UsageError, brief_list
from ..eval import distributed
from ..eval.allocator import tune_allocator
from ..eval.precision import PRECISIONS, autocast_for, require_finite
from ..fileio import OutputLock, check_writable, is_debris, write_atomic, writing
from ..progress import stderr_console
from . import checkpoint as ckpt
from .checkpoint import LOG, SUMMARY
from .data import ALIGN_THREADS, CropBatches, EpochBatches, whole_batch
from .settings import OPTIMIZERS, SCHEDULES, LoopSettings

INTERRUPTED_EXIT_CODE = 130  # as a shell reports a process ended by Ctrl-C


class Task(Protocol):
    """What a trainer hands the loop."""

    module: nn.Module  # forward(**inputs, step=int) -> scalar loss; ``module.backbone`` is what gets saved
    backbone_name: str  # registered name, for validation and ``lrbench run``
    backbone_options: tuple[str, ...]  # its options as name=value
    dataset: CropBatches
    flip: bool  # mirror each sample with probability ½
    dfs: list[int]  # each sample's DF is drawn from these

    def inputs(self, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
        """The module's keyword inputs for a batch from ``dataset``, on ``device`` (called under the run's autocast)."""

    def summary(self) -> dict:
        """Facts for summary.json (e.g. what caching saved)."""


def schedule_factor(kind: str, total: int, warmup: int, milestones: tuple[float, ...]) -> Callable[[int], float]:
    """Learning-rate multiplier for optimizer step ``step`` (0-based): linear warm-up, then cosine or steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        return 0.1 ** sum(step >= fraction * total for fraction in milestones)

    return factor


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name not in PRECISIONS:
        raise UsageError(f"--precision {name}: choose one of auto, {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA device; use bf16 (or fp32) on CPU")
    return name


def check_settings(settings: LoopSettings, world: int = 1) -> None:
    """Option values that need no data to check."""
    if settings.optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer {settings.optimizer}: choose one of {', '.join(OPTIMIZERS)}")
    if settings.schedule not in SCHEDULES:
        raise UsageError(f"--schedule {settings.schedule}: choose one of {', '.join(SCHEDULES)}")
    for flag, value in (
        ("--batch-size", settings.batch_size),
        ("--checkpoint-every", settings.checkpoint_every),
        ("--log-every", settings.log_every),
        ("--epochs", settings.epochs),
        ("--steps", 1 if settings.steps is None else settings.steps),
        ("--val-every", settings.val.every or 1 if settings.val else 1),
    ):
        if value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    for flag, value in (("--seed", settings.seed), ("--workers", settings.workers)):
        if value < 0:
            raise UsageError(f"{flag} {value}: must be 0 or more")
    if settings.batch_size % world:
        raise UsageError(f"--batch-size {settings.batch_size}: must divide evenly over the {world} processes")


def make_optimizer(module: nn.Module, settings: LoopSettings) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay on weight matrices and filters, not on biases, PReLU slopes or other vectors."""
    trained = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trained if p.ndim > 1], "weight_decay": settings.weight_decay},
        {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum)
    return torch.optim.AdamW(groups, lr=settings.lr)


def split_state(module: nn.Module) -> tuple[dict, dict]:
    """The module's state as (backbone state dict in its native layout, everything else)."""
    state = module.state_dict()
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    rest = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    return backbone, rest


def _ignore_sigint(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which saves a checkpoint and stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Loop:
    """One training run of a task; ``run()`` returns the summary it writes."""

    def __init__(
        self,
        task: Task,
        settings: LoopSettings,
        ranks: distributed.Ranks,
        trainer: str,
        config: dict,
        resume: dict | None,
    ):
        self.task, self.settings, self.ranks, self.trainer, self.config = task, settings, ranks, trainer, config
        self.device = ranks.device
        self.precision = resolve_precision(settings.precision, self.device)
        self.out = Path(settings.out)
        self.per_epoch = len(task.dataset) // settings.batch_size
        if self.per_epoch == 0:
            raise UsageError(f"--batch-size {settings.batch_size}: larger than the {len(task.dataset)} training images")
        self.total = settings.steps or settings.epochs * self.per_epoch
        # NHWC suits oneDNN's convolutions on CPUs (about 1.4× for SphereFace here) and tensor cores on GPUs.
        self.module = task.module.to(self.device, memory_format=torch.channels_last)
        self.model = DistributedDataParallel(self.module) if ranks.distributed else self.module
        self.optimizer = make_optimizer(self.module, settings)
        factor = schedule_factor(settings.schedule, self.total, settings.warmup_steps, settings.milestones)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        if self.scaler.is_enabled():  # the scaler skips steps whose gradients overflowed, by design; the
            # schedule still follows the step count, which is what torch warns about
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
        self.autocast = autocast_for(self.device, self.precision)
        self.step, self.best, self.history = 0, None, []
        self.interrupted = False
        if settings.val is not None:  # a bad --val-df fails now, not at the first validation (hours in, after a resume)
            parse_dfs(settings.val.dfs, registry.backbone(task.backbone_name).input.template.size, "--val-df")
        if resume is not None:
            self._restore(resume)

    # -- state -------------------------------------------------------------------------------------------

    def _state(self) -> dict:
        backbone, rest = split_state(self.module)
        return {
            "format": ckpt.FORMAT,
            "trainer": self.trainer,
            "model": backbone,
            "head": rest,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_states(),
            "step": self.step,
            "total": self.total,
            "epoch": self.step // self.per_epoch,
            "batch_in_epoch": self.step % self.per_epoch,
            "best": self.best,
            "config": self.config,
        }

    def _restore(self, state: dict) -> None:
        backbone = {f"backbone.{k}": v for k, v in state["model"].items()}
        self.module.load_state_dict({**backbone, **state["head"]})
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.restore_rng_states(state["rng"])
        self.step, self.best = state["step"], state["best"]

    def _save(self) -> None:
        if self.ranks.main:
            ckpt.save_checkpoint(self._state(), self.out / ckpt.LAST)

    # -- the run -----------------------------------------------------------------------------------------

    def run(self) -> dict:
        started, first_step = time.perf_counter(), self.step
        if self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.out)
            self._trim_log()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.settings.val is not None and self.step == 0:
                self._validate()  # the starting point, and any problem with the validation data, before training
            with self._progress() as progress:
                self._train(progress)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.interrupted:
            self._log_line(
                f"interrupted at step {self.step}: saved {self.out / ckpt.LAST}; continue with --resume {self.out}"
            )
            distributed.barrier(self.ranks)
            raise SystemExit(INTERRUPTED_EXIT_CODE)
        backbone, _ = split_state(self.module)
        digests = distributed.digests_of_all_ranks(self.ranks, backbone)
        wall = time.perf_counter() - started
        summary = {
            "trainer": self.trainer,
            "steps": self.step,
            "epochs": self.step / self.per_epoch,
            "global_batch": self.settings.batch_size,
            "processes": self.ranks.world,
            "device": str(self.device),
            "precision": self.precision,
            "wall_s": round(wall, 2),
            "images_per_s": round((self.step - first_step) * self.settings.batch_size / wall, 1),
            "loss_first": self.history[0]["loss"] if self.history else None,
            "loss_last": self.history[-1]["loss"] if self.history else None,
            "best_validation": self.best,
            "weights_sha256_per_rank": digests,
            "allocator": tune_allocator(),
            **self.task.summary(),
        }
        if self.ranks.main:
            ckpt.save_atomic(backbone, self.out / ckpt.MODEL)
            write_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
        distributed.barrier(self.ranks)
        return summary

    def _train(self, progress) -> None:
        settings, batch_size = self.settings, self.settings.batch_size
        running, count, tick = torch.zeros((), device=self.device), 0, time.perf_counter()
        while self.step < self.total and not self.interrupted:
            epoch, position = divmod(self.step, self.per_epoch)
            sampler = EpochBatches(
                len(self.task.dataset),
                batch_size,
                seed=settings.seed,
                epoch=epoch,
                start=position,
                rank=self.ranks.rank,
                world=self.ranks.world,
                flip=self.task.flip,
                dfs=self.task.dfs,
            )
            loader = torch.utils.data.DataLoader(
                self.task.dataset,
                batch_sampler=sampler,
                collate_fn=whole_batch,
                num_workers=settings.workers,
                pin_memory=self.device.type == "cuda",
                worker_init_fn=_ignore_sigint,
            )
            for batch in loader:
                lr = self.optimizer.param_groups[0]["lr"]
                running += self._step(batch).detach()
                count += 1
                self.step += 1
                progress(self.step)
                last = self.step == self.total
                self.interrupted = distributed.any_rank(self.ranks, self.interrupted)
                validate = settings.val and (self.step % (settings.val.every or settings.checkpoint_every) == 0 or last)
                save = validate or self.step % settings.checkpoint_every == 0 or last or self.interrupted
                if self.step % settings.log_every == 0 or save:
                    mean_loss = distributed.mean_over_ranks(self.ranks, running / count)
                    # Checked before anything is written, so last.pt and best.pt always hold usable weights.
                    require_finite(mean_loss, f"the training loss by step {self.step}", self.precision)
                    loss = mean_loss.item()
                    rate = count * batch_size / (time.perf_counter() - tick)
                    self._record({"step": self.step, "epoch": epoch, "loss": loss, "lr": lr, "images_per_s": rate})
                    progress(self.step, f"loss {loss:.4g}  lr {lr:.3g}  {rate:.0f} img/s")
                    running, count, tick = torch.zeros((), device=self.device), 0, time.perf_counter()
                if validate:
                    started = time.perf_counter()
                    self._validate()
                    tick += time.perf_counter() - started  # images/s counts training time only
                elif save:
                    self._save()
                if last or self.interrupted:
                    break

    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.module.train()
        with self.autocast:
            loss = self.model(**self.task.inputs(batch, self.device), step=self.step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.module.parameters(), self.settings.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()  # after the optimizer: the step just taken used this step's learning rate
        return loss.float()

    def _on_signal(self, signum, frame) -> None:
        if self.interrupted:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.interrupted = True

    # -- validation --------------------------------------------------------------------------------------

    def _validate(self) -> None:
        """Evaluate the current backbone exactly as ``lrbench run --weights`` would; keep the best checkpoint.

        The backbone's weights go through a file, so validation also proves the checkpoint loads.
        """
        from ..eval.engine import EvalSettings, evaluate

        improved = False
        if self.ranks.main:
            val = self.settings.val
            weights = self.out / ckpt.VALIDATION
            ckpt.save_atomic(split_state(self.module)[0], weights)
            try:
                run = evaluate(
                    EvalSettings(
                        backbone=self.task.backbone_name,
                        data=val.data,
                        dfs=val.dfs,
                        weights=str(weights),
                        options=self.task.backbone_options,
                        protocol=val.protocol,
                        pairs=val.pairs,
                        landmarks=val.landmarks,
                        aligned=val.aligned,
                        degradation=val.degradation,
                        degradation_options=val.degradation_options,
                        device=str(self.device),
                        batch_size=self.settings.batch_size,
                        workers=ALIGN_THREADS,
                        cache_dir=val.cache_dir,
                        show_progress=False,
                    )
                )
            finally:
                weights.unlink(missing_ok=True)
            accuracy = {int(df): float(acc) for df, acc in zip(run.results["df"], run.results["accuracy_mean"])}
            mean = sum(accuracy.values()) / len(accuracy)
            improved = self.best is None or mean > self.best
            self.best = mean if improved else self.best
            shown = "  ".join(f"DF {df}: {100 * acc:.2f}%" for df, acc in accuracy.items())
            self._record({"step": self.step, "validation": accuracy, "validation_mean": mean})
            self._log_line(f"validation at step {self.step}: {shown}" + ("  (best)" if improved else ""))
        self._save()
        if improved:
            ckpt.copy_atomic(self.out / ckpt.LAST, self.out / ckpt.BEST)
        distributed.barrier(self.ranks)

    # -- reporting ---------------------------------------------------------------------------------------

    def _record(self, row: dict) -> None:
        if "loss" in row:
            self.history.append(row)
        if self.ranks.main:
            with writing(self.out / LOG), open(self.out / LOG, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            if "loss" in row and not self.settings.show_progress:
                self._log_line(
                    f"step {row['step']}/{self.total}  epoch {row['epoch']}  loss {row['loss']:.4g}  "
                    f"lr {row['lr']:.3g}  {row['images_per_s']:.0f} img/s"
                )

    def _log_line(self, text: str) -> None:
        if self.ranks.main:
            stderr_console.print(text, highlight=False, soft_wrap=True)

    def _trim_log(self) -> None:
        """Drop log rows past the step a resumed run starts from (the interrupted run's lost work); keep the
        losses before it, so the summary's first loss is the run's."""
        path = self.out / LOG
        if path.is_file():
            rows = []
            for line in path.read_text().splitlines():
                with suppress(ValueError):  # a line a killed run left half-written
                    rows.append(json.loads(line))
            kept = [row for row in rows if self.step and row["step"] <= self.step]
            self.history = [row for row in kept if "loss" in row]
            write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))

    def _progress(self):
        """A context giving ``update(step, text=None)``: a rich bar on rank 0 when asked for, else nothing."""
        if not (self.ranks.main and self.settings.show_progress):
            return nullcontext(lambda step, text=None: None)
        return _Bar(self.step, self.total)


class _Bar:
    def __init__(self, start: int, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
        )
        self.progress = Progress(*columns, console=stderr_console)
        self.task = self.progress.add_task("train", total=total, completed=start, stats="")

    def __enter__(self):
        self.progress.start()
        return self.update

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, step: int, text: str | None = None) -> None:
        self.progress.update(self.task, completed=step, **({"stats": text} if text else {}))


def train(
    trainer: str, config: dict, settings: LoopSettings, build_task: Callable[..., Task], resume: dict | None = None
) -> dict:
    """Build the task on each process (under torchrun) and run it; returns the summary.

    The main process holds a lock on the run folder from before anything is built or written, so a second
    trainer given the same folder is refused instead of mixing its checkpoints and log lines in.
    """
    tune_allocator()
    ranks = distributed.start(settings.device)
    try:
        check_settings(settings, ranks.world)
        resolve_precision(settings.precision, ranks.device)
        option = "--resume" if config.get("resume") else "--out"
        if ranks.main:
            check_writable(settings.out, option)  # a file in the way costs seconds, not a training run
        with _run_lock(ranks, settings.out, option, trainer):
            if ranks.main and resume is None:
                check_new_run_folder(Path(settings.out))
            ckpt.seed_everything(settings.seed)
            task = build_task(config, ranks)
            return Loop(task, settings, ranks, trainer, config, resume).run()
    finally:
        distributed.stop()


def _run_lock(ranks: distributed.Ranks, out: Path, option: str, trainer: str) -> AbstractContextManager:
    return OutputLock(out, option, command=f"lrbench train {trainer}") if ranks.main else nullcontext()


def check_new_run_folder(out: Path) -> None:
    """A new run writes last.pt, best.pt, model.pt, log.jsonl and summary.json into ``--out``, so it starts only
    in a new or empty folder, or one holding nothing but what lrbench left there (temporaries, a lock, the log of
    a run killed before its first checkpoint): it never replaces anybody's files."""
    if not out.is_dir():
        return
    in_the_way = [entry for entry in sorted(out.iterdir()) if not (is_debris(entry) or _is_training_log(entry))]
    if not in_the_way:
        return
    names = brief_list([entry.name + ("/" if entry.is_dir() else "") for entry in in_the_way])
    if (out / ckpt.LAST).exists():
        raise UsageError(f"--out {out}: holds a training run ({names}); continue it with --resume {out} or choose "
                         "another folder")
    raise UsageError(f"--out {out}: holds {names}, which a new training run would replace or mix with, so lrbench "
                     "will not start one there; choose a new or empty folder")


_LOG_LINE_START = '{"step":'  # how every row of the log begins (``_record``)


def _is_training_log(entry: Path) -> bool:
    """A log.jsonl as ``Loop`` writes it: lines ``{"step": N, …}`` (the last may be cut short by a kill)."""
    if entry.name != LOG or entry.is_symlink() or not entry.is_file():
        return False
    try:
        *complete, last = entry.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return False
    for line in complete:
        try:
            row = json.loads(line)
        except ValueError:
            return False
        if not (isinstance(row, dict) and next(iter(row), None) == "step" and isinstance(row["step"], int)):
            return False
    return last.startswith(_LOG_LINE_START) or _LOG_LINE_START.startswith(last)
