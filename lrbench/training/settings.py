"""How a training run is set up, whatever the task: the loop's settings and validation, and the optimizers and
schedules it knows. No torch here: the command-line options are declared from these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.crops import default_cache_dir

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step")
MARGIN_HEADS = ("softmax", "asoftmax", "cosface", "arcface")  # training.heads.HEADS, by name


@dataclass
class Validation:
    """Evaluate the backbone on a protocol at some DFs, as ``lrbench run`` would, with the trainer's
    degradation and crop cache."""

    protocol: str
    data: Path
    dfs: str = "1"
    every: int | None = None  # None: at each checkpoint
    pairs: Path | None = None
    landmarks: Path | None = None
    aligned: bool = False
    degradation: str = "bicubic"
    degradation_options: tuple[str, ...] = ()  # as name=value
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: no crop cache


@dataclass
class LoopSettings:
    """How to train, whatever the task (a trainer's command-line options, resolved)."""

    out: Path
    device: str = "auto"
    steps: int | None = None  # None: ``epochs`` passes over the data
    epochs: int = 10
    batch_size: int = 256  # global: split across torchrun's processes
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_steps: int = 0
    milestones: tuple[float, ...] = (0.6, 0.85)  # step schedule: ×0.1 at these fractions of the run
    clip_grad: float | None = None
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    seed: int = 0
    workers: int = 0  # DataLoader processes
    checkpoint_every: int = 500
    log_every: int = 50
    val: Validation | None = None
    show_progress: bool = True
