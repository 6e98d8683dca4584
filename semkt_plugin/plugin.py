"""``wrap(model, adapter)``: attach Semantic Knowledge Transfer to an unmodified model; one extra loss term.

The user's model is neither subclassed nor edited: forward hooks (only where SKAM needs features) read its
intermediate features, and the plugin's own modules (teacher, SKAM) live in :class:`SemanticTransfer`, whose
``parameters()`` and ``state_dict()`` hold nothing of the model. ``unwrap()`` removes the hooks and returns the
same model object.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adapter import Adapter
from .config import Config, merge
from .domain import DomainTransfer
from .hooks import FeatureHooks, find_module, point_channels, unwrap_container
from .losses import content_loss, histogram_loss
from .perceptual import build_perceptual
from .registry import get_adapter
from .skam import SKAM
from .spgrm import SPGRM

_wrapped: "weakref.WeakKeyDictionary[nn.Module, SemanticTransfer]" = weakref.WeakKeyDictionary()


def select_output(output: Any, where: int | str | None) -> Tensor:
    """H_in from a model's return value: the value itself, a tuple index or a dict key."""
    value = output
    if where is not None:
        try:
            value = output[where]
        except (IndexError, KeyError, TypeError) as err:
            raise ValueError(
                f"the adapter says H_in is output[{where!r}] but the model returned {type(output).__name__}"
                f"{f' of length {len(output)}' if hasattr(output, '__len__') else ''}; fix the adapter's `output`"
            ) from err
    if not isinstance(value, Tensor):
        raise TypeError(
            f"H_in must be a tensor but the model's output{'' if where is None else f'[{where!r}]'} is "
            f"{type(value).__name__}; set the adapter's `output` to the tensor's index or key"
        )
    return value


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

    A pixel's distance is the L1 over channels. Where the teacher is worse, the target is the student itself,
    so no distillation term pulls a pixel away from the ground truth; where it is better, a step towards the
    teacher shortens the pixel's distance to the ground truth (the distance is convex). This is the
    teacher-bounded distillation of Chen et al. (NeurIPS 2017), per pixel.

    Shapes:
        teacher, student, truth ``(B, C, H, W)`` → ``(B, C, H, W)``, no gradient.
    """
    with torch.no_grad():
        better = (teacher - truth).abs().sum(1, keepdim=True) < (student - truth).abs().sum(1, keepdim=True)
        return torch.where(better, teacher, student)


def _skb_for(config: Config) -> nn.Module:
    from .skb import load_skb

    return load_skb(config.skb_weights, arch=config.skb_arch, num_regions=config.num_regions)


class SemanticTransfer(nn.Module):
    """The plugin's state and its loss. Built by :func:`wrap`; see there."""

    def __init__(self, model: nn.Module, adapter: Adapter, config: Config, skb: nn.Module | None = None) -> None:
        super().__init__()
        self.adapter, self.config = adapter, config
        self._model = [model]  # a list: the model is not a submodule, so it is in neither parameters() nor state_dict()
        core = unwrap_container(model)
        channels = self._hook_channels(core, adapter) if config.use_skam else []  # fail fast, before loading networks
        self.transfer = DomainTransfer(adapter.domain, adapter.scale, adapter.negative, adapter.bayer, config.mu)
        if skb is None and config.needs_skb:
            skb = _skb_for(config)
        if skb is not None:
            skb.requires_grad_(False)
        perceptual = build_perceptual(config.perceptual, config.perceptual_weights, skb) if config.perceptual_on else None
        # frozen networks sit in a plain dict: not submodules, so out of parameters() and state_dict()
        self._aux = {"skb": skb if config.needs_skb else None, "perceptual": perceptual}
        prior_channels = tuple(skb.channels) if skb is not None else (1, 1, 1, 1)
        self.teacher = SPGRM(prior_channels, config.teacher_dim, config.teacher_heads, config.use_priors,
                             config.teacher_stride)
        self.skam = SKAM(channels, config.teacher_dim, SPGRM.num_features, config.skam_latent, config.skam_ratio,
                         config.seed, config.skam_mask, config.skam_patch, config.skam_norm,
                         config.skam_reduction) if config.use_skam else None
        self.hooks = FeatureHooks(core, adapter.hooks) if config.use_skam else None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # loss() calls in training, for the warm-up
        self._arm_hooks(0)
        # a loaded step count decides whether the next forward captures features
        self.register_load_state_dict_post_hook(lambda module, keys: module._arm_hooks(int(module.steps)))
        self._last: dict[str, Tensor] = {}
        device = next(iter(core.parameters()), torch.empty(0)).device
        self.to(device)

    @staticmethod
    def _hook_channels(core: nn.Module, adapter: Adapter) -> list[int]:
        if not adapter.hooks:
            raise ValueError(f"adapter {adapter.name!r} declares no hook points; SKAM needs at least one "
                             "(or use Config(use_skam=False))")
        channels = []
        for point in adapter.hooks:
            c = point_channels(point, find_module(core, point.path))
            if c is None:
                raise ValueError(f"cannot tell the channels of hook point {point.path!r} from its layers; "
                                 "set HookPoint(channels=...) in the adapter")
            channels.append(c)
        return channels

    @property
    def model(self) -> nn.Module:
        """The wrapped model (the same object the user passed)."""
        return self._model[0]

    def _apply(self, fn: Callable, recurse: bool = True) -> "SemanticTransfer":
        # .to()/.cuda()/.half() reach the frozen networks too, which are kept out of parameters() and state_dict()
        super()._apply(fn, recurse)
        for module in self._aux.values():
            if isinstance(module, nn.Module):
                module._apply(fn, recurse)
        return self

    @property
    def skb(self) -> nn.Module | None:
        """The frozen Semantic Knowledge Bank (``None`` when no enabled part needs it)."""
        return self._aux["skb"]

    @property
    def perceptual(self) -> Callable[[Tensor], list[Tensor]] | None:
        """φ of eq. 5, or ``None``."""
        return self._aux["perceptual"]

    def _check_inputs(self, h: Tensor, target: Tensor) -> None:
        param = next(self.teacher.parameters())
        if h.device != param.device:
            raise RuntimeError(
                f"the model's output is on {h.device} but the plugin is on {param.device}; "
                f"call skt.to({str(h.device)!r}) after moving the model"
            )
        if target.device != h.device:
            raise RuntimeError(f"the target is on {target.device} but the model's output is on {h.device}; "
                               f"move the target with target.to({str(h.device)!r})")
        if target.shape != h.shape:
            raise ValueError(f"target shape {tuple(target.shape)} differs from H_in's {tuple(h.shape)}; "
                             "the target must be in the model output's domain, scale and size")
        if param.dtype != torch.float32:
            raise TypeError(
                f"the plugin's parameters are {param.dtype}; keep them in float32 (skt.float()) and use "
                "torch.autocast for mixed precision: the μ-law and the histograms need float32"
            )

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
            self._check_inputs(h_in, target)
            step = int(self.steps)
            ramp = distill_ramp(step, cfg.distill_start, cfg.distill_warmup)
            on = self._active(ramp)
            if torch.is_grad_enabled():
                self.steps += 1
                self._arm_hooks(step + 1)
            hs = self.transfer(h_in)
            with torch.no_grad():
                target_s = self.transfer(target, what="target")
            # one SKB trunk pass serves the teacher's priors and, with perceptual="skb", the student's side of
            # the perceptual term: with a gradient only when that term runs
            features, regions = self._skb(hs, regions=on["color"], grad=on["content"] and self._perceptual_is_skb)
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
                                              student_features=features if self._perceptual_is_skb else None)
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
        self._last = {**{k: v.detach() for k, v in raw.items()},
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
            cfg = self.config
            self.hooks.active = self._active(distill_ramp(step, cfg.distill_start, cfg.distill_warmup))["feat"]

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

    def forward(self, output: Any, target: Tensor) -> Tensor:
        """Same as :meth:`loss`; a forward lets ``DDP(skt)`` average the plugin's gradients across ranks."""
        return self.loss(output, target)

    @property
    def last_losses(self) -> dict[str, float]:
        """The components of the last :meth:`loss` call (unweighted), and ``total``."""
        return {k: float(v) for k, v in self._last.items()}

    def unwrap(self) -> nn.Module:
        """Remove every hook and return the model, exactly as it was passed (same object, same state_dict)."""
        if self.hooks is not None:
            self.hooks.remove()
        _wrapped.pop(self.model, None)
        _wrapped.pop(unwrap_container(self.model), None)
        self._last = {}
        return self.model

    def extra_repr(self) -> str:
        return f"adapter={self.adapter.name!r}, skb={type(self.skb).__name__ if self.skb is not None else None}"


def wrap(model: nn.Module, adapter: str | Path | Mapping[str, Any] | Adapter, config: Config | None = None,
         skb: nn.Module | None = None, **overrides: Any) -> SemanticTransfer:
    """Attach Semantic Knowledge Transfer to ``model``.

    Args:
        model: the user's HDR model (the ORM), unmodified; DataParallel/DDP/compiled wrappers are looked through.
        adapter: a registered adapter name (``"ahdr"``), an :class:`Adapter`, a dict or an adapter file.
        config: settings; ``None`` uses the paper's defaults with the adapter's own overrides.
        skb: an already-built SKB (shared between runs, or for tests); ``None`` loads ``config.skb_weights``.
        overrides: :class:`Config` fields to change, e.g. ``skb_weights="FastSAM-x.pt"``.

    Returns:
        The plugin: ``skt.loss(output, target)`` is the extra term, ``skt.parameters()`` its trainable
        parameters, ``skt.unwrap()`` gives the model back.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap() needs the model (an nn.Module), got {type(model).__name__}")
    core = unwrap_container(model)
    if model in _wrapped or core in _wrapped:
        raise RuntimeError("this model is already wrapped by semkt; call .unwrap() on the first wrapper before "
                           "wrapping it again")
    adapter = get_adapter(adapter)
    base = merge(Config(), adapter.config) if config is None else config
    config = merge(base, overrides)
    with torch.random.fork_rng(devices=[]):  # the plugin's init comes from config.seed; the user's RNG stream stays as it was
        torch.manual_seed(config.seed)
        skt = SemanticTransfer(model, adapter, config, skb)
    _wrapped[model] = skt
    if core is not model:
        _wrapped[core] = skt
    return skt
