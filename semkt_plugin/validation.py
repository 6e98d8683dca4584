"""One helper for value checks, so every setting and argument is refused with the same kind of message."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any


def check(name: str, value: Any, *, one_of: Collection[Any] | None = None, kind: type | tuple[type, ...] | None = None,
          at_least: float | None = None, at_most: float | None = None, above: float | None = None,
          below: float | None = None, optional: bool = False) -> None:
    """Raise ``ValueError`` naming ``name``, what it must be and what it got, unless ``value`` passes every given test.

    Args:
        name: the setting's or argument's name, as the user wrote it.
        value: its value.
        one_of: the allowed values.
        kind: the allowed type(s); a ``bool`` never passes for ``int`` or ``float``.
        at_least, at_most: closed bounds.
        above, below: open bounds.
        optional: ``None`` passes.
    """
    if value is None and optional:
        return
    if one_of is not None and value not in one_of:
        raise ValueError(f"{name} must be one of {tuple(one_of)}, got {value!r}")
    if kind is not None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ValueError(f"{name} must be {'an' if names[0] in 'aeiou' else 'a'} {names}, got {value!r}")
    low = ("[", at_least) if at_least is not None else ("(", above) if above is not None else None
    high = ("]", at_most) if at_most is not None else (")", below) if below is not None else None
    fails = ((at_least is not None and not value >= at_least) or (above is not None and not value > above)
             or (at_most is not None and not value <= at_most) or (below is not None and not value < below))
    if fails:
        if low and high:
            bounds = f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
        elif low:
            bounds = f"{'>=' if low[0] == '[' else '>'} {low[1]}"
        else:
            bounds = f"{'<=' if high[0] == ']' else '<'} {high[1]}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
