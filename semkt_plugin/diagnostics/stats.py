"""Statistics of paired gains: mean, per-seed values and a 95 % confidence interval (paired t).

The pairs share everything but semkt, so each seed's gain ``with − without`` is one sample of semkt's effect; the
interval is Student's t over those samples, ``mean ± t_{0.975, n−1} · sd / √n``. With one seed there is no
interval (``None``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def t_quantile(p: float, dof: int) -> float:
    """Quantile ``p`` of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


@dataclass
class PairedGain:
    """Gains of one metric over seeds: ``mean``, ``ci`` (95 %, or ``None`` with one seed) and ``per_seed``."""

    mean: float
    ci: tuple[float, float] | None
    per_seed: list[float]

    @property
    def above_zero(self) -> bool:
        """Whether the whole 95 % interval lies above zero."""
        return self.ci is not None and self.ci[0] > 0

    def to_dict(self) -> dict:
        return asdict(self)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> PairedGain:
    """The mean of ``values`` (one per seed) and its Student-t interval; ``per_seed`` holds the values."""
    return paired_gain(values, [0.0] * len(values), confidence)


def paired_gain(treated: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> PairedGain:
    """Per-seed ``treated − baseline``, their mean and its paired-t confidence interval.

    Args:
        treated, baseline: one value per seed, in the same seed order.
        confidence: two-sided level of the interval.
    """
    if len(treated) != len(baseline) or not treated:
        raise ValueError(f"paired gains need the same, non-zero number of runs, got {len(treated)} and {len(baseline)}")
    gains = [float(a) - float(b) for a, b in zip(treated, baseline)]
    n = len(gains)
    mean = sum(gains) / n
    if n == 1:
        return PairedGain(mean, None, gains)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return PairedGain(mean, (mean - half, mean + half), gains)
