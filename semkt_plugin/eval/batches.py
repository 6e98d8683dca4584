"""Batches for the short diagnostic runs (``semkt balance``, ``semkt probe``)."""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator


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
