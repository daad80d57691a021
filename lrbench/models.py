"""Building a registered backbone from the command line's --weights and --option values."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import LrbenchError, UsageError
from .progress import stderr_console
from .specs import BackboneSpec


def build_backbone(spec: BackboneSpec, weights: str | None, options: dict | None = None) -> torch.nn.Module:
    """The backbone's network in eval mode, built with every option (defaults filled in) and checked to give
    embeddings of its declared length; plugin errors about weights become one-line usage errors."""
    if spec.needs_weights and not weights:
        raise UsageError(
            f"backbone {spec.name!r} needs --weights (a checkpoint file, or 'random' for an untrained network)"
        )
    options = spec.effective_options(options)
    spec = spec.with_options(options)  # the input the network is checked on is the one its options choose
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # an untrained network is the same one in every run
            model = spec.build(weights, **options)
    except LrbenchError as exc:
        if exc.details is None or str(exc).startswith("backbone "):
            raise
        # A checkpoint that fits no layout: which network it was given to matters as much as the file.
        named = type(exc)(f"backbone {spec.name!r}: {exc}")
        named.details = exc.details
        raise named from exc
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise UsageError(f"backbone {spec.name!r}: {exc}") from exc
    model.eval()
    check_embedding_size(spec, model, options)
    if weights == "random":
        stderr_console.print(
            f"[bold yellow]warning:[/] {spec.name} is untrained (--weights random): its numbers measure the "
            "architecture and pipeline, not a face recognition model"
        )
    return model


def check_embedding_size(spec: BackboneSpec, model: torch.nn.Module, options: dict) -> None:
    """One forward pass of two grey crops: the embedding must be as long as the spec declares, since the
    declaration is what listings, trainers and other tools believe."""
    width, height = spec.input.template.size
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    crops = torch.full((2, 3, height, width), 128.0, device=device)
    declared = spec.embedding_size(options)
    try:
        with torch.inference_mode():
            shape = tuple(model(spec.input.normalise(crops)).shape)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LrbenchError(
            f"backbone {spec.name!r} (plugin {_plugin_of(spec)!r}) fails on a {width}×{height} crop: {first_line}"
        ) from exc
    if len(shape) != 2 or shape[0] != 2 or (declared is not None and shape[1] != declared):
        wanted = f"{declared}-d" if declared is not None else "N×D"
        raise LrbenchError(
            f"backbone {spec.name!r} (plugin {_plugin_of(spec)!r}) declares {wanted} embeddings but its "
            f"network maps a batch of 2 crops to shape {list(shape)}"
        )


def _plugin_of(spec: BackboneSpec) -> str:
    from . import registry

    found = registry.collect("backbone").get(spec.name)
    return found.plugin if found else "unregistered"


def weights_file(model: torch.nn.Module, weights: str | None) -> Path | None:
    """The weights file the network holds: what its build recorded as ``weights_file`` (a packaged or cached
    default, or a checkpoint through ``load_weights``), else ``--weights`` when that names a file."""
    recorded = getattr(model, "weights_file", None)
    if recorded is not None:
        return Path(recorded).resolve()
    if weights and weights != "random" and Path(weights).is_file():
        return Path(weights).resolve()
    return None
