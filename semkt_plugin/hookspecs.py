"""The plugin contract: how a package, ours or anyone's, gives semkt adapters and strategies.

A package declares an entry point in the ``semkt.plugins`` group whose object is a module (or any object)
carrying functions marked with :data:`hookimpl`, one per hook it implements::

    # pyproject.toml of a third-party package
    [project.entry-points."semkt.plugins"]
    mynet = "mynet_semkt"

    # mynet_semkt.py
    from semkt_plugin import Adapter, HookPoint, hookimpl

    @hookimpl
    def semkt_register_adapters():
        return [Adapter(name="mynet", hooks=[HookPoint("body.3")])]

    @hookimpl
    def semkt_register_strategies():
        return [MyStrategy]          # a semkt_plugin.Strategy subclass with its own `name` and `settings_class`

semkt's own adapters and strategies are registered exactly this way (entry points ``builtin`` and
``strategies``). Plugins are loaded by pluggy (:mod:`semkt_plugin.registry`).
"""
from __future__ import annotations

import pluggy

from .adapter import Adapter

PROJECT = "semkt"
ENTRY_POINT_GROUP = "semkt.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def semkt_register_adapters() -> list[Adapter]:
    """Return the adapters this plugin provides (names must be unique across all plugins)."""


@hookspec
def semkt_register_strategies() -> list[type]:
    """Return the strategies this plugin provides: :class:`~semkt_plugin.Strategy` subclasses, each with its own
    ``name`` (unique across all plugins, what ``wrap(strategy=...)`` takes) and ``settings_class``."""
