"""Semantic Knowledge Transfer (the main paper), ``strategy="skt"``: the default.

What it hooks: the adapter's hook points, read-only (SKAM aligns the model's features there with the teacher's).
What it computes per ``loss(output, target)``: T(H_in); one SKB pass (priors, region maps, perceptual features);
the SPGRM teacher; then the terms of :data:`TERMS`: L_spg, and, once the distillation has started, L_content,
L_color and SKAM's L_feat.
What it saves: the teacher, SKAM (with its mask generator's state) and the step counter; the frozen SKB and
perceptual network stay out of ``state_dict()``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...adapter import Adapter
from ...cuda_graphs import CudaGraphed
from ...feature_hooks import FeatureHooks, hook_channels, unwrap_container
from ...pretrained import MissingWeights, missing_weights
from ...settings import Settings
from ...validation import check
from ..base import Opened, Strategy
from ..terms import Term, reported
from .losses import content_loss, histogram_loss
from .perceptual import build_perceptual, vgg19_state_dict
from .skam import SKAM
from .teacher import SPGRM


@dataclass
class SKTConfig(Settings):
    """Semantic Knowledge Transfer settings (``strategy="skt"``). Defaults are the paper's (§3.3–3.5) unless noted;
    docs/method.md has each choice and its measurement.

    Loss weights (eq. 14; a weight of 0 switches its term off and skips its work):
        lambda_spg: weight of the teacher's L_spg (eq. 13) in the returned loss.
        lambda_content: λ1, weight of L_content (paper: 1e-3).
        lambda_perceptual: λ of eq. 5, the perceptual part of L_content.
        lambda_color: λ2, weight of L_color.
        lambda_feat: weight of SKAM's L_feat (paper: 1).

    Schedule of the distillation (L_content, L_color, L_feat; ``total_steps`` and ``mu``, ``seed`` are the base's):
        distill_start: training ``loss()`` calls before any distillation: the model learns at full speed first, and
            the teacher has learned something before it is distilled. An int is a step count, a float in
            ``[0, 1]`` a fraction of ``total_steps``. Default: half the run (the paper: 0).
        distill_warmup: then the distillation weights ramp linearly from 0 over this many calls (int or
            fraction). Default: a sixth of the run (the paper: 0).
        distill_gate: distil towards the teacher only at pixels where it is closer to the ground truth than the
            model's output (:func:`gated_target`).

    Semantic Knowledge Bank:
        skb_weights: a local checkpoint, ``"standin"`` (the offline stand-in shipped with semkt), or an ultralytics
            asset name (``"FastSAM-s.pt"``: the working directory, ultralytics' weights dir, else downloaded there).
        skb_arch: build the SKB from this ultralytics yaml (``"yolov8s-seg.yaml"``) and load ``skb_weights`` as a
            state_dict into it, or random weights when ``skb_weights`` is ``None`` (tests only).
        num_regions: N, how many region maps the SKB gives L_color.
        prior_source: what the SKB reads for the priors and the region maps: ``"output"`` (T(H_in), the paper's)
            or ``"truth"`` (T(GT): a privileged teacher; the teacher is training-only, inference is untouched).

    Perceptual network (φ of eq. 5):
        perceptual: ``"vgg19"`` (the paper's), ``"skb"`` (the SKB's backbone, no extra network) or ``"none"``.
        vgg19_weights: a VGG19 state_dict file; ``None``: torchvision's ImageNet weights, from torch's hub cache or
            downloaded there.

    Teacher (SPGRM):
        teacher_dim: its width.
        teacher_heads: attention heads of its Prior Fusion Blocks.
        teacher_stride: resolution factor of its fusion modules: 1 (the paper's) or ``s > 1``, the slim teacher
            (``s × s`` blocks folded into channels).
        use_priors: the SKB's priors in the teacher (off: a plain second-stage refiner of the same depth).
        prior_fusion: how a prior enters each fusion module: ``"attention"`` (eq. 4, a channel × channel mix per
            image), ``"spatial"`` (a per-pixel scale and shift) or ``"both"``.
        teacher_moves_orm: let L_spg's gradient reach the model through T(H_in) (off in the paper's scheme).

    Histogram loss (L_color):
        hist_bins: bins on ``[0, 1]``.
        hist_kernel: ``"sigmoid"`` (slope-400 window, as the public SKF code) or ``"gaussian"`` (eq. 7).
        hist_slope: slope of the sigmoid kernel.
        hist_bandwidth: Gaussian bandwidth in ``[0, 1]`` units (``None``: one bin width).
        hist_chunk: pixels per image handled at a time (bounds its memory, not its result); ``None``: 4096 on
            the CPU (at least ``16384 / B``), 65536 on a GPU, where each chunk costs a few kernel launches
            whatever its size.
        color_background: add the region no SKB map covers (``1 − max_n p_m^n``), so background pixels count.

    SKAM (L_feat):
        use_skam: build SKAM and hook the model's features.
        skam_latent: latent channels.
        skam_ratio: share of the teacher latent in the mix.
        skam_mask: ``"spatial"`` (whole ``skam_patch``² blocks) or ``"element"`` (each latent element).
        skam_patch: block side of the spatial mask, in pixels of the hooked feature.
        skam_norm: target scaling: ``"image"`` (its RMS per image), ``"channel"`` or ``"none"``.
        skam_reduction: ``"mean"`` or ``"sum"`` of the stages' losses.

    Speed:
        cuda_graphs: on a GPU, replay the teacher, the SKB's passes, VGG19 and SKAM's stages from CUDA graphs
            (:class:`~semkt_plugin.cuda_graphs.CudaGraphed`): the same kernels, launched as one graph per part
            and input shape, which hold their activations' memory between steps. Off (the default until it has
            been measured on a GPU, docs/benchmarks.md): every kernel launched on its own.
        frozen_dtype: what the frozen networks (SKB, VGG19) compute in: ``"float32"``, or ``"bfloat16"`` (their
            weights and activations; what they return is float32). Gradients still pass through them to T(H_in).
    """

    lambda_spg: float = 1.0
    lambda_content: float = 0.1
    lambda_perceptual: float = 1e-2
    lambda_color: float = 100.0
    lambda_feat: float = 0.1

    distill_start: float | int = 0.5
    distill_warmup: float | int = 1 / 6
    distill_gate: bool = True

    skb_weights: str | None = "FastSAM-s.pt"
    skb_arch: str | None = None
    num_regions: int = 16
    prior_source: Literal["output", "truth"] = "output"

    perceptual: Literal["vgg19", "skb", "none"] = "vgg19"
    vgg19_weights: str | None = None

    teacher_dim: int = 32
    teacher_heads: int = 2
    teacher_stride: int = 1
    use_priors: bool = True
    prior_fusion: Literal["attention", "spatial", "both"] = "attention"
    teacher_moves_orm: bool = False

    hist_bins: int = 256
    hist_kernel: Literal["sigmoid", "gaussian"] = "sigmoid"
    hist_slope: float = 400.0
    hist_bandwidth: float | None = None
    hist_chunk: int | None = None
    color_background: bool = True

    use_skam: bool = True
    skam_latent: int = 32
    skam_ratio: float = 0.5
    skam_mask: Literal["spatial", "element"] = "spatial"
    skam_patch: int = 8
    skam_norm: Literal["image", "channel", "none"] = "image"
    skam_reduction: Literal["mean", "sum"] = "mean"

    cuda_graphs: bool = False
    frozen_dtype: Literal["float32", "bfloat16"] = "float32"

    schedule_points: ClassVar[tuple[str, ...]] = ("distill_start", "distill_warmup")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda_spg", "lambda_content", "lambda_perceptual", "lambda_color", "lambda_feat"):
            check(name, getattr(self, name), at_least=0)
        for name in ("distill_gate", "use_priors", "teacher_moves_orm", "color_background", "use_skam",
                     "cuda_graphs"):
            check(name, getattr(self, name), kind=bool)
        check("num_regions", self.num_regions, kind=int, at_least=1)
        check("prior_source", self.prior_source, one_of=("output", "truth"))
        check("perceptual", self.perceptual, one_of=("vgg19", "skb", "none"))
        check("teacher_dim", self.teacher_dim, kind=int, at_least=1)
        check("teacher_heads", self.teacher_heads, kind=int, at_least=1)
        check("teacher_stride", self.teacher_stride, kind=int, at_least=1)
        check("prior_fusion", self.prior_fusion, one_of=("attention", "spatial", "both"))
        check("frozen_dtype", self.frozen_dtype, one_of=("float32", "bfloat16"))
        if self.use_priors and self.prior_fusion != "spatial" and self.teacher_dim % self.teacher_heads:
            raise ValueError(f"teacher_dim {self.teacher_dim} must be divisible by teacher_heads {self.teacher_heads} "
                             f"(the Prior Fusion Blocks split it into heads)")
        check("hist_bins", self.hist_bins, kind=int, at_least=1)
        check("hist_kernel", self.hist_kernel, one_of=("sigmoid", "gaussian"))
        check("hist_slope", self.hist_slope, kind=(int, float), above=0)
        check("hist_bandwidth", self.hist_bandwidth, kind=(int, float), above=0, optional=True)
        check("hist_chunk", self.hist_chunk, kind=int, at_least=1, optional=True)
        check("skam_latent", self.skam_latent, kind=int, at_least=1)
        check("skam_ratio", self.skam_ratio, at_least=0.0, at_most=1.0)
        check("skam_mask", self.skam_mask, one_of=("spatial", "element"))
        check("skam_patch", self.skam_patch, kind=int, at_least=1)
        check("skam_norm", self.skam_norm, one_of=("image", "channel", "none"))
        check("skam_reduction", self.skam_reduction, one_of=("mean", "sum"))
        if isinstance(self.skb_weights, Path):
            self.skb_weights = str(self.skb_weights)
        if self.total_steps is not None:
            self.schedule()

    @property
    def perceptual_on(self) -> bool:
        """L_content has a perceptual part: φ must be built."""
        return self.lambda_content > 0 and self.lambda_perceptual > 0 and self.perceptual != "none"

    @property
    def needs_skb(self) -> bool:
        """Whether any part with a non-zero weight reads the SKB."""
        return self.use_priors or self.lambda_color > 0 or (self.perceptual_on and self.perceptual == "skb")

    def schedule(self) -> tuple[int, int]:
        """``(distill_start, distill_warmup)`` in ``loss()`` calls, fractions resolved against ``total_steps``."""
        return self.steps_of("distill_start"), self.steps_of("distill_warmup")


def with_background(regions: Tensor) -> Tensor:
    """Append the region no map covers, ``1 − max_n regions_n``: ``(B, N, H, W)`` → ``(B, N + 1, H, W)``."""
    return torch.cat([regions, 1 - regions.amax(1, keepdim=True)], 1)


def distill_ramp(step: int, start: int, warmup: int) -> float:
    """Factor on λ1, λ2 and λ_feat at ``step`` (0-based ``loss()`` calls): 0 before ``start``, then rising linearly
    to 1 over ``warmup`` calls (at once if 0)."""
    if step < start:
        return 0.0
    return min(1.0, (step - start + 1) / warmup) if warmup else 1.0


def gated_target(teacher: Tensor, student: Tensor, truth: Tensor) -> Tensor:
    """The teacher's output where it is closer to the ground truth than the student's, the student's elsewhere.

    A pixel's distance is the L1 over channels. This is the teacher-bounded distillation of Chen et al. (NeurIPS
    2017), per pixel. What it guarantees depends on the term that reads the target:

    - a per-pixel term (L_content's L1) pulls no pixel away from the ground truth: where the teacher is worse the
      target is the student itself. Where the teacher is closer in a channel, ``sign(s − t) = sign(s − g)``
      there, so that L1's gradient is the task L1's: it adds weight on the pixels the teacher wins and passes on
      nothing of the teacher's values;
    - L_color compares histograms, which ignore which pixel is which: its gradient moves every pixel of a region
      near the affected bins, where the teacher is worse too. The perceptual term compares features that mix
      neighbouring pixels. Neither keeps the per-pixel promise.

    Shapes:
        teacher, student, truth ``(B, C, H, W)`` → ``(B, C, H, W)``, no gradient.
    """
    with torch.no_grad():
        better = (teacher - truth).abs().sum(1, keepdim=True) < (student - truth).abs().sum(1, keepdim=True)
        return torch.where(better, teacher, student)


def load_configured_skb(config: SKTConfig) -> nn.Module:
    """The SKB that ``config`` names (``skb_weights``, ``skb_arch``, ``num_regions``)."""
    from ...skb import load_skb

    return load_skb(config.skb_weights, arch=config.skb_arch, num_regions=config.num_regions)


def load_pretrained(config: SKTConfig, skb: nn.Module | None = None
                    ) -> tuple[nn.Module | None, Callable[[Tensor], list[Tensor]] | None]:
    """The SKB (``skb`` if given) and the perceptual φ that ``config``'s enabled parts need, in
    ``config.frozen_dtype`` (a given SKB is copied before it is cast: it may serve others).

    Every weights file is found (or downloaded) before either network is built, so that one error names all that
    are missing.

    Raises:
        MissingWeights: each missing file, where it was looked for, how to provide it, and the settings that work
            offline.
    """
    from ...skb import load_skb, skb_weights_file

    skb_file = vgg19 = None
    missing = []
    if skb is None and config.needs_skb:
        try:
            skb_file = skb_weights_file(config.skb_weights)
        except MissingWeights as e:
            missing.append(e)
    if config.perceptual_on and config.perceptual == "vgg19":
        try:
            vgg19 = vgg19_state_dict(config.vgg19_weights)
        except MissingWeights as e:
            missing.append(e)
    if missing:
        raise missing_weights(missing)
    bf16 = config.frozen_dtype == "bfloat16"
    if skb is None and config.needs_skb:
        skb = load_skb(skb_file, arch=config.skb_arch, num_regions=config.num_regions)
    elif skb is not None and bf16:
        skb = copy.deepcopy(skb)
    if skb is not None and bf16:
        skb.bfloat16()
    perceptual = build_perceptual(config.perceptual, vgg19, skb) if config.perceptual_on else None
    if isinstance(perceptual, nn.Module) and bf16:
        perceptual.bfloat16()
    return skb, perceptual


class Shared:
    """What the terms of one ``loss()`` call share, computed once: T(H_in) and T(GT), the SKB's pass, the teacher,
    and (on first use) the distillation target.

    One SKB trunk pass serves the teacher's priors, the region maps when L_color runs and, with
    ``perceptual="skb"``, the model's side of the perceptual term (with a graph only when L_content runs).
    """

    def __init__(self, skt: SemanticTransfer, opened: Opened, active: set[str]) -> None:
        cfg = skt.config
        self.skt, self.h_in, self.tone_out, self.tone_gt = skt, opened.h_in, opened.tone_out, opened.tone_gt
        student_grad = "content" in active and skt.perceptual_is_skb
        if cfg.prior_source == "output":
            features, self.regions = skt.skb_pass(self.tone_out, regions="color" in active, grad=student_grad)
            self.student_features = features if student_grad else None
        else:
            features, self.regions = skt.skb_pass(self.tone_gt, regions="color" in active, grad=False)
            self.student_features = skt.skb_pass(self.tone_out, regions=False, grad=True)[0] if student_grad else None
        tone_out = self.tone_out if cfg.teacher_moves_orm else self.tone_out.detach()
        teacher = skt.graphed["teacher"]
        priors = [f.detach() for f in features] if cfg.use_priors else None
        self.hhat, self.teacher_features = teacher(tone_out, priors) if priors is not None else teacher(tone_out)

    @cached_property
    def target(self) -> Tensor:
        """What L_content and L_color pull T(H_in) towards: the teacher's output in ``[0, 1]``, gated."""
        # the model's tone-mapped output lives in [0, 1] (H_in/scale ≤ 1): a teacher value outside it is no target,
        # and chasing it would drive a sigmoid output into saturation, where its gradient dies
        target = self.hhat.detach().clamp(0, 1)
        if self.skt.config.distill_gate:
            target = gated_target(target, self.tone_out.detach(), self.tone_gt)
        return target


def spg_term(shared: Shared) -> Tensor:
    """L_spg (eq. 13): the teacher's L1 to T(GT)."""
    return F.l1_loss(shared.hhat, shared.tone_gt)


def content_term(shared: Shared) -> Tensor:
    """L_content (eq. 5): L1 and the perceptual term towards the target."""
    cfg = shared.skt.config
    return content_loss(shared.tone_out, shared.target, shared.skt.graphed["perceptual"], cfg.lambda_perceptual,
                        student_features=shared.student_features)


def color_term(shared: Shared) -> Tensor:
    """L_color (eqs. 6–10): the per-region soft histograms against the target's."""
    cfg = shared.skt.config
    regions = with_background(shared.regions) if cfg.color_background else shared.regions
    return histogram_loss(shared.tone_out, shared.target, regions, cfg.hist_bins, cfg.hist_kernel, cfg.hist_slope,
                          cfg.hist_bandwidth, cfg.hist_chunk)


def orm_term(shared: Shared) -> Tensor:
    """The model's own μ-law L1, beside the teacher's L_spg: their ratio is the teacher's margin. Reported, not
    summed."""
    return F.l1_loss(shared.tone_out.detach(), shared.tone_gt)


def feat_term(shared: Shared) -> Tensor:
    """L_feat: SKAM between the model's hooked features and the teacher's."""
    skt, h = shared.skt, shared.h_in
    # a half or bfloat16 model's features meet the plugin's float32 layers (autocast recasts them)
    student = [s.float() for s in skt.hooks.maps(aspect=h.shape[-2] / h.shape[-1])]
    return skt.skam(student, shared.teacher_features)


#: skt's loss, in the order its terms are summed; the distillation terms are ramped from ``distill_start``
TERMS: tuple[Term, ...] = (
    Term("spg", "lambda_spg", spg_term),
    Term("content", "lambda_content", content_term, ramped=True),
    Term("color", "lambda_color", color_term, ramped=True),
    Term("feat", "lambda_feat", feat_term, ramped=True, built=lambda skt: skt.skam is not None,
         idle=lambda skt: sum(p.sum() for p in skt.skam.parameters()) * 0.0),
    Term("orm", None, orm_term),
)


class SemanticTransfer(Strategy):
    """The plugin's state and its loss. Built by :func:`semkt_plugin.wrap`; see there."""

    name = "skt"
    settings_class = SKTConfig

    def __init__(self, model: nn.Module, adapter: Adapter, config: SKTConfig, skb: nn.Module | None = None) -> None:
        super().__init__(model, adapter, config)
        self._start, self._warmup = config.schedule()  # in loss() calls; a fraction without total_steps fails here
        core = unwrap_container(model)
        channels = self._hook_channels(core, adapter) if config.use_skam else []  # fail fast, before loading networks
        skb, perceptual = load_pretrained(config, skb)
        if skb is not None:
            skb.requires_grad_(False)
        self._aux = {"skb": skb if config.needs_skb else None, "perceptual": perceptual}
        prior_channels = tuple(skb.channels) if skb is not None else (1, 1, 1, 1)
        self.teacher = SPGRM(prior_channels, dim=config.teacher_dim, heads=config.teacher_heads,
                             use_priors=config.use_priors, stride=config.teacher_stride, fusion=config.prior_fusion)
        self.skam = SKAM(channels, config.teacher_dim, num_teacher=SPGRM.num_features, latent=config.skam_latent,
                         ratio=config.skam_ratio, seed=config.seed, mask=config.skam_mask, patch=config.skam_patch,
                         norm=config.skam_norm, reduction=config.skam_reduction,
                         cuda_graphs=config.cuda_graphs) if config.use_skam else None
        self.hooks = FeatureHooks(core, adapter.hooks) if config.use_skam else None
        # not submodules (the networks are already where they belong); deepcopy and pickling keep the networks only
        on = config.cuda_graphs
        self.graphed: dict[str, CudaGraphed | None] = {
            "teacher": CudaGraphed(self.teacher, enabled=on),
            "skb": CudaGraphed(skb, enabled=on) if self.skb is not None else None,
            "skb features": CudaGraphed(skb, "features", enabled=on) if self.skb is not None else None,
            "perceptual": None}
        if perceptual is not None:  # φ is a module (VGG19) or the SKB's features
            self.graphed["perceptual"] = (self.graphed["skb features"] if self.perceptual_is_skb
                                          else CudaGraphed(perceptual, enabled=on))
        self._arm_hooks(0)
        # a loaded step count decides whether the next forward captures features
        self.register_load_state_dict_post_hook(lambda module, keys: module._arm_hooks(int(module.steps)))
        self._follow_model()

    @staticmethod
    def _hook_channels(core: nn.Module, adapter: Adapter) -> list[int]:
        if not adapter.hooks:
            raise ValueError(f"adapter {adapter.name!r} declares no hook points; SKAM needs at least one "
                             "(or wrap with use_skam=False)")
        return [hook_channels(core, point) for point in adapter.hooks]

    @property
    def skb(self) -> nn.Module | None:
        """The frozen Semantic Knowledge Bank (``None`` when no enabled part needs it)."""
        return self._aux["skb"]

    @property
    def perceptual(self) -> Callable[[Tensor], list[Tensor]] | None:
        """φ of eq. 5, or ``None``."""
        return self._aux["perceptual"]

    @property
    def perceptual_is_skb(self) -> bool:
        """φ is the SKB's backbone, so the SKB's pass over T(H_in) also gives the model's perceptual features."""
        return self.config.perceptual == "skb" and self.perceptual is not None

    def weights(self, step: int) -> dict[str, float]:
        """The weight of each term the plugin has built, at training step ``step`` (the ramp applied)."""
        ramp = distill_ramp(step, self._start, self._warmup)
        return {term.name: ramp * weight if term.ramped else weight for term, weight in self._lambdas()}

    def _lambdas(self) -> list[tuple[Term, float]]:
        """Each summed term the plugin has built, with its λ."""
        return [(term, term.weight_in(self.config)) for term in TERMS if term.built(self) and term.weight is not None]

    def _reported(self) -> list[Term]:
        """The rows of :attr:`last_losses`: each term the plugin has built, but a distillation term whose λ is 0."""
        return [term for term in TERMS if term.built(self)
                and (term.weight is None or not term.ramped or term.weight_in(self.config) > 0)]

    def loss_terms(self, output: Any, target: Tensor) -> dict[str, Tensor]:
        """The weighted terms of :meth:`loss` (:data:`TERMS`), each differentiable, in summing order.

        A distillation term whose weight is 0 in this call (its λ, or the ramp before the distillation starts) is
        not computed and not in the dict, unless it has an ``idle`` zero (L_feat: SKAM's parameters still get a
        gradient, zero, for ``DDP``). Unweighted values go to :attr:`last_losses`, with the model's own μ-law L1
        as ``orm``: every term whose λ is above 0, 0 before it starts. The gradient-balance diagnostic
        differentiates each term on its own.

        Args:
            output: what the model returned for this batch (the adapter finds H_in in it).
            target: ground truth in H_in's domain, scale and shape (``(B, 3, H, W)``, or packed RAW).
        """
        try:  # every exit, errors included, drops the captured features and the graph they hold
            opened = self.open(output, target, next(self.teacher.parameters()))
            if torch.is_grad_enabled():
                self._arm_hooks(opened.step + 1)
            weights = self.weights(opened.step)
            active = {name for name, w in weights.items() if w > 0}
            shared = Shared(self, opened, active)
            raw = {}
            for term in TERMS:
                if term.name in active or (term.name in weights and not term.ramped):
                    raw[term.name] = term.compute(shared)
                elif term.name in weights and term.idle is not None:
                    raw[term.name] = term.idle(self)
        finally:
            if self.hooks is not None:
                self.hooks.clear()
        terms = {name: weights[name] * value for name, value in raw.items()}
        rows = self._reported()
        values = {**raw, **{term.name: term.compute(shared) for term in rows if term.weight is None}}
        self._last = reported(rows, values, terms)
        return terms

    def _arm_hooks(self, step: int) -> None:
        """Capture features in the model's forward only when the ``loss()`` call ``step`` will run SKAM."""
        if self.hooks is not None:
            self.hooks.active = self.weights(step).get("feat", 0.0) > 0

    def skb_pass(self, x: Tensor, regions: bool, grad: bool) -> tuple[list[Tensor] | None, Tensor | None]:
        """The SKB's features of ``x`` (with a graph to it if ``grad``) and, if ``regions``, its region maps."""
        if self.skb is None:
            return None, None
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            x = x if grad else x.detach()
            if regions:
                return self.graphed["skb"](x)
            return self.graphed["skb features"](x), None

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """The extra loss term: the weighted sum of :data:`TERMS`, ``λ_spg·L_spg + λ1·L_content + λ2·L_color +
        λ_feat·L_feat``.

        Args:
            output: what the model returned for this batch (the adapter finds H_in in it).
            target: ground truth in H_in's domain, scale and shape (``(B, 3, H, W)``, or packed RAW).

        Returns:
            Scalar; add it to the model's own loss. Components are in :attr:`last_losses`.
        """
        return sum(self.loss_terms(output, target).values())

    @classmethod
    def hook_plan(cls, adapter: Adapter, config: SKTConfig) -> list[tuple[str, str]]:
        return [(p.path, "read for SKAM") for p in adapter.hooks] if config.use_skam else []

    def _remove_hooks(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, skb={type(self.skb).__name__ if self.skb is not None else None}"
