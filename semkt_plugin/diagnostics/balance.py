"""Gradient balance: how hard each semkt term pulls on the user's model (the ORM), next to its own task loss.

For each weighted term ``t`` of :meth:`~semkt_plugin.SemanticTransfer.loss_terms` and the task loss ``L_task``,
on the model's trainable parameters θ::

    ratio  = ‖∂t/∂θ‖ / ‖∂L_task/∂θ‖          how strong the pull is, against the task's
    cosine = cos(∂t/∂θ, ∂L_task/∂θ)           whether it pulls with the task (> 0) or against it (< 0)

``"distill"`` is the sum of every term but ``"spg"``: what semkt adds to the model's update. ``"spg"`` must show
ratio 0, since L_spg moves only the teacher; anything else means its gradient leaks into the model. With groups,
``"<term>/<child>"`` repeats both numbers on the parameters of one top-level child module (AHDR's ``conv1``,
``RDB1``, ...), which shows where a term pulls. These are the numbers to set λ1, λ2 and λ_feat from on a new
baseline: a ratio far below 1 does nothing, one far above it drowns the task loss.

    report = run_balance(model, skt, loader, lambda out, gt: l1(out, gt), optimizer=optimizer, steps=50)
    print(report.table()); report.plot("balance.png")
"""
from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..feature_hooks import unwrap_container
from ..strategies.skt import SemanticTransfer
from ..validation import check
from .batches import forever, split

__all__ = ["BalanceReport", "compare", "gradient_balance", "run_balance", "term_gradients", "trainable_parameters"]

TEACHER_TERM = "spg"  # the one term that must not reach the model
DISTILL = "distill"


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter of the model that requires grad, wrappers (DDP, compile) looked
    through so names start with the model's own top-level children."""
    return [(name, p) for name, p in unwrap_container(model).named_parameters() if p.requires_grad]


def term_gradients(model: nn.Module, terms: dict[str, Tensor],
                   params: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
    """Each term's gradient on the model's parameters, flattened: ``{name: (P,)}`` float32.

    The graph is kept (the caller's ``backward()`` still works) and ``.grad`` is left as it was. A parameter a
    term does not reach gets zeros.

    Args:
        model: whose trainable parameters to differentiate by (ignored when ``params`` is given).
        terms: scalar losses, e.g. ``skt.loss_terms(out, gt)``.
        params: the parameters, in the order of the flat vectors; default :func:`trainable_parameters`.
    """
    params = [p for _, p in trainable_parameters(model)] if params is None else list(params)
    grads = {}
    for name, term in terms.items():
        parts = (torch.autograd.grad(term, params, retain_graph=True, allow_unused=True) if term.requires_grad
                 else [None] * len(params))
        grads[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                 for g, p in zip(parts, params)])
    return grads


def compare(grad: Tensor, task_grad: Tensor) -> dict[str, float]:
    """``{"ratio": ‖grad‖ / ‖task_grad‖, "cosine": cos(grad, task_grad)}`` of two ``(P,)`` vectors.

    A zero ``grad`` has ratio 0 and cosine 0 (it pulls nowhere); against a zero ``task_grad`` any other has ratio
    ``inf``.
    """
    norm, task_norm = float(grad.norm()), float(task_grad.norm())
    if norm == 0:
        return {"ratio": 0.0, "cosine": 0.0}
    if task_norm == 0:
        return {"ratio": float("inf"), "cosine": 0.0}
    return {"ratio": norm / task_norm, "cosine": float(grad @ task_grad) / (norm * task_norm)}


def gradient_balance(task: Tensor, terms: dict[str, Tensor], model: nn.Module,
                     groups: bool = False) -> dict[str, dict[str, float]]:
    """Ratio and cosine of each term's gradient to the task loss's, on the model's trainable parameters.

    Args:
        task: the model's own loss L_task (scalar, graph attached).
        terms: scalar terms on the same graph, e.g. ``skt.loss_terms(out, gt)``.
        model: the user's model; only its parameters count, not the plugin's.
        groups: also give ``"<term>/<child>"`` per top-level child module of the model (children whose parameters
            no loss reaches, like AHDR's unused ``attConv1``, are left out).

    Returns:
        ``{key: {"ratio", "cosine"}}`` for every term, ``"distill"`` (all terms but ``"spg"``) and, with
        ``groups``, per child. ``.grad`` is untouched and the graph kept for the step's ``backward()``.
    """
    return _balance(task, terms, model, groups)[0]


