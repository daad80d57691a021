"""Building a registered backbone from the command line's --weights and --option values."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch

from ..errors import LrbenchError, UsageError
from ..progress import stderr_console
from ..specs import BackboneSpec, same_value


def build_backbone(spec: BackboneSpec, weights: str | None, options: dict | None = None) -> torch.nn.Module:
    """The backbone's network in eval mode, built with every option (defaults filled in) and checked to give
    embeddings of its declared length; plugin errors about weights become one-line usage errors."""
    if spec.needs_weights and not weights:
        raise UsageError(
            f"backbone {spec.name!r} needs --weights (a checkpoint file, or 'random' for an untrained network)"
        )
    check_network_size(spec, options)
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


def check_network_size(spec: BackboneSpec, given: dict | None) -> None:
    """Refuse options that make the network too large for this machine before it is built.

    ``--option width=200`` asks for terabytes, and building it would exhaust the memory (or be killed) before
    any error: the network is built first on PyTorch's meta device, where tensors have shapes but no memory,
    and its parameters and buffers are counted. Only options that differ from the defaults are checked (the
    defaults are the plugin's own choice); a build that cannot run on the meta device (one that reads files
    or needs real values) is not estimated, and builds as before.
    """
    given = given or {}
    changed = {name: given[name] for name, default in spec.options.items()
               if name in given and not same_value(given[name], default)}  # in the order the backbone declares them
    available = _available_memory() if changed else None
    if available is None:
        return
    named = " ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in changed.items())
    try:
        with torch.device("meta"):
            network = spec.build("random", **spec.effective_options(given))
        tensors = [*network.parameters(), *network.buffers()]
        size = sum(t.numel() * t.element_size() for t in tensors)
    except Exception as exc:  # other failures are the real build's to report, with its own message
        if "overflow" in str(exc).lower():  # a tensor whose size in bytes does not fit in 64 bits
            raise UsageError(
                f"--option {named}: backbone {spec.name!r} would have tensors too large for 64-bit sizes, beyond "
                f"any memory (here {_bytes(available)} are available)"
            ) from None
        return
    if size > available:
        count = sum(t.numel() for t in network.parameters())
        raise UsageError(
            f"--option {named}: backbone {spec.name!r} would have {count:.3g} parameters ({_bytes(size)} of "
            f"tensors), more than the {_bytes(available)} of memory available here"
        )


def _available_memory() -> int | None:
    """Bytes of memory this process can still get: the kernel's MemAvailable, within a cgroup's limit."""
    limits = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    if not limits:
        with contextlib.suppress(AttributeError, ValueError, OSError):  # no /proc (macOS): the physical memory
            limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    cgroups = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2, then v1
               ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    for limit, used in cgroups:
        with contextlib.suppress(OSError, ValueError):  # no such file, or "max": no limit
            limits.append(int(Path(limit).read_text()) - int(Path(used).read_text()))
    return min(limits) if limits else None


def _bytes(size: int) -> str:
    """``47.9 MiB``, ``1.74 TiB``: the largest binary unit that keeps the number at least 1."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    exponent = min(int(math.log(max(size, 1), 1024)), len(units) - 1)
    return f"{size / 1024**exponent:.3g} {units[exponent]}"


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
    from .. import registry

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
