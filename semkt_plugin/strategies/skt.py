"""Semantic Knowledge Transfer (the main paper), ``strategy="skt"``: the default.

What it hooks: the adapter's hook points, read-only (SKAM aligns the model's features there with the teacher's).
What it computes per ``loss(output, target)``: T(H_in); one SKB pass (priors, region maps, perceptual features);
the SPGRM teacher and its L_spg; then, once the distillation has started, L_content, L_color and SKAM's L_feat.
What it saves: the teacher, SKAM (with its mask generator's state) and the step counter; the frozen SKB and
perceptual network stay out of ``state_dict()``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..adapter import Adapter
from ..config import Config
from ..hooks import FeatureHooks, hook_channels, unwrap_container
from ..perceptual import build_perceptual
from ..plugin import Strategy, check_pair, select_output
from .losses import content_loss, histogram_loss
from .skam import SKAM
from .spgrm import SPGRM


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


def load_configured_skb(config: Config) -> nn.Module:
    """The SKB that ``config`` names (``skb_weights``, ``skb_arch``, ``num_regions``)."""
    from ..skb import load_skb

    return load_skb(config.skb_weights, arch=config.skb_arch, num_regions=config.num_regions)


class SemanticTransfer(Strategy):
    """The plugin's state and its loss. Built by :func:`semkt_plugin.wrap`; see there."""

    name = "skt"
    config_class = Config

    def __init__(self, model: nn.Module, adapter: Adapter, config: Config, skb: nn.Module | None = None) -> None:
        super().__init__(model, adapter, config)
        self._start, self._warmup = config.schedule()  # in loss() calls; a fraction without total_steps fails here
        core = unwrap_container(model)
        channels = self._hook_channels(core, adapter) if config.use_skam else []  # fail fast, before loading networks
        if skb is None and config.needs_skb:
            skb = load_configured_skb(config)
        if skb is not None:
            skb.requires_grad_(False)
        perceptual = build_perceptual(config.perceptual, config.perceptual_weights, skb) if config.perceptual_on else None
        self._aux = {"skb": skb if config.needs_skb else None, "perceptual": perceptual}
        prior_channels = tuple(skb.channels) if skb is not None else (1, 1, 1, 1)
        self.teacher = SPGRM(prior_channels, config.teacher_dim, config.teacher_heads, config.use_priors,
                             config.teacher_stride, config.prior_fusion)
        self.skam = SKAM(channels, config.teacher_dim, SPGRM.num_features, config.skam_latent, config.skam_ratio,
                         config.seed, config.skam_mask, config.skam_patch, config.skam_norm,
                         config.skam_reduction) if config.use_skam else None
        self.hooks = FeatureHooks(core, adapter.hooks) if config.use_skam else None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # loss() calls in training, for the warm-up
        self._arm_hooks(0)
        # a loaded step count decides whether the next forward captures features
        self.register_load_state_dict_post_hook(lambda module, keys: module._arm_hooks(int(module.steps)))
        self._follow_model()

    @staticmethod
    def _hook_channels(core: nn.Module, adapter: Adapter) -> list[int]:
        if not adapter.hooks:
            raise ValueError(f"adapter {adapter.name!r} declares no hook points; SKAM needs at least one "
                             "(or use Config(use_skam=False))")
        return [hook_channels(core, point) for point in adapter.hooks]

    @property
    def skb(self) -> nn.Module | None:
        """The frozen Semantic Knowledge Bank (``None`` when no enabled part needs it)."""
        return self._aux["skb"]

    @property
    def perceptual(self) -> Callable[[Tensor], list[Tensor]] | None:
        """φ of eq. 5, or ``None``."""
        return self._aux["perceptual"]

    def loss_terms(self, output: Any, target: Tensor) -> dict[str, Tensor]:
        """The weighted terms of :meth:`loss`, each differentiable: ``{"spg", "content", "color", "feat"}``.

        Only the enabled terms are present (content and color only once the distillation has started, see
        ``Config.distill_start``); their sum is :meth:`loss`. Unweighted values go to
        :attr:`last_losses`. The gradient-balance diagnostic differentiates each term on its own.

        A term whose weight is 0 in this step (its λ, or the ramp before the distillation starts) is not computed:
        no region maps without L_color, no perceptual pass without L_content, no SKAM (and no feature captures in
        the model's forward) without L_feat. SKAM's term is then a zero that still reaches its parameters, so
        ``DDP`` finds a gradient, zero, for each of them.

        Args:
            output: what the model returned for this batch (the adapter finds H_in in it).
            target: ground truth in H_in's domain, scale and shape (``(B, 3, H, W)``, or packed RAW).
        """
        cfg = self.config
        try:  # every exit, errors included, drops the captured features and the graph they hold
            h_in = select_output(output, self.adapter.output)
            check_pair(h_in, target, next(self.teacher.parameters()))
            step = int(self.steps)
            ramp = distill_ramp(step, self._start, self._warmup)
            on = self._active(ramp)
            if torch.is_grad_enabled():
                self.steps += 1
                self._arm_hooks(step + 1)
            hs = self.transfer(h_in)
            with torch.no_grad():
                target_s = self.transfer(target, what="target")
            student_grad = on["content"] and self._perceptual_is_skb
            if cfg.prior_source == "output":
                # one SKB trunk pass serves the teacher's priors and, with perceptual="skb", the student's side of
                # the perceptual term: with a gradient only when that term runs
                features, regions = self._skb(hs, regions=on["color"], grad=student_grad)
                student_features = features if student_grad else None
            else:
                features, regions = self._skb(target_s, regions=on["color"], grad=False)
                student_features = self._skb(hs, regions=False, grad=True)[0] if student_grad else None
            hhat, teacher_feats = self.teacher(hs if cfg.teacher_moves_orm else hs.detach(),
                                               [f.detach() for f in features] if cfg.use_priors else None)
            raw = {"spg": F.l1_loss(hhat, target_s)}
            weights = {"spg": cfg.lambda_spg}
            if on["content"] or on["color"]:
                # the student's tone-mapped output lives in [0, 1] (H_in/scale ≤ 1): a teacher value outside it is
                # no target, and chasing it would drive a sigmoid output into saturation, where its gradient dies
                teacher_target = hhat.detach().clamp(0, 1)
                if cfg.distill_gate:
                    teacher_target = gated_target(teacher_target, hs.detach(), target_s)
            if on["content"]:
                raw["content"] = content_loss(hs, teacher_target, self.perceptual, cfg.perceptual_weight,
                                              student_features=student_features)
                weights["content"] = ramp * cfg.lambda_content
            if on["color"]:
                regions = with_background(regions) if cfg.color_background else regions
                raw["color"] = histogram_loss(hs, teacher_target, regions, cfg.hist_bins, cfg.hist_kernel,
                                              cfg.hist_slope, cfg.hist_bandwidth, cfg.hist_chunk)
                weights["color"] = ramp * cfg.lambda_color
            if on["feat"]:
                # a half or bfloat16 model's features meet the plugin's float32 layers (autocast recasts them)
                student = [s.float() for s in self.hooks.maps(aspect=h_in.shape[-2] / h_in.shape[-1])]
                raw["feat"] = self.skam(student, teacher_feats)
                weights["feat"] = ramp * cfg.lambda_feat
            elif self.skam is not None:
                raw["feat"] = sum(p.sum() for p in self.skam.parameters()) * 0.0
                weights["feat"] = 0.0
        finally:
            if self.hooks is not None:
                self.hooks.clear()
        terms = {k: weights[k] * v for k, v in raw.items()}
        # the model's own μ-law L1, beside the teacher's L_spg: their ratio is the teacher's margin
        self._last = {**{k: v.detach() for k, v in raw.items()}, "orm": F.l1_loss(hs.detach(), target_s),
                      "total": sum(t.detach() for t in terms.values())}
        return terms

    @property
    def _perceptual_is_skb(self) -> bool:
        return self.config.perceptual == "skb" and self.perceptual is not None

    def _active(self, ramp: float) -> dict[str, bool]:
        """Which distillation terms have a non-zero weight at this ramp."""
        cfg = self.config
        return {"content": ramp > 0 and cfg.content_on,
                "color": ramp > 0 and cfg.color_on,
                "feat": ramp > 0 and self.skam is not None and cfg.lambda_feat > 0}

    def _arm_hooks(self, step: int) -> None:
        """Capture features in the model's forward only when the ``loss()`` call ``step`` will run SKAM."""
        if self.hooks is not None:
            self.hooks.active = self._active(distill_ramp(step, self._start, self._warmup))["feat"]

    def _skb(self, hs: Tensor, regions: bool, grad: bool) -> tuple[list[Tensor] | None, Tensor | None]:
        """The SKB's features (with a graph to ``hs`` if ``grad``) and, if ``regions``, its region maps."""
        if self.skb is None:
            return None, None
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            x = hs if grad else hs.detach()
            if regions:
                return self.skb(x)
            return self.skb.features(x), None

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """The extra loss term: ``λ_spg·L_spg + λ1·L_content + λ2·L_color + λ_feat·L_feat``.

        Args:
            output: what the model returned for this batch (the adapter finds H_in in it).
            target: ground truth in H_in's domain, scale and shape (``(B, 3, H, W)``, or packed RAW).

        Returns:
            Scalar; add it to the model's own loss. Components are in :attr:`last_losses`.
        """
        return sum(self.loss_terms(output, target).values())  # loss_terms builds its dict in a fixed order

    @classmethod
    def hook_plan(cls, adapter: Adapter, config: Config) -> list[tuple[str, str]]:
        return [(p.path, "read for SKAM") for p in adapter.hooks] if config.use_skam else []

    def _remove_hooks(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, skb={type(self.skb).__name__ if self.skb is not None else None}"
