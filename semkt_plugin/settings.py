"""What every strategy's settings share: μ of the domain transfer T, the plugin's seed, the run's length, schedule
points given as steps or fractions of it, and ``replace``. Each strategy's own settings subclass :class:`Settings`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .validation import check

S = TypeVar("S", bound="Settings")


@dataclass
class Settings:
    """Settings every strategy has.

    Attributes:
        mu: μ of the μ-law in T, in which every strategy's losses are computed.
        seed: seed of the plugin's own initial weights and random draws (masks, augmentations).
        total_steps: training steps of the whole run (``loss()`` calls; ``epochs * len(loader)`` in an epoch-based
            loop); needed where a schedule point is a fraction.
    """

    mu: float = 5000.0
    seed: int = 0
    total_steps: int | None = None

    # names of the fields that are schedule points: an int is a step count, a float in [0, 1] a fraction of the run
    schedule_points: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        check("mu", self.mu, above=0)
        check("seed", self.seed, kind=int)
        check("total_steps", self.total_steps, kind=int, at_least=1, optional=True)
        for name in self.schedule_points:
            value = getattr(self, name)
            check(name, value, kind=(int, float))
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: a float is a fraction of total_steps and must lie in [0, 1]; "
                                 "give a step count as an int")
            check(name, value, at_least=0)

    def steps_of(self, name: str) -> int:
        """The schedule point ``name`` in ``loss()`` calls: an int as it is, a fraction as ``round(value ·
        total_steps)``.

        Raises:
            ValueError: a fraction without ``total_steps``.
        """
        value = getattr(self, name)
        if isinstance(value, int):
            return value
        if self.total_steps is None:
            raise ValueError(f"{name}={value} is a fraction of the training length, but total_steps is not set: pass "
                             f"total_steps=<training steps> (loss() calls; epochs * len(loader)), or give {name} as a "
                             "step count (an int)")
        return round(value * self.total_steps)

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes``; unknown names raise with the list of fields."""
        return merge(self, changes)


def field_names(settings: Settings | type[Settings]) -> set[str]:
    """The names a settings class or instance can be given (class constants such as ``schedule_points`` are not
    among them)."""
    return {f.name for f in dataclasses.fields(settings)}


def merge(settings: S, changes: Mapping[str, Any]) -> S:
    """``settings`` with ``changes`` applied; unknown names raise with the list of fields."""
    known = field_names(settings)
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown {type(settings).__name__} fields {sorted(unknown)}; fields are {sorted(known)}")
    return dataclasses.replace(settings, **changes)
