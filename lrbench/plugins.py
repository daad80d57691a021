"""The plugin manager: built-ins from a fixed tuple, third-party plugins from entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

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
    "lrbench_plugins.iresnet",
    "lrbench_plugins.mobilefacenet",
    "lrbench_plugins.onnx_models",
    "lrbench_plugins.resize",
    "lrbench_plugins.mix",
    "lrbench_plugins.pairs_protocols",
    "lrbench_plugins.identification_protocols",
    "lrbench_plugins.trainers",
    "lrbench_plugins.mtcnn",
    "lrbench_plugins.demo",
)

PLUGINS_DIR_ENV = "LRBENCH_PLUGINS_DIR"
TRACE_ENV = "LRBENCH_TRACE_PLUGINS"

pm = pluggy.PluginManager("lrbench")
pm.add_hookspecs(hookspecs)

_loaded = False
_distributions: dict[str, importlib.metadata.Distribution] = {}


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins, plugin files from LRBENCH_PLUGINS_DIR and installed plugins (once).

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
            _register(plugin, ep.name)
            _distributions[ep.name] = dist
    if os.environ.get(PLUGINS_DIR_ENV):
        load_plugins_dir(Path(os.environ[PLUGINS_DIR_ENV]))
    if os.environ.get(TRACE_ENV):
        pm.add_hookcall_monitoring(_trace_before, lambda *args: None)
    return pm


def load_plugins_dir(folder: Path) -> list[str]:
    """Register every ``*.py`` file in ``folder`` as a plugin named after the file (datasette's --plugins-dir)."""
    if not folder.is_dir():
        raise LrbenchError(f"plugins dir {folder}: not a directory")
    names = []
    for path in sorted(folder.glob("*.py")):
        name = f"{folder.name}/{path.name}"
        if pm.get_plugin(name) is not None:
            continue
        spec = importlib.util.spec_from_file_location(f"lrbench_plugins_dir.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise LrbenchError(f"plugin file {path} failed to load: {exc}") from exc
        _register(module, name)
        names.append(name)
    return names


def _register(plugin, name: str) -> None:
    """Register one plugin; an implementation of a hook that does not exist (a typo) is an error."""
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        known = ", ".join(sorted(h for h in dir(hookspecs) if h.startswith("register_")))
        raise LrbenchError(f"plugin {name!r}: {exc}; lrbench's hooks are {known}") from None


def trace(hook_name: str, plugin_name: str, kwargs: dict) -> None:
    """With LRBENCH_TRACE_PLUGINS set, print every hook call on stderr (datasette's DATASETTE_TRACE_PLUGINS)."""
    if os.environ.get(TRACE_ENV):
        arguments = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        print(f"lrbench trace: {hook_name}({arguments}) -> {plugin_name}", file=sys.stderr)


def _trace_before(hook_name, hook_impls, kwargs):
    for impl in reversed(hook_impls):  # pluggy calls the last in its list first
        trace(hook_name, impl.plugin_name, kwargs)


def list_plugins(include_builtin: bool = False, hook: str | None = None) -> list[dict]:
    """Plugins with their hooks and, for installed packages, distribution and version."""
    load_plugins()
    rows = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        builtin = name in DEFAULT_PLUGINS
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        if (builtin and not include_builtin) or (hook and hook not in hooks):
            continue
        origin = plugin_origin(name)
        rows.append(
            {
                "name": name,
                "hooks": hooks,
                "builtin": builtin,
                "distribution": origin["distribution"],
                "version": origin["version"],
            }
        )
    return sorted(rows, key=lambda row: (not row["builtin"], row["name"]))


def plugin_origin(name: str) -> dict:
    """Where a registered plugin's code comes from, for manifests and listings.

    Built-ins are part of lrbench (its version); installed plugins name their distribution and version;
    anything else (a loose file, an object a test registered) has neither, and a module gives its file.
    """
    from .version import __version__

    if name in DEFAULT_PLUGINS:
        return {"plugin": name, "distribution": "lrbench", "version": __version__}
    dist = _distributions.get(name)
    origin = {
        "plugin": name,
        "distribution": dist.metadata["Name"] if dist else None,
        "version": dist.version if dist else None,
    }
    source = getattr(pm.get_plugin(name), "__file__", None)
    if dist is None and source:
        origin["file"] = str(Path(source).resolve())
    return origin
