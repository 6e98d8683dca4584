"""Batches for the short diagnostic runs (``semkt balance``, ``semkt probe``): each one ``(*inputs, target)``, the
model called as ``model(*inputs)``."""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor


def forever(batches: Iterable) -> Iterator:
    """``batches`` over and over (a DataLoader reshuffles each pass); an iterator that runs dry is an error."""
    for first in itertools.chain([True], itertools.repeat(False)):
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("no batches" if first else "the batches ran out after one pass: pass a re-iterable "
                             "such as a DataLoader, or at least `steps` batches")


def to_device(value: Any, device: torch.device | str) -> Any:
    """Every tensor in ``value`` moved to ``device``, through tuples, lists and dicts; anything else as it is."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        moved = [to_device(v, device) for v in value]
        return type(value)(*moved) if hasattr(value, "_fields") else type(value)(moved)  # a namedtuple: by field
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def split(batch: Any, device: torch.device | str) -> tuple[list[Any], Any]:
    """``(inputs, target)`` of a ``(*inputs, target)`` batch, on ``device``.

    Raises:
        TypeError: the batch is not a tuple or list of at least one input and the target.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        got = f"{type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) else \
            type(batch).__name__
        raise TypeError(f"a batch is a tuple or list (*inputs, target), at least one input and the target; got {got}")
    *inputs, target = to_device(batch, device)
    return inputs, target
