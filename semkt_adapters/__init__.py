"""semkt's built-in adapters, registered through the ``semkt.plugins`` entry point ``builtin``.

One module per upstream model; each holds ``ADAPTER`` and documents its hook points, forward, output, domain
and scale (``docs/baselines.md`` has the facts checked against the upstream repositories).
"""
from __future__ import annotations

from semkt_plugin.adapter import Adapter
from semkt_plugin.hookspecs import hookimpl

from . import ahdr, hdr_transformer, safnet, sctnet, tmrnet

BUILTIN: tuple[Adapter, ...] = (
    ahdr.ADAPTER,
    hdr_transformer.ADAPTER,
    sctnet.ADAPTER,
    safnet.ADAPTER,
    tmrnet.ADAPTER,
)


@hookimpl
def semkt_register_adapters() -> list[Adapter]:
    """The five built-in adapters."""
    return list(BUILTIN)
