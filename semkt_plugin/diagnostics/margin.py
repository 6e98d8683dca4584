"""The teacher's margin: how much better the teacher's refinement is than the model it would teach.

``m = 1 − mean(L_spg) / mean(L_orm)`` over a window of training steps, ``L_spg`` the teacher's μ-law L1 to the
ground truth and ``L_orm`` the model's own (``skt.last_losses["spg"]`` and ``["orm"]``). Measured just before the
distillation starts, it is an exact paired readout: until then semkt does not touch the model, so every arm of an
experiment at one seed trains the same model through the same steps, bit for bit, and arms differ only in their
teachers. A margin of 0.1 means the teacher's error is 10 % below the model's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..settings import field_names
from ..strategies.skt import SKTConfig


def teacher_margin(losses: Sequence[Mapping[str, float]], start: int, stop: int) -> float:
    """``1 − mean(spg) / mean(orm)`` over the records ``losses[start:stop]`` (one per training step).

    Raises:
        ValueError: an empty window, or records without ``spg`` and ``orm``.
    """
    window = losses[start:stop]
    if not window:
        raise ValueError(f"no training steps in the window [{start}, {stop}) of {len(losses)} recorded")
    spg = sum(r["spg"] for r in window) / len(window)
    orm = sum(r["orm"] for r in window) / len(window)
    return 1.0 - spg / orm


def margin_window(distill_start: int) -> tuple[int, int]:
    """The steps the margin is read over: the last third of those before the distillation starts."""
    return distill_start - max(1, distill_start // 3), distill_start


def run_margin(settings: Mapping[str, Any], steps: int, losses: Sequence[Mapping[str, float]]) -> float | None:
    """The margin of one skt run (its settings as given to ``wrap``, its length, its per-step ``last_losses``) over
    :func:`margin_window`; ``None`` when the distillation starts at step 0, so no step precedes it."""
    known = {k: v for k, v in settings.items() if k in field_names(SKTConfig)}
    start, _ = SKTConfig(**{**known, "total_steps": steps}).schedule()
    if start == 0:
        return None
    return teacher_margin(losses, *margin_window(start))
