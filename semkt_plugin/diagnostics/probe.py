"""``semkt probe``: before days of training, does this SKB give this teacher anything it can use on this data?

The model trains with its own loss alone, as it would without semkt, and beside it several teachers train on its
output, each with other priors (``arms``): by default none, and the SKB's on the model's output (the paper's).
None of them distils anything, so all of them see the very same model at every step, and their
margins (:mod:`semkt_plugin.diagnostics.margin`) are exactly comparable: a teacher with priors whose margin
is no larger than the one without has, on this data, nothing from the SKB it can use, and distilling it can only
pass on what a bigger network learns by itself. The control ``{"prior_source": "truth"}`` gives a teacher the
SKB's priors of the ground truth itself: if even those do not raise its margin, the teacher cannot use priors,
whatever the segmenter.

    model.to("cuda")                                      # the probe runs where the model is
    report = run_probe(model, "ahdr", loader, their_loss, steps=300, lr=1e-4)
    print(report.table()); report.plot("probe.png")

``loader`` is any iterable of ``(*inputs, target)`` batches (a DataLoader, a list, a generator function's result),
cycled when it runs out; ``their_loss(output, target)`` is the model's own loss on ``output = model(*inputs)``.

Margins are read over the second half of the run, split into ``windows`` windows; the interval is Student's t
over those windows. Neighbouring windows of one run are not independent samples, so the interval describes the
run's steadiness rather than a spread over seeds: repeat with other seeds for that.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..adapter import Adapter
from ..registry import get_adapter
from ..settings import merge
from ..strategies.skt.strategy import SemanticTransfer, SKTConfig, load_configured_skb
from .batches import forever, split
from .margin import teacher_margin
from .runtime import describe_device, describe_model, describe_skb
from .stats import PairedGain, mean_interval, paired_gain

REFERENCE = "no priors"
ARMS: dict[str, dict[str, Any]] = {REFERENCE: {"use_priors": False}, "priors from the output": {}}
CONTROL: dict[str, dict[str, Any]] = {"priors from the truth": {"prior_source": "truth"}}
# the teachers only learn: nothing is distilled (so no schedule), no feature is hooked
TEACHER_ONLY = {"lambda_content": 0.0, "lambda_color": 0.0, "use_skam": False, "distill_start": 0, "distill_warmup": 0}


def teachers(model: nn.Module, adapter: Adapter, config: SKTConfig, arms: Mapping[str, Mapping[str, Any]],
             skb: nn.Module | None = None) -> dict[str, SemanticTransfer]:
    """One teacher-only plugin per arm (``config`` with the arm's changes), sharing one SKB; none hooks the model.

    Each is built from ``config.seed`` under a forked RNG, as :func:`~semkt_plugin.wrap` builds the plugin.
    """
    configs = {name: merge(config, {**TEACHER_ONLY, **changes}) for name, changes in arms.items()}
    if skb is None and any(c.needs_skb for c in configs.values()):
        skb = load_configured_skb(config)
    built = {}
    for name, arm in configs.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(arm.seed)
            built[name] = SemanticTransfer(model, adapter, arm, skb if arm.needs_skb else None)
    return built


@dataclass
class ProbeReport:
    """Per step: the model's μ-law L1 (``orm``) and each arm's teacher L_spg (``spg[arm]``); margins over windows.

    Attributes:
        orm: the model's μ-law L1 to the ground truth at each step.
        spg: per arm, its teacher's L_spg at each step.
        windows: how many windows the second half of the run is split into.
        reference: the arm the others are compared with.
        setup: what ran, in words: ``device``, ``SKB`` and ``model`` (:mod:`semkt_plugin.diagnostics.runtime`).
    """

    orm: list[float]
    spg: dict[str, list[float]]
    windows: int = 5
    reference: str = REFERENCE
    setup: dict[str, str] = field(default_factory=dict)

    def bounds(self) -> list[tuple[int, int]]:
        """``[start, stop)`` of each window: the second half of the steps, split evenly."""
        first, n = len(self.orm) // 2, len(self.orm)
        cuts = [first + round(i * (n - first) / self.windows) for i in range(self.windows + 1)]
        return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]

    def margins(self) -> dict[str, list[float]]:
        """Per arm, its teacher's margin over the model in each window."""
        records = {arm: [{"spg": s, "orm": o} for s, o in zip(spg, self.orm)] for arm, spg in self.spg.items()}
        return {arm: [teacher_margin(r, a, b) for a, b in self.bounds()] for arm, r in records.items()}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per arm: ``margin`` (mean and interval over the windows) and, for all but the reference arm, ``gain``
        (its margin minus the reference's, window by window)."""
        margins = self.margins()
        out: dict[str, dict[str, Any]] = {}
        for arm, values in margins.items():
            out[arm] = {"margin": mean_interval(values).to_dict()}
            if self.reference in margins and arm != self.reference:
                out[arm]["gain"] = paired_gain(values, margins[self.reference]).to_dict()
        return out

    def table(self) -> str:
        """The margins, the gains over the reference arm, and what they say."""
        (a, _), (_, b) = self.bounds()[0], self.bounds()[-1]
        lines = [f"{name}: {value}" for name, value in self.setup.items()]
        lines += [f"teacher margin over the model, 1 − L_spg / the model's μ-law L1 (×100), steps {a}–{b - 1} in "
                  f"{len(self.bounds())} windows: mean [95 % CI over the windows]",
                  f"  the model's μ-law L1 there: {sum(self.orm[a:b]) / (b - a):.4f}"]
        width = max(len(arm) for arm in self.spg) + 2
        summary = self.summary()
        for arm, entry in summary.items():
            lines.append(f"  {arm:<{width}}{_interval(entry['margin'])}")
        compared = [arm for arm in summary if "gain" in summary[arm]]
        if compared:
            lines += ["", f"margin gained over the teacher with {self.reference} (×100), window by window"]
            for arm in compared:
                gain = PairedGain(**summary[arm]["gain"])
                lines.append(f"  {arm:<{width}}{_interval(summary[arm]['gain'])}  {_reading(gain)}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"setup": self.setup, "orm": self.orm, "spg": self.spg, "windows": self.windows,
                           "reference": self.reference, "bounds": self.bounds(), "summary": self.summary()}, indent=1)

    def plot(self, path: str | Path) -> None:
        """Left: the model's μ-law L1 and each teacher's L_spg over the steps. Right: each teacher's margin over the
        model, ``1 − L_spg / L_orm``. Moving averages; the windows the margins are read over are shaded."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        k = max(1, len(self.orm) // 30)
        smooth = lambda v: np.convolve(v, np.ones(k) / k, mode="valid")  # noqa: E731
        fig, (losses, margins) = plt.subplots(1, 2, figsize=(12, 4.2))
        losses.plot(smooth(self.orm), label="the model (μ-law L1)", color="black", linewidth=1)
        orm = smooth(self.orm)
        for arm, spg in self.spg.items():
            losses.plot(smooth(spg), label=f"teacher, {arm} (L_spg)", linewidth=0.9)
            margins.plot(100 * (1 - smooth(spg) / orm), label=arm, linewidth=0.9)
        for ax in (losses, margins):
            for i, (a, b) in enumerate(self.bounds()):
                ax.axvspan(a, b, color="grey", alpha=0.08 if i % 2 else 0.16, linewidth=0)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        losses.set_yscale("log")
        losses.set_title(f"losses (moving average of {k} steps)", fontsize=9)
        margins.axhline(0, color="grey", linewidth=0.8)
        margins.set_ylabel("teacher margin over the model (%)")
        margins.set_title("1 − L_spg / the model's L1; shaded: the windows of the table", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _interval(entry: Mapping[str, Any]) -> str:
    ci = "[n/a]" if entry["ci"] is None else f"[{entry['ci'][0] * 100:+.2f}, {entry['ci'][1] * 100:+.2f}]"
    return f"{entry['mean'] * 100:+7.2f} {ci}"


def _reading(gain: PairedGain) -> str:
    if gain.ci is None:
        return ""
    if gain.ci[0] > 0:
        return "the priors help this teacher"
    if gain.ci[1] < 0:
        return "the priors hurt this teacher"
    return "no difference this run can show"


def _skb_name(plugins: Mapping[str, SemanticTransfer], config: SKTConfig, skb: nn.Module | None) -> str:
    if all(plugin.skb is None for plugin in plugins.values()):
        return "none: no arm reads it"
    if skb is not None:
        return f"given ({type(skb).__name__})"
    return describe_skb(config.skb_weights, config.skb_arch)


def run_probe(model: nn.Module, adapter: str | Path | Mapping[str, Any] | Adapter, batches: Iterable[Sequence[Any]],
              loss: Callable[[Any, Any], Tensor], *, steps: int = 300,
              arms: Mapping[str, Mapping[str, Any]] | None = None, config: SKTConfig | None = None,
              optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-4, windows: int = 5,
              skb: nn.Module | None = None, progress: bool = True) -> ProbeReport:
    """Train the model with its own loss for ``steps`` steps, and one teacher per arm beside it.

    Everything runs on the model's device: the teachers (and the SKB) are built there and every tensor of each
    batch is moved there (through tuples, lists and dicts).

    Args:
        model: the user's model, not wrapped; in training mode, on the device to run on. It is trained: copy it
            first to keep it.
        adapter: as for :func:`~semkt_plugin.wrap`.
        batches: ``(*inputs, target)`` tuples or lists, ``output = model(*inputs)``; iterated again when exhausted
            (a one-shot iterator must hold ``steps`` batches). ``target`` is what the plugin compares the adapter's
            output with (linear HDR, or RAW for a RAW adapter).
        loss: the model's own loss, ``loss(output, target)`` → a scalar tensor, on the raw ``output``.
        steps: training steps; margins are read over the second half.
        arms: name → :class:`~semkt_plugin.SKTConfig` changes of each teacher; default :data:`ARMS` (no priors, and
            the SKB on the model's output).
        config: the settings every arm starts from; default ``SKTConfig()`` (FastSAM-s as the SKB).
        optimizer: the model's optimiser; default Adam at ``lr``.
        lr: the teachers' Adam learning rate (and the model's, when ``optimizer`` is ``None``).
        windows: windows the second half is split into.
        skb: an already-built SKB, shared by every arm.
        progress: show a progress bar.
    """
    if steps < 2 * windows:
        raise ValueError(f"steps={steps} leaves fewer than one step per window in the second half; use at least "
                         f"{2 * windows} steps or fewer windows")
    adapter = get_adapter(adapter)
    arms = ARMS if arms is None else arms
    config = config or SKTConfig()
    device = next(model.parameters()).device
    plugins = {name: plugin.to(device) for name, plugin in teachers(model, adapter, config, arms, skb).items()}
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    teacher_opt = torch.optim.Adam([p for plugin in plugins.values() for p in plugin.parameters()], lr=lr)
    setup = {"device": describe_device(device), "SKB": _skb_name(plugins, config, skb), "model": describe_model(model)}
    orm: list[float] = []
    spg: dict[str, list[float]] = {name: [] for name in plugins}
    for _, batch in tqdm(zip(range(steps), forever(batches)), total=steps, desc="semkt probe", disable=not progress):
        inputs, target = split(batch, device)
        output = model(*inputs)
        total = loss(output, target)
        for name, plugin in plugins.items():
            total = total + plugin.loss(output, target)  # L_spg alone: it moves only its teacher
            spg[name].append(plugin.last_losses["spg"])
        orm.append(next(iter(plugins.values())).last_losses["orm"])
        optimizer.zero_grad()
        teacher_opt.zero_grad()
        total.backward()
        optimizer.step()
        teacher_opt.step()
    return ProbeReport(orm, spg, windows, setup=setup)
