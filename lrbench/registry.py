"""Name → spec lookups over what the plugins register, remembering which plugin registered what."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .errors import LrbenchError, UsageError
from .plugins import load_plugins


@dataclass(frozen=True)
class Registered:
    spec: Any
    plugin: str


def collect(kind: str) -> dict[str, Registered]:
    """Call ``register_<kind>s`` through pluggy; each spec remembers its plugin, a plugin's failure names it.

    pluggy decides the order (``tryfirst`` first, ``trylast`` last, otherwise the most recently registered
    plugin first), runs hook wrappers around the whole call and reports it to hook-call monitors such as
    LRBENCH_TRACE_PLUGINS. The dict keeps that order.
    """
    hook_name = f"register_{kind}s"
    hook = getattr(load_plugins().hook, hook_name)
    impls = hook.get_hookimpls()
    found: dict[str, Registered] = {}

    def register(spec) -> None:
        plugin = _calling_plugin(_outwards(inspect.currentframe().f_back), impls)
        if spec.name in found:
            raise LrbenchError(f"{kind} {spec.name!r} is registered by both {found[spec.name].plugin!r} and {plugin!r}")
        found[spec.name] = Registered(spec, plugin)

    try:
        hook(register=register)
    except LrbenchError:
        raise
    except Exception as exc:
        frames = reversed([frame for frame, _ in traceback.walk_tb(exc.__traceback__)])
        raise LrbenchError(f"plugin {_calling_plugin(frames, impls)!r} failed in {hook_name}: {exc}") from exc
    return found


def _outwards(frame: FrameType | None) -> Iterable[FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def _calling_plugin(frames: Iterable[FrameType], impls) -> str:
    """The plugin whose hook implementation runs in the innermost of ``frames`` that runs one.

    pluggy hands every implementation the same ``register``, so the caller is found on the stack: a frame
    runs an implementation when it executes that function's code (decorators seen through) and, for two
    plugin objects sharing one method, when its ``self`` is the plugin.
    """
    for frame in frames:
        running = [impl for impl in impls if getattr(inspect.unwrap(impl.function), "__code__", None) is frame.f_code]
        if len(running) > 1:
            running = [impl for impl in running if frame.f_locals.get("self") is impl.plugin]
        if len(running) == 1:
            return running[0].plugin_name
    return "unknown"


def entry(kind: str, name: str) -> Registered:
    """What is registered as ``name`` and by which plugin, or a usage error listing the available names."""
    found = collect(kind)
    if name not in found:
        available = ", ".join(sorted(found)) or "none"
        raise UsageError(f"unknown {kind} {name!r}; available: {available}")
    return found[name]


def get(kind: str, name: str):
    """The spec registered as ``name``, or a usage error listing the available names."""
    return entry(kind, name).spec


def backbone(name: str):
    return get("backbone", name)


def degradation(name: str):
    return get("degradation", name)


def protocol(name: str):
    return get("protocol", name)


def detector(name: str):
    return get("detector", name)


def templates() -> dict:
    """Every crop template lrbench knows, by name: the built-in ones and those of the registered backbones
    (their input and seed-project input), for naming and recognising the framing of pre-aligned images."""
    from .specs import ARCFACE_112x112, SPHEREFACE_96x112

    found = {template.name: template for template in (ARCFACE_112x112, SPHEREFACE_96x112)}
    for registered in collect("backbone").values():
        for spec in (registered.spec.input, registered.spec.seed_input):
            if spec is not None:
                found.setdefault(spec.template.name, spec.template)
    return found
