"""Training schemes, one module each; :func:`semkt_plugin.wrap` picks one by name (``strategy=``).

- ``"skt"`` (:mod:`.skt`): Semantic Knowledge Transfer, the main paper: a semantic teacher distilled into the model.
- ``"smhdr"`` (:mod:`.smhdr`): SMHDR's curriculum semantic masking of the model's features.
- ``"smarthdr"`` (:mod:`.smarthdr`): SmartHDR's semi-supervised mean teacher with uncertainty masking.

Each is imported when first asked for, so a strategy's dependencies load only when it is used.
"""
from __future__ import annotations

import importlib

from ..plugin import Strategy

STRATEGIES = {"skt": ("skt", "SemanticTransfer"), "smhdr": ("smhdr", "SMHDR"), "smarthdr": ("smarthdr", "SmartHDR")}


def get_strategy(name: str) -> type[Strategy]:
    """The :class:`~semkt_plugin.plugin.Strategy` class registered as ``name``."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; strategies are {sorted(STRATEGIES)}")
    module, cls = STRATEGIES[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
