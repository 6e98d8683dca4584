"""Finds adapters: every entry point of the ``semkt.adapters`` group, semkt's own included, through pluggy.

Set ``SEMKT_DISABLE_PLUGIN_AUTOLOAD=1`` to load only semkt's own entry point (third-party packages are skipped);
:func:`register` still adds plugins by hand.
"""
from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Mapping

import pluggy

from . import hookspecs
from .adapter import Adapter

DISABLE_ENV = "SEMKT_DISABLE_PLUGIN_AUTOLOAD"
DISTRIBUTION = "semkt"

_manager: pluggy.PluginManager | None = None


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading the entry points on first use."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            if _autoload_disabled() and dist != DISTRIBUTION:
                continue
            name = f"{dist}:{ep.name}"
            if pm.get_plugin(name) is None:
                pm.register(ep.load(), name=name)
        _manager = pm
    return _manager


def reset() -> None:
    """Forget loaded plugins; the next lookup reads the entry points again (after installing a package)."""
    global _manager
    _manager = None


def register(plugin: Any, name: str | None = None) -> None:
    """Register a plugin object (a module or object with ``semkt_register_adapters``) by hand."""
    plugin_manager().register(plugin, name=name)


def adapters() -> dict[str, Adapter]:
    """Every registered adapter by name, each with ``source`` set to the plugin that gave it.

    Raises:
        ValueError: two plugins give the same adapter name (the message names both).
    """
    found: dict[str, Adapter] = {}
    for impl in plugin_manager().hook.semkt_register_adapters.get_hookimpls():
        for adapter in impl.function() or ():
            if not isinstance(adapter, Adapter):
                raise TypeError(f"plugin {impl.plugin_name!r} returned {type(adapter).__name__}, not an Adapter")
            source = adapter.source or impl.plugin_name
            if adapter.name in found:
                raise ValueError(
                    f"two adapters are named {adapter.name!r}: one from {found[adapter.name].source}, one from "
                    f"{source}. Uninstall one, rename it, or set {DISABLE_ENV}=1 to skip third-party plugins."
                )
            found[adapter.name] = Adapter(**{**adapter.__dict__, "source": source})
    return found


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
        import difflib

        close = difflib.get_close_matches(str(spec), list(known), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise KeyError(
            f"no adapter named {spec!r}; {hint}known: {', '.join(sorted(known)) or 'none (is semkt installed?)'}. "
            "Pass an Adapter, a dict or an adapter file to describe another model."
        )
    return known[spec]
