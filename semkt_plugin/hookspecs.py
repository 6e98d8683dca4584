"""The plugin contract: how a package, ours or anyone's, gives semkt its adapters.

A package declares an entry point in the ``semkt.adapters`` group whose object is a module (or any object)
carrying a function marked with :data:`hookimpl`::

    # setup.cfg of a third-party package
    [options.entry_points]
    semkt.adapters =
        mynet = mynet_semkt

    # mynet_semkt.py
    from semkt_plugin import Adapter, HookPoint, hookimpl

    @hookimpl
    def semkt_register_adapters():
        return [Adapter(name="mynet", hooks=[HookPoint("body.3")])]

semkt's own adapters are registered exactly this way (entry point ``builtin``).
"""
from __future__ import annotations

import pluggy

from .adapter import Adapter

PROJECT = "semkt"
ENTRY_POINT_GROUP = "semkt.adapters"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def semkt_register_adapters() -> list[Adapter]:
    """Return the adapters this plugin provides (names must be unique across all plugins)."""
