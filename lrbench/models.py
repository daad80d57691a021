"""Building a registered backbone from the command line's --weights and --option values."""

from __future__ import annotations

import torch

from .errors import LrbenchError, UsageError
from .progress import stderr_console
from .specs import BackboneSpec


def build_backbone(spec: BackboneSpec, weights: str | None, options: dict | None = None) -> torch.nn.Module:
    """The backbone's network in eval mode; plugin errors about weights become one-line usage errors."""
    if spec.needs_weights and not weights:
        raise UsageError(
            f"backbone {spec.name!r} needs --weights (a checkpoint file, or 'random' for an untrained network)"
        )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # an untrained network is the same one in every run
            model = spec.build(weights, **(options or {}))
    except LrbenchError:
        raise
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise UsageError(f"backbone {spec.name!r}: {exc}") from exc
    if weights == "random":
        stderr_console.print(
            f"[bold yellow]warning:[/] {spec.name} is untrained (--weights random): its numbers measure the "
            "architecture and pipeline, not a face recognition model"
        )
    return model.eval()
