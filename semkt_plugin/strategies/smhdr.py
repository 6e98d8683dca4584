"""SMHDR's curriculum semantic masking (IJCV 2025, github.com/eezkni/SMHDR), ``strategy="smhdr"``.

What it hooks: the adapter's hook points, which it masks: the hooks return the feature multiplied by a map, with
probability ``region_prob`` the region mask (1 on kept regions, 0 on masked ones, resized to the feature by
nearest neighbour), else ``sigmoid`` of the feature's channel mean (SMHDR's ``MaskBlock``; a coin per hook point
per forward). The regions are drawn once per forward, shared by all hook points: ``mask_unit="region"`` masks each
region of each sample whole with probability ``r_m``, ``"pixel"`` masks ``round(r_m · n_m)`` of a region's
``n_m`` pixels at random (SMHDR's code). A forward is masked only when the model is in training mode with
gradients enabled, the curriculum ratio is above 0, and ``skt.regions(ids)`` gave the batch's region IDs; in
eval the model computes exactly what it computes without the plugin.

What it computes per ``loss(output, target)``: ``λ_region · mean(w · |T(H_in) − T(target)|)``, T the μ-law, ``w``
the loss weight of each pixel's region (SMHDR's L1 of ``pred·w`` against ``gt·w`` in the μ domain). In training it
adds each region's squared μ-law error to running sums; every ``refresh`` calls these become the region's PSNR-μ,
and the tables follow from it: mask ratio ``r_m = min(1, ratio · N · softmax(0.05 · PSNR)_m)`` (easier regions
are masked more) and loss weight ``w_m = N · softmax(−0.1 · PSNR)_m`` (harder regions weigh more). A region not
measured yet has ``r_m = ratio`` and ``w_m = 1``.

What it saves: the step counter ``steps``, and as extra state the per-region PSNR table, the running sums and the
mask generator's state, so a resumed run draws the same masks. It has no parameters.

The curriculum ratio (:func:`curriculum_ratio`) is 0 for the first 75 % of training, rises linearly to 0.9 by
87.5 % and falls back to 0 by the end: SMHDR's 400 epochs, the first 300 unmasked. As in SMHDR, whose second
phase starts at epoch 301, the loss weights apply from ``ramp_start`` on (all 1 before).

Where this differs from SMHDR's code:

- Difficulty is measured on the training batches as they were computed (crops, masks included). SMHDR runs an
  extra evaluation pass over the whole training scenes before each epoch; we do not, so the plugin adds no
  forward. A region's PSNR is the last one measured; one not seen in a refresh window keeps its previous value.
- Under ``torch.distributed`` the ranks pool their sums at each refresh, so all hold the same tables (SMHDR trains
  on one GPU).
- The softmax runs, as SMHDR's, over one scene's regions: the regions in the table whose global IDs share
  ``id // 65536`` (the encoding of ``KalantariDataset(regions=True)``), with ``N`` their number. IDs below 65536
  all count as one scene.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..adapter import Adapter, HookPoint
from ..feature_hooks import FeatureMasks, unwrap_container
from ..layout import scene_of
from ..settings import Settings
from ..validation import check
from .base import Strategy
from .terms import Term, reported


@dataclass
class SMHDRConfig(Settings):
    """SMHDR settings; defaults are SMHDR's (``train_phase2.py``) unless noted. ``mu`` (the μ of the loss and the
    PSNR-μ), ``seed`` (the mask generator's) and ``total_steps`` are the base's.

    Attributes:
        peak_ratio: the curriculum's highest mask ratio.
        ramp_start, ramp_peak, ramp_end: where the ratio starts rising, peaks and is back at 0. A float in
            ``[0, 1]`` is a fraction of ``total_steps``, an int a number of ``loss()`` calls.
        mask_temperature: the softmax temperature of the mask ratios (positive: easier regions masked more).
        loss_temperature: the softmax temperature of the loss weights (negative: harder regions weigh more).
        region_prob: probability that a hook point is masked by the regions rather than by its own feature.
            The feature's own map (sigmoid of its channel mean) scales it in training only; at 1 only region
            maps are used (docs/results.md has what each costs).
        refresh: training ``loss()`` calls between recomputations of the PSNR table (SMHDR: once per epoch).
        lambda_region: weight of the returned loss.
        mask_unit: ``"region"``: each region of each sample is masked whole with probability ``r_m``;
            ``"pixel"``: ``r_m`` of each region's pixels at random (SMHDR's code).
        mask_points: indices of the adapter's hook points to mask (``None``: all). SMHDR masks the first block of
            each encoder stage, early in the network; the built-in adapters list their shallowest feature first
            and their deepest, next to the output, last, where a masked region leaves the layers after it nothing
            to rebuild it from. Default: the first only (docs/results.md has the measurement).
    """

    peak_ratio: float = 0.9
    ramp_start: float | int = 0.75
    ramp_peak: float | int = 0.875
    ramp_end: float | int = 1.0
    mask_temperature: float = 0.05
    loss_temperature: float = -0.1
    region_prob: float = 0.75
    refresh: int = 100
    lambda_region: float = 1.0
    mask_unit: Literal["region", "pixel"] = "region"
    mask_points: tuple[int, ...] | None = (0,)

    schedule_points: ClassVar[tuple[str, ...]] = ("ramp_start", "ramp_peak", "ramp_end")

    def __post_init__(self) -> None:
        super().__post_init__()
        check("mask_unit", self.mask_unit, one_of=("region", "pixel"))
        for name in ("peak_ratio", "region_prob"):
            check(name, getattr(self, name), at_least=0.0, at_most=1.0)
        check("refresh", self.refresh, kind=int, at_least=1)
        for name in ("mask_temperature", "loss_temperature"):
            check(name, getattr(self, name), kind=(int, float))
        check("lambda_region", self.lambda_region, at_least=0)
        if self.mask_points is not None:
            self.mask_points = tuple(self.mask_points)
            if not self.mask_points or any(isinstance(i, bool) or not isinstance(i, int) for i in self.mask_points):
                raise ValueError(f"mask_points must be a non-empty tuple of hook-point indices or None, got "
                                 f"{self.mask_points!r}")
        points = (self.ramp_start, self.ramp_peak, self.ramp_end)
        if self.total_steps is not None or not any(isinstance(v, float) for v in points):
            self.schedule()

    def schedule(self) -> tuple[int, int, int]:
        """``(start, peak, end)`` in ``loss()`` calls, fractions resolved against ``total_steps``.

        Raises:
            ValueError: a fraction without ``total_steps``, or not ``start ≤ peak ≤ end``.
        """
        steps = [self.steps_of(name) for name in self.schedule_points]
        if not steps[0] <= steps[1] <= steps[2]:
            raise ValueError(f"the curriculum needs ramp_start <= ramp_peak <= ramp_end, got steps {tuple(steps)} "
                             f"from {self.ramp_start!r}, {self.ramp_peak!r}, {self.ramp_end!r}")
        return steps[0], steps[1], steps[2]


#: SMHDR's loss, and the mask ratio of the forward, reported beside it
TERMS: tuple[Term, ...] = (
    Term("region", "lambda_region"),
    Term("ratio", None),
)


def curriculum_ratio(step: int, start: int, peak: int, end: int, peak_ratio: float) -> float:
    """The mask ratio at ``step`` (0-based ``loss()`` calls): 0 before ``start``, rising linearly to ``peak_ratio``
    at ``peak``, falling linearly to 0 at ``end``, 0 after."""
    if step < start or step > end:
        return 0.0
    if step < peak:
        return peak_ratio * (step - start) / (peak - start)
    if step == peak:
        return float(peak_ratio)
    return peak_ratio * (end - step) / (end - peak)


def region_weights(psnr: Tensor, temperature: float) -> Tensor:
    """``N · softmax(temperature · psnr)``, one value per region: SMHDR's loss weights (``temperature < 0``).

    Shapes:
        psnr ``(N,)`` PSNR-μ of one scene's regions → ``(N,)``, mean 1.
    """
    return psnr.numel() * torch.softmax(temperature * psnr, 0)


def region_ratios(psnr: Tensor, ratio: float, temperature: float) -> Tensor:
    """``min(1, ratio · N · softmax(temperature · psnr))``: SMHDR's per-region mask ratios (``temperature > 0``).

    Shapes:
        psnr ``(N,)`` PSNR-μ of one scene's regions → ``(N,)``.
    """
    return (ratio * region_weights(psnr, temperature)).clamp(max=1.0)


def _resize_ids(ids: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``(B, H, W)`` integer IDs (as ``F.interpolate(mode="nearest")``, without a float
    round trip that would round IDs above 2**24)."""
    (h, w), (th, tw) = ids.shape[-2:], size
    rows = (torch.arange(th, device=ids.device) * h // th)
    cols = (torch.arange(tw, device=ids.device) * w // tw)
    return ids[:, rows][:, :, cols]


class SMHDR(Strategy):
    """SMHDR's masking and region-weighted loss. Built by :func:`semkt_plugin.wrap` with ``strategy="smhdr"``.

    Per step: ``skt.before_forward(regions=ids)`` (the same as ``skt.regions(ids)``), the model's forward,
    ``skt.loss(output, target)``.
    """

    name = "smhdr"
    settings_class = SMHDRConfig
    extras = ("regions",)

    def __init__(self, model: nn.Module, adapter: Adapter, config: SMHDRConfig, skb: nn.Module | None = None) -> None:
        super().__init__(model, adapter, config)  # skb: SMHDR needs none (its regions come from the dataset)
        points = self.masked_points(adapter, config)
        self._start, self._peak, self._end = config.schedule()
        core = unwrap_container(model)
        self._generator = torch.Generator().manual_seed(config.seed)
        self._pending: Tensor | None = None  # ids for the next forward
        self._ids: Tensor | None = None  # ids of the last forward, for loss()
        self._keep: Tensor | None = None  # (B, 1, H, W) region mask of the current forward
        self._coins: list[bool] = []
        self._psnr: dict[int, float] = {}
        self._mask_share: dict[int, float] = {}  # N · softmax(mask_temperature · PSNR) per region
        self._weight: dict[int, float] = {}
        self._sse: dict[int, float] = {}  # the current refresh window's sums, float64 on the CPU
        self._count: dict[int, int] = {}
        self._drawn_from: Tensor | None = None  # the mask generator's state before the current forward's draw
        self.masks = FeatureMasks(core, points, self._mask_map, self._begin, self._abort)
        self._follow_model()

    @property
    def mask_ratio(self) -> float:
        """The curriculum's mask ratio at the current step."""
        return self._ratio_at(self._step)

    def _ratio_at(self, step: int) -> float:
        return curriculum_ratio(step, self._start, self._peak, self._end, self.config.peak_ratio)

    def before_forward(self, regions: Tensor | None = None, **extras: Any) -> None:
        """The loop contract's call before each training forward: ``regions`` are the batch's region IDs
        (:meth:`regions`)."""
        if regions is None:
            raise TypeError("SMHDR needs the batch's region IDs before each forward: skt.before_forward(regions=ids) "
                            "with the (B, H, W) IDs KalantariDataset(..., regions=True) gives")
        self.regions(regions)

    def regions(self, ids: Tensor) -> None:
        """Region IDs of the batch of the next forward (which consumes them; :meth:`loss` then uses them too).

        Args:
            ids: ``(B, H, W)`` integer global region IDs, unique per scene and region (``KalantariDataset(...,
                regions=True)`` gives them), at the image's resolution.
        """
        if not isinstance(ids, Tensor) or ids.ndim != 3 or ids.dtype.is_floating_point or ids.dtype.is_complex \
                or ids.dtype == torch.bool:
            raise TypeError(f"regions() takes (B, H, W) integer region IDs, got "
                            f"{tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__}"
                            f"{f' {ids.dtype}' if isinstance(ids, Tensor) else ''}")
        self._pending = ids.to(self.steps.device, torch.long)

    def _begin(self) -> bool:
        """At the start of each forward: take the pending IDs and, if this forward is masked, draw its masks."""
        ids, self._pending = self._pending, None
        self._ids, self._keep = ids, None
        ratio = self.mask_ratio
        if not (self.masks.model.training and torch.is_grad_enabled() and ratio > 0):
            return False
        if ids is None:
            raise RuntimeError(
                f"SMHDR masks this training forward (mask ratio {ratio:.3g} at step {self._step}) but has no "
                "region IDs for it: call skt.regions(ids) with the batch's (B, H, W) region IDs before each forward")
        self._drawn_from = self._generator.get_state()
        self._keep = self._draw_keep(ids, ratio)
        self._coins = (torch.rand(len(self.masks.points), generator=self._generator) < self.config.region_prob).tolist()
        self.masks.aspect = ids.shape[-2] / ids.shape[-1]
        return True

    def _abort(self) -> None:
        """A masked forward raised: its draw is taken back, so the next forward draws what this one did."""
        self._generator.set_state(self._drawn_from)
        self._ids = self._keep = None

    def _ratios(self, keys: list[int], ratio: float) -> Tensor:
        """``r_m`` of the regions ``keys`` at the curriculum ratio ``ratio``, ``(K,)`` float32 on the CPU: what
        :func:`region_ratios` gives over each one's scene, from the shares cached at the last refresh."""
        return torch.tensor([min(1.0, ratio * self._mask_share.get(k, 1.0)) for k in keys], dtype=torch.float32)

    def _draw_keep(self, ids: Tensor, ratio: float) -> Tensor:
        """The region mask of one forward: ``(B, H, W)`` IDs → ``(B, 1, H, W)``, 1 kept, 0 masked."""
        b = ids.shape[0]
        uniq, inv = torch.unique(ids, return_inverse=True)
        k = uniq.numel()
        ratios = self._ratios(uniq.tolist(), ratio).to(ids.device)
        g = self._generator
        if self.config.mask_unit == "region":
            drop = torch.rand(b, k, generator=g).to(ids.device) < ratios  # per sample and region
            masked = drop.gather(1, inv.flatten(1)).view_as(ids)
        else:
            group = (torch.arange(b, device=ids.device)[:, None] * k + inv.flatten(1)).flatten()  # (sample, region)
            score = torch.rand(group.numel(), generator=g).to(ids.device)
            order = score.argsort()
            order = order[group[order].argsort(stable=True)]  # by group, random within a group
            counts = torch.bincount(group, minlength=b * k)
            first = counts.cumsum(0) - counts
            rank = torch.empty_like(group)
            rank[order] = torch.arange(group.numel(), device=ids.device) - first[group[order]]
            quota = torch.round(counts * ratios.repeat(b)).long()
            masked = (rank < quota[group]).view_as(ids)
        return (~masked).float()[:, None]

    def _mask_map(self, i: int, x: Tensor) -> Tensor:
        """The map that multiplies hook point ``i``'s feature ``x`` ``(B, frames, C, h, w)``."""
        if self._coins[i]:
            if self._keep.shape[0] != x.shape[0]:
                raise ValueError(f"regions() got IDs for {self._keep.shape[0]} images but hook point "
                                 f"{self.masks.points[i].path!r} sees a batch of {x.shape[0]}")
            return F.interpolate(self._keep.to(x.device), size=x.shape[-2:], mode="nearest")[:, None]
        return torch.sigmoid(x.mean(2, keepdim=True))

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """``λ_region · mean(w · |T(H_in) − T(target)|)``, ``w`` the loss weight of each pixel's region.

        Args:
            output: what the model returned for this batch (the adapter finds H_in in it).
            target: ground truth in H_in's domain, scale and shape (``(B, 3, H, W)``, or packed RAW).

        Returns:
            Scalar. SMHDR trains with this weighted μ-law L1 in place of the plain one: to reproduce it, use it as
            the reconstruction term (or add it to a loss without one). Components are in :attr:`last_losses`:
            ``region`` (before ``λ_region``), ``ratio`` (the mask ratio of the forward), ``total``.
        """
        cfg = self.config
        if self._ids is None:
            raise RuntimeError("loss() needs the region IDs of the forward that made this output: call "
                               "skt.regions(ids) with the batch's (B, H, W) region IDs before each forward")
        _, hs, ts, step = self.open(output, target, self.steps)
        ratio = self._ratio_at(step)
        ids = self._ids.to(hs.device)
        if ids.shape[0] != hs.shape[0]:
            raise ValueError(f"regions() got IDs for {ids.shape[0]} images but the output has {hs.shape[0]}")
        if ids.shape[-2:] != hs.shape[-2:]:
            ids = _resize_ids(ids, hs.shape[-2:])
        uniq, inv = torch.unique(ids, return_inverse=True)
        keys = uniq.tolist()
        diff = hs - ts
        if step >= self._start and self._weight:  # SMHDR's second phase
            weights = torch.tensor([self._weight.get(k, 1.0) for k in keys], device=hs.device)
            region = (weights[inv][:, None] * diff.abs()).mean()
        else:
            region = diff.abs().mean()
        if torch.is_grad_enabled():
            self._accumulate(keys, inv, diff.detach().square().mean(1))
            if (step + 1) % cfg.refresh == 0:
                self._refresh()
        weighted = {"region": TERMS[0].weight_in(cfg) * region}
        self._last = reported(TERMS, {"region": region, "ratio": ratio}, weighted)
        return weighted["region"]

    def _accumulate(self, keys: list[int], inv: Tensor, sq: Tensor) -> None:
        """Add a batch's per-pixel squared μ-law errors ``sq`` ``(B, H, W)`` to the regions' running sums."""
        sse = torch.zeros(len(keys), device=sq.device).index_add_(0, inv.flatten(), sq.flatten())
        counts = torch.bincount(inv.flatten(), minlength=len(keys))
        for key, s, n in zip(keys, sse.double().tolist(), counts.tolist()):
            self._sse[key] = self._sse.get(key, 0.0) + s
            self._count[key] = self._count.get(key, 0) + n

    def _refresh(self) -> None:
        """The window's sums (every rank's, under ``torch.distributed``) become PSNR-μ values; the ratio and weight
        tables follow."""
        self._gather_window()
        for key, sse in self._sse.items():
            self._psnr[key] = -10 * math.log10(max(sse / self._count[key], 1e-10))
        self._sse, self._count = {}, {}
        self._update_tables()

    def _gather_window(self) -> None:
        """Sum the window's per-region sums over the ranks of the default process group, so every rank refreshes
        the same tables from all the batches of the window. A collective: every rank refreshes at the same step
        (each calls ``loss()`` once per step)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        windows: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(windows, (self._sse, self._count))  # region keys differ per rank: objects, not tensors
        self._sse, self._count = {}, {}
        for sse, count in windows:
            for key in sse:
                self._sse[key] = self._sse.get(key, 0.0) + sse[key]
                self._count[key] = self._count.get(key, 0) + count[key]

    def _update_tables(self) -> None:
        scenes: dict[int, list[int]] = {}
        for key in sorted(self._psnr):
            scenes.setdefault(scene_of(key), []).append(key)
        cfg = self.config
        for keys in scenes.values():
            psnr = torch.tensor([self._psnr[k] for k in keys], dtype=torch.float64)
            self._mask_share.update(zip(keys, region_weights(psnr, cfg.mask_temperature).tolist()))
            self._weight.update(zip(keys, region_weights(psnr, cfg.loss_temperature).tolist()))

    def get_extra_state(self) -> dict[str, Any]:
        table, window = sorted(self._psnr), sorted(self._sse)
        return {**super().get_extra_state(), "ids": torch.tensor(table, dtype=torch.long),
                "psnr": torch.tensor([self._psnr[k] for k in table], dtype=torch.float64),
                "window_ids": torch.tensor(window, dtype=torch.long),
                "window_sse": torch.tensor([self._sse[k] for k in window], dtype=torch.float64),
                "window_count": torch.tensor([self._count[k] for k in window], dtype=torch.long),
                "generator": self._generator.get_state()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self._psnr = dict(zip(state["ids"].tolist(), state["psnr"].tolist()))
        self._sse = dict(zip(state["window_ids"].tolist(), state["window_sse"].tolist()))
        self._count = dict(zip(state["window_ids"].tolist(), state["window_count"].tolist()))
        self._mask_share, self._weight = {}, {}
        self._update_tables()
        self._generator.set_state(state["generator"].cpu())

    @staticmethod
    def masked_points(adapter: Adapter, config: SMHDRConfig) -> list[HookPoint]:
        """The adapter's hook points that ``config.mask_points`` selects (all of them for ``None``)."""
        if not adapter.hooks:
            raise ValueError(f"adapter {adapter.name!r} declares no hook points; SMHDR masks the features there")
        if config.mask_points is None:
            return list(adapter.hooks)
        bad = [i for i in config.mask_points if not -len(adapter.hooks) <= i < len(adapter.hooks)]
        if bad:
            raise ValueError(f"mask_points {bad} are not hook points of adapter {adapter.name!r}, which has "
                             f"{len(adapter.hooks)}: {[p.path for p in adapter.hooks]}")
        return [adapter.hooks[i] for i in config.mask_points]

    @classmethod
    def hook_plan(cls, adapter: Adapter, config: SMHDRConfig) -> list[tuple[str, str]]:
        return [(p.path, "masked in training") for p in cls.masked_points(adapter, config)]

    def _remove_hooks(self) -> None:
        self.masks.remove()
        self._pending = self._ids = self._keep = None

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, ramp=({self._start}, {self._peak}, {self._end}), "
                f"mask_unit={self.config.mask_unit!r}")
