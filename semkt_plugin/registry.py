"""Finds adapters and strategies: every plugin of the ``semkt.plugins`` entry point group, semkt's own included,
loaded by pluggy.

A plugin that fails to import is skipped with a warning that names it and its package; asking for an adapter or
strategy that no loaded plugin has then names the broken plugins too. Set ``SEMKT_DISABLE_PLUGIN_AUTOLOAD=1`` to
load only semkt's own plugins; :func:`register` still adds plugins by hand.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .adapter import Adapter
from .strategies.base import Strategy

DISABLE_ENV = "SEMKT_DISABLE_PLUGIN_AUTOLOAD"
DISTRIBUTION = "semkt"

_manager: pluggy.PluginManager | None = None
_broken: dict[str, str] = {}  # plugin name -> "package: error" of the plugins that failed to import


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _entry_points() -> Iterator[tuple[str, importlib.metadata.EntryPoint]]:
    """``(package, entry point)`` of the group, in the order pluggy's loader visits them."""
    for dist in list(importlib.metadata.distributions()):
        for ep in dist.entry_points:
            if ep.group == hookspecs.ENTRY_POINT_GROUP:
                yield dist.metadata["Name"], ep


def _load(pm: pluggy.PluginManager) -> None:
    """pluggy's own loader, run again past each plugin that fails to import (blocked, reported, skipped)."""
    while True:
        try:
            pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
            return
        except Exception as err:
            failed = next(((dist, ep) for dist, ep in _entry_points()
                           if not pm.get_plugin(ep.name) and not pm.is_blocked(ep.name)), None)
            if failed is None:  # not an import: a plugin that loaded but does not fit the hooks
                raise
            dist, ep = failed
            pm.set_blocked(ep.name)
            _broken[ep.name] = f"{dist}: {type(err).__name__}: {err}"
            warnings.warn(f"semkt plugin {ep.name!r} of package {dist!r} ({ep.value}) failed to import and is skipped "
                          f"({type(err).__name__}: {err}); its adapters and strategies are unavailable until that "
                          f"package is fixed or uninstalled", RuntimeWarning, stacklevel=4)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading the entry points on first use."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        if _autoload_disabled():
            for dist, ep in _entry_points():
                if dist != DISTRIBUTION:
                    pm.set_blocked(ep.name)
        _load(pm)
        _manager = pm
    return _manager


def reset() -> None:
    """Forget loaded plugins; the next lookup reads the entry points again (after installing a package)."""
    global _manager
    _manager = None
    _broken.clear()


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object (a module or object with semkt's hook implementations) by hand."""
    plugin_manager().register(plugin, name=name)


def _source(pm: pluggy.PluginManager, plugin: Any, name: str) -> str:
    for loaded, dist in pm.list_plugin_distinfo():
        if loaded is plugin:
            return f"{dist.project_name}:{name}"
    return name


def _missing(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    broken = "".join(f" Plugin {p!r} ({why}) failed to import and may provide it." for p, why in _broken.items())
    return f"no {what} named {name!r}; {hint}known: {', '.join(sorted(known)) or 'none (is semkt installed?)'}.{broken}"


def adapters() -> dict[str, Adapter]:
    """Every registered adapter by name, each with ``source`` set to the plugin that gave it.

    Raises:
        ValueError: two plugins give the same adapter name (the message names both).
    """
    pm = plugin_manager()
    found: dict[str, Adapter] = {}
    # each implementation is called directly, not through pm.hook: an adapter's source, and a clash between two
    # plugins, need to know which plugin gave it
    for impl in pm.hook.semkt_register_adapters.get_hookimpls():
        for adapter in impl.function() or ():
            if not isinstance(adapter, Adapter):
                raise TypeError(f"plugin {impl.plugin_name!r} returned {type(adapter).__name__}, not an Adapter")
            source = adapter.source or _source(pm, impl.plugin, impl.plugin_name)
            if adapter.name in found:
                raise ValueError(
                    f"two adapters are named {adapter.name!r}: one from {found[adapter.name].source}, one from "
                    f"{source}. Uninstall one, rename it, or set {DISABLE_ENV}=1 to skip third-party plugins."
                )
            found[adapter.name] = Adapter(**{**adapter.__dict__, "source": source})
    return found


def strategies() -> dict[str, type[Strategy]]:
    """Every registered strategy class by its ``name``.

    Raises:
        ValueError: two plugins give the same strategy name (the message names both).
    """
    pm = plugin_manager()
    found: dict[str, type[Strategy]] = {}
    sources: dict[str, str] = {}
    # called directly for the same reason as in adapters(): a clash names both plugins
    for impl in pm.hook.semkt_register_strategies.get_hookimpls():
        for cls in impl.function() or ():
            if not (isinstance(cls, type) and issubclass(cls, Strategy)):
                raise TypeError(f"plugin {impl.plugin_name!r} returned {cls!r}, not a Strategy subclass")
            source = _source(pm, impl.plugin, impl.plugin_name)
            if cls.name in found:
                raise ValueError(f"two strategies are named {cls.name!r}: one from {sources[cls.name]}, one from "
                                 f"{source}. Uninstall one, rename it, or set {DISABLE_ENV}=1.")
            found[cls.name], sources[cls.name] = cls, source
    return found


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name``."""
    known = strategies()
    if name not in known:
        raise ValueError(_missing("strategy", name, list(known)))
    return known[name]


def get_adapter(spec: str | Path | Mapping[str, Any] | Adapter) -> Adapter:
    """An adapter from a registered name, an :class:`Adapter`, a dict, or a .yaml/.toml/.json file path."""
    if isinstance(spec, Adapter):
        return spec
    if isinstance(spec, Mapping):
        return Adapter.from_dict(spec)
    if isinstance(spec, Path) or Path(str(spec)).suffix in (".yaml", ".yml", ".toml", ".json"):
        return Adapter.from_file(spec)
    known = adapters()
    if spec not in known:
        raise KeyError(_missing("adapter", str(spec), list(known))
                       + " Pass an Adapter, a dict or an adapter file to describe another model.")
    return known[spec]
