"""A strategy's loss as a table of named, weighted terms (as torchdistill's loss configurations), and the one code
path that turns a call's values into what :attr:`~semkt_plugin.strategies.base.Strategy.last_losses` reads.

Each strategy declares its table, ``TERMS``, in summing order; its rows are also the keys of ``last_losses``, in
the same order, followed by ``total``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from ..settings import Settings


@dataclass(frozen=True)
class Term:
    """One row of a strategy's loss table.

    Attributes:
        name: its key in ``last_losses`` (and, for skt, in ``loss_terms()``).
        weight: a settings field holding its λ, a number, or ``None`` for a value that is reported but not summed
            (a diagnostic such as SMHDR's mask ratio, or a part of a term the strategy weighs itself).
        compute: its unweighted value from what the terms of one call share; ``None`` where the strategy computes
            it in its own loss, together with the bookkeeping that reads the same tensors.
        ramped: whether the strategy's schedule ramps its weight (skt's distillation terms); such a term is computed
            only while its weight is above 0. A term that is not is computed in every call.
        built: whether the plugin has what the term needs (skt's SKAM for L_feat).
        idle: a zero that reaches the term's parameters while it is skipped, so ``DDP`` finds a gradient for each.
    """

    name: str
    weight: str | float | None
    compute: Callable[[Any], Tensor] | None = None
    ramped: bool = False
    built: Callable[[Any], bool] = lambda strategy: True
    idle: Callable[[Any], Tensor] | None = None

    def weight_in(self, settings: Settings) -> float:
        """Its λ under ``settings``."""
        return getattr(settings, self.weight) if isinstance(self.weight, str) else self.weight


def reported(terms: Sequence[Term], values: Mapping[str, Tensor | float],
             summed: Mapping[str, Tensor | float]) -> dict[str, Tensor | float]:
    """What ``last_losses`` reads: each row's unweighted value (detached; 0 for a row this call did not compute), in
    table order, then ``total``, the sum of the weighted terms ``summed`` (detached), in their order.

    Nothing is read back to the host: the tensors stay on the device until ``last_losses`` copies them all at once.
    """
    total = sum(_detached(value) for value in summed.values())
    return {**{term.name: _detached(values.get(term.name, 0.0)) for term in terms}, "total": total}


def _detached(value: Tensor | float) -> Tensor | float:
    return value.detach() if isinstance(value, Tensor) else value