def _balance(task: Tensor, terms: dict[str, Tensor], model: nn.Module,
             groups: bool) -> tuple[dict[str, dict[str, float]], float]:
    """:func:`gradient_balance` and ``‖∂L_task/∂θ‖``."""
    named = trainable_parameters(model)
    params = [p for _, p in named]
    (task_grad,) = term_gradients(model, {"task": task}, params).values()
    grads = term_gradients(model, terms, params)
    distill = [g for name, g in grads.items() if name != TEACHER_TERM]
    if distill:
        grads[DISTILL] = torch.stack(distill).sum(0)
    balance = {name: compare(g, task_grad) for name, g in grads.items()}
    if groups:
        for child, index in _child_slices(named).items():
            child_grads = {name: g[index] for name, g in grads.items()}
            child_task = task_grad[index]
            if child_task.any() or any(g.any() for g in child_grads.values()):
                balance.update({f"{name}/{child}": compare(g, child_task) for name, g in child_grads.items()})
    return balance, float(task_grad.norm())


def _child_slices(named: list[tuple[str, nn.Parameter]]) -> dict[str, Tensor]:
    """Positions in the flat gradient of each top-level child's parameters (a parameter of the model itself is
    its own group)."""
    positions: dict[str, list[Tensor]] = {}
    offset = 0
    for name, p in named:
        positions.setdefault(name.split(".")[0], []).append(torch.arange(offset, offset + p.numel()))
        offset += p.numel()
    return {child: torch.cat(parts) for child, parts in positions.items()}


