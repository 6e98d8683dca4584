"""``check_adapter``: one dry forward that tells whether an adapter fits a model, before any training."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import Adapter
from ..feature_hooks import FeatureHooks, point_channels, to_map, unwrap_container
from ..registry import get_adapter, strategies
from ..strategies.base import select_output


@dataclass
class PointReport:
    """What one hook point did in the dry forward."""

    path: str
    kind: str
    fired: int
    shape: tuple[int, ...] | None  # after the layout rules; None if it never fired
    channels: int | None  # what wrap() will build SKAM for
    uses: list[str]  # what each strategy does there, with its default settings


@dataclass
class CheckReport:
    """What :func:`check_adapter` found."""

    adapter: Adapter
    points: list[PointReport]
    output_shape: tuple[int, ...]
    output_range: tuple[float, float]

    @property
    def ok(self) -> bool:
        return all(p.fired and p.shape is not None and p.shape[1] == p.channels for p in self.points)

    def __str__(self) -> str:
        a = self.adapter
        lines = [f"adapter {a.name!r} ({a.source or 'given'}): H_in {self.output_shape}, domain {a.domain}, "
                 f"scale {a.scale}, range [{self.output_range[0]:.4g}, {self.output_range[1]:.4g}]"]
        for p in self.points:
            status = "ok" if p.fired and p.shape and p.shape[1] == p.channels else "PROBLEM"
            lines.append(f"  {status:7} {p.kind:7} {p.path:40} fired {p.fired}x  map {p.shape}  "
                         f"channels {p.channels}")
            lines.append(f"  {'':15} {'; '.join(p.uses) if p.uses else 'used by no strategy'}")
        return "\n".join(lines)


def strategy_uses(adapter: Adapter) -> dict[str, list[str]]:
    """Hook path → ``"<strategy>: <what it does there>"`` for every strategy at its default settings."""
    uses: dict[str, list[str]] = {}
    for name, cls in strategies().items():
        for path, what in cls.hook_plan(adapter, cls.settings_for(adapter)):
            uses.setdefault(path, []).append(f"{name}: {what}")
    return uses


def check_adapter(model: nn.Module, adapter: str | Adapter | Mapping[str, Any],
                  sample_inputs: Sequence[Any]) -> CheckReport:
    """Run ``model(*sample_inputs)`` once with the adapter's hooks and report each hook point.

    Args:
        model: the model (not modified; hooks are removed afterwards).
        adapter: name, Adapter or dict.
        sample_inputs: positional inputs of one forward, e.g. three ``(1, 6, 64, 64)`` frames.

    Raises:
        KeyError: a hook path is not a module; the message lists the closest real names.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from semkt_plugin import check_adapter
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1),
        ...                       nn.Sigmoid())
        >>> report = check_adapter(model, {"name": "tiny", "hooks": ["0"]}, [torch.rand(1, 3, 32, 32)])
        >>> report.ok, report.output_shape
        (True, (1, 3, 32, 32))
        >>> point = report.points[0]
        >>> point.fired, point.shape, point.channels
        (1, (1, 8, 32, 32), 8)
        >>> print(report)  # doctest: +ELLIPSIS
        adapter 'tiny' (given): H_in (1, 3, 32, 32), domain srgb, scale 1.0, range [...]
          ok      forward 0...fired 1x  map (1, 8, 32, 32)  channels 8
                          skt: read for SKAM; ...

        A ReLU has no channels to build SKAM for, so hooking it is a problem the report names:

        >>> check_adapter(model, {"name": "tiny", "hooks": ["1"]}, [torch.rand(1, 3, 32, 32)]).ok
        False
    """
    adapter = get_adapter(adapter)
    core = unwrap_container(model)
    hooks = FeatureHooks(core, adapter.hooks)
    try:
        with torch.enable_grad():  # hooks capture only where gradients are on, as in training
            output = model(*sample_inputs)
        h_in = select_output(output, adapter.output).detach()
        aspect = h_in.shape[-2] / h_in.shape[-1]
        uses = strategy_uses(adapter)
        points = []
        for i, (point, module) in enumerate(zip(adapter.hooks, hooks.modules)):
            captured: Tensor | None = hooks.captured.get(i)
            shape = tuple(to_map(captured, point, aspect).shape) if captured is not None else None
            points.append(PointReport(point.path, point.kind, hooks.calls[i], shape,
                                      point_channels(point, module), uses.get(point.path, [])))
    finally:
        hooks.remove()
    return CheckReport(adapter, points, tuple(h_in.shape), (float(h_in.min()), float(h_in.max())))
