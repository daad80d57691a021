"""Name → spec lookups over what the plugins register, remembering which plugin registered what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import LrbenchError, UsageError
from .plugins import load_plugins, trace


@dataclass(frozen=True)
class Registered:
    spec: Any
    plugin: str


def collect(kind: str) -> dict[str, Registered]:
    """Call ``register_<kind>s`` on every plugin; a plugin's failure names the plugin."""
    hook_name = f"register_{kind}s"
    hook = getattr(load_plugins().hook, hook_name)
    found: dict[str, Registered] = {}
    for impl in reversed(hook.get_hookimpls()):  # registration order: built-ins first

        def register(spec, _plugin=impl.plugin_name):
            if spec.name in found:
                raise LrbenchError(
                    f"{kind} {spec.name!r} is registered by both {found[spec.name].plugin!r} and {_plugin!r}"
                )
            found[spec.name] = Registered(spec, _plugin)

        trace(hook_name, impl.plugin_name, {"register": register})
        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except LrbenchError:
            raise
        except Exception as exc:
            raise LrbenchError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc}") from exc
    return found


def get(kind: str, name: str):
    """The spec registered as ``name``, or a usage error listing the available names."""
    found = collect(kind)
    if name not in found:
        available = ", ".join(sorted(found)) or "none"
        raise UsageError(f"unknown {kind} {name!r}; available: {available}")
    return found[name].spec


def backbone(name: str):
    return get("backbone", name)


def degradation(name: str):
    return get("degradation", name)


def protocol(name: str):
    return get("protocol", name)