@dataclass
class BalanceReport:
    """What :func:`run_balance` measured.

    records: per measurement ``{"step": optimizer steps before it, "task": L_task, "task_norm": ‖∂L_task/∂θ‖,
        "balance": gradient_balance(...)}``.
    steps, every: the run's length and measuring interval.
    """

    records: list[dict[str, Any]]
    steps: int
    every: int

    def keys(self) -> list[str]:
        """Every measured key, in first-seen order: the terms, ``"distill"``, then the per-child ones."""
        return list(dict.fromkeys(k for r in self.records for k in r["balance"]))

    def series(self, key: str, what: str) -> tuple[list[int], list[float]]:
        """Steps and values of ``what`` (``"ratio"`` or ``"cosine"``) for ``key``, where it was measured."""
        points = [(r["step"], r["balance"][key][what]) for r in self.records if key in r["balance"]]
        return [s for s, _ in points], [v for _, v in points]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per key: median and quartiles (25 %, 75 %) of ratio and cosine over the measurements, and the share
        of measurements whose cosine is negative (the term opposing the task loss)."""
        out = {}
        for key in self.keys():
            stats = {}
            for what in ("ratio", "cosine"):
                q25, median, q75 = np.percentile(self.series(key, what)[1], [25, 50, 75])
                stats.update({f"{what}_median": float(median), f"{what}_q25": float(q25), f"{what}_q75": float(q75)})
            cosines = self.series(key, "cosine")[1]
            stats["negative_cosine"] = sum(c < 0 for c in cosines) / len(cosines)
            out[key] = stats
        return out

    def table(self) -> str:
        """The summary as text: one row per term, then the median ratio (cosine) of each distillation term per
        top-level child."""
        summary = self.summary()
        terms = [k for k in summary if "/" not in k]
        pulls = [t for t in terms if t != TEACHER_TERM]  # the teacher's term is all zeros per module when routed
        lines = [f"gradient balance on the model's parameters: {len(self.records)} measurements over {self.steps} "
                 f"steps (every {self.every})",
                 "ratio = |grad term| / |grad L_task|, cosine = cos(grad term, grad L_task); median [25%, 75%]",
                 f"{'term':<10}{'ratio':>32}{'cosine':>24}{'cos<0':>8}"]
        for key in terms:
            s = summary[key]
            ratio = f"{s['ratio_median']:.3g} [{s['ratio_q25']:.3g}, {s['ratio_q75']:.3g}]"
            cosine = f"{s['cosine_median']:+.2f} [{s['cosine_q25']:+.2f}, {s['cosine_q75']:+.2f}]"
            lines.append(f"{key:<10}{ratio:>32}{cosine:>24}{s['negative_cosine']:>8.0%}")
        children = list(dict.fromkeys(k.split("/", 1)[1] for k in summary if "/" in k))
        if children:
            lines += ["", "median ratio (cosine) per top-level module",
                      f"{'module':<14}" + "".join(f"{t:>17}" for t in pulls)]
            for child in children:
                cells = [summary.get(f"{t}/{child}") for t in pulls]
                lines.append(f"{child:<14}" + "".join(
                    f"{c['ratio_median']:>9.2g} ({c['cosine_median']:+.2f})" if c else f"{'-':>17}" for c in cells))
        return "\n".join(lines)

    def to_json(self) -> str:
        """``{"steps", "every", "summary", "records"}`` as JSON text."""
        return json.dumps({"steps": self.steps, "every": self.every, "summary": self.summary(),
                           "records": self.records}, indent=1) + "\n"

    def plot(self, path: str | Path) -> None:
        """Ratio (log scale) and cosine over the steps, one line per term (not per module), written to ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ratio_ax, cosine_ax) = plt.subplots(1, 2, figsize=(11, 4))
        for key in (k for k in self.keys() if "/" not in k):
            steps, ratios = self.series(key, "ratio")
            # a log axis cannot draw 0 (a clean "spg"; content and color while the teacher is still the identity):
            # leave a gap rather than a line diving off the axis, and say so in the legend when it is all 0
            label = key if any(r > 0 for r in ratios) else f"{key} (0, not drawn)"
            ratio_ax.plot(steps, [r if r > 0 else float("nan") for r in ratios], label=label, linewidth=1)
            cosine_ax.plot(*self.series(key, "cosine"), label=key, linewidth=1)
        ratio_ax.set_yscale("log")
        ratio_ax.axhline(1, color="grey", linewidth=0.5)
        ratio_ax.set_title("|grad term| / |grad L_task| on the model", fontsize=10)
        cosine_ax.axhline(0, color="grey", linewidth=0.5)
        cosine_ax.set_ylim(-1.05, 1.05)
        cosine_ax.set_title("cos(grad term, grad L_task)", fontsize=10)
        for ax in (ratio_ax, cosine_ax):
            ax.set_xlabel("optimizer step")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def run_balance(model: nn.Module, skt: SemanticTransfer, batches: Iterable[Sequence[Any]],
                loss: Callable[[Any, Any], Tensor], *, optimizer: torch.optim.Optimizer | None = None,
                steps: int = 50, every: int = 1, groups: bool = True) -> BalanceReport:
    """Train ``steps`` steps as a user's loop does (``loss + skt.loss``) and measure the balance along the way.

    Each measurement is taken before its step's update, on the same forward and the same terms the step then
    backpropagates (one ``loss_terms`` call per step, so SKAM's masks and the warm-up advance as in training).
    The model and the plugin are trained: copy them first to keep them as they were. Single process: under DDP
    the plugin's own gradients would not be averaged. Everything runs on the model's device: every tensor of each
    batch is moved there (through tuples, lists and dicts).

    Args:
        model: the user's model, wrapped by ``skt``; in the mode to train in (``model.train()``), on the device to
            run on (``skt`` follows it when wrapped after the move).
        skt: the plugin, ``wrap(model, ...)``.
        batches: ``(*inputs, target)`` tuples or lists (what a DataLoader over a Kalantari-layout dataset yields:
            ``x1, x2, x3, gt``), ``output = model(*inputs)``; iterated again when exhausted.
        loss: the user's own loss, ``loss(output, target)`` → a scalar tensor, on the raw output.
        optimizer: over the model's and the plugin's parameters; ``None``: Adam, lr 1e-4 (AHDRNet's).
        steps: optimizer steps.
        every: measure at steps 0, every, 2·every, ... (steps taken before the measurement).
        groups: also measure per top-level child module (see :func:`gradient_balance`).
    """
    check("steps", steps, at_least=1)
    check("every", every, at_least=1)
    if optimizer is None:
        optimizer = torch.optim.Adam([*model.parameters(), *skt.parameters()], lr=1e-4)
    device = next(model.parameters()).device
    records = []
    for step, batch in zip(range(steps), forever(batches)):
        inputs, target = split(batch, device)
        output = model(*inputs)
        task = loss(output, target)
        terms = skt.loss_terms(output, target)
        if step % every == 0:
            balance, task_norm = _balance(task, terms, model, groups)
            records.append({"step": step, "task": task.item(), "task_norm": task_norm, "balance": balance})
        optimizer.zero_grad()
        (task + functools.reduce(operator.add, terms.values())).backward()  # skt.loss's sum, in its order
        optimizer.step()
    return BalanceReport(records, steps, every)
