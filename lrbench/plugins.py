"""The plugin manager: built-ins from a fixed tuple, third-party plugins from entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import os

import pluggy

from . import hookspecs
from .errors import LrbenchError

ENTRY_POINT_GROUP = "lrbench"
LOAD_PLUGINS_ENV = "LRBENCH_LOAD_PLUGINS"

DEFAULT_PLUGINS = (
    "lrbench_plugins.lbp",
    "lrbench_plugins.sphereface",
    "lrbench_plugins.alexnet",
    "lrbench_plugins.dlib_resnet",
    "lrbench_plugins.resize",
    "lrbench_plugins.pairs_protocols",
)

pm = pluggy.PluginManager("lrbench")
pm.add_hookspecs(hookspecs)

_loaded = False
_distributions: dict[str, importlib.metadata.Distribution] = {}


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins and the third-party plugins chosen by LRBENCH_LOAD_PLUGINS (once).

    LRBENCH_LOAD_PLUGINS unset loads every installed plugin; a comma-separated list of entry-point or
    distribution names loads just those; an empty value loads none (built-ins are always there).
    """
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    chosen = os.environ.get(LOAD_PLUGINS_ENV)
    wanted = None if chosen is None else {name.strip() for name in chosen.split(",") if name.strip()}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or (wanted is not None and not {ep.name, dist.name} & wanted):
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise LrbenchError(f"plugin {ep.name!r} ({dist.name}) failed to load: {exc}") from exc
            pm.register(plugin, name=ep.name)
            _distributions[ep.name] = dist
    return pm


def list_plugins(include_builtin: bool = False) -> list[dict]:
    """Plugins with their hooks and, for installed packages, distribution and version."""
    load_plugins()
    rows = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        builtin = name in DEFAULT_PLUGINS
        if builtin and not include_builtin:
            continue
        dist = _distributions.get(name)
        rows.append(
            {
                "name": name,
                "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or []),
                "builtin": builtin,
                "distribution": dist.metadata["Name"] if dist else None,
                "version": dist.version if dist else None,
            }
        )
    return sorted(rows, key=lambda row: (not row["builtin"], row["name"]))
