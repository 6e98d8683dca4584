"""Training schemes, one module each; :func:`semkt_plugin.wrap` picks one by name (``strategy=``).

- ``"skt"`` (:mod:`.skt`): Semantic Knowledge Transfer, the main paper: a semantic teacher distilled into the model.
- ``"smhdr"`` (:mod:`.smhdr`): SMHDR's curriculum semantic masking of the model's features.
- ``"smarthdr"`` (:mod:`.smarthdr`): SmartHDR's semi-supervised mean teacher with uncertainty masking.

All three subclass :class:`.base.Strategy`. This package is semkt's own strategy plugin (entry point
``strategies`` of the ``semkt.plugins`` group); other packages add strategies the same way.
"""
from __future__ import annotations

from ..hookspecs import hookimpl
from .base import Strategy


@hookimpl
def semkt_register_strategies() -> list[type[Strategy]]:
    """semkt's three strategies (their modules are imported when a strategy is first looked up)."""
    from .skt import SemanticTransfer
    from .smarthdr import SmartHDR
    from .smhdr import SMHDR

    return [SemanticTransfer, SMHDR, SmartHDR]
