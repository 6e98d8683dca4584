"""All settings of the plugin, with the paper's defaults."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping


@dataclass
class Config:
    """Semantic Knowledge Transfer settings. Defaults are the paper's (§3.3–3.5) unless noted.

    Attributes:
        lambda_content: λ1 of eq. 14, weight of L_content (paper: 1e-3, which with our mean-reduced L1 leaves the
            term at 1/1000 of the task's gradient; 0.1 is chosen on the validation split, docs/method.md).
        lambda_color: λ2 of eq. 14, weight of L_color.
        lambda_feat: weight of L_feat (1 in eq. 14; 0.1 chosen on the validation split, docs/method.md).
        lambda_spg: weight of the teacher's L_spg (eq. 13) in the returned loss.
        perceptual: φ of eq. 5: ``"vgg19"`` (the paper's), ``"skb"`` (the SKB backbone, no extra network) or
            ``"none"``.
        perceptual_weight: λ of eq. 5.
        perceptual_weights: VGG19 state_dict file; ``None`` looks in torch's hub cache.
        skb_weights: SKB checkpoint: a local path, ``"standin"`` (the offline stand-in shipped with semkt), or a
            name ultralytics downloads when online (``"FastSAM-s.pt"``).
        skb_arch: build the SKB from this ultralytics yaml (``"yolov8s-seg.yaml"``) and load ``skb_weights`` as a
            state_dict into it, or random weights when ``skb_weights`` is ``None`` (tests only).
        num_regions: N, how many region maps p_m the SKB gives the color loss.
        mu: μ of the μ-law in T.
        hist_bins: histogram bins on ``[0, 1]``.
        hist_kernel: ``"sigmoid"`` (slope-400 window, as the public SKF code) or ``"gaussian"`` (eq. 7).
        hist_slope: slope of the sigmoid kernel.
        hist_bandwidth: Gaussian bandwidth in ``[0, 1]`` units (``None``: one bin width).
        hist_chunk: pixels per image handled at a time by the histogram loss (about 150·C bytes per region–pixel
            pair; bounds its memory, not its result).
        teacher_dim: width of the SPGRM.
        teacher_heads: attention heads in its Prior Fusion Blocks.
        teacher_stride: resolution factor of the teacher's fusion modules: 1 (the paper's, full resolution) or
            ``s > 1``: the slim teacher, which folds ``s × s`` blocks into channels and runs its fusion modules at
            ``1/s`` resolution (``s²`` times fewer operations there; docs/training.md has its cost and effect).
        skam_latent: SKAM latent channels.
        skam_ratio: SKAM mask ratio: share of the teacher latent in the mix.
        skam_mask: ``"spatial"`` (whole ``skam_patch``² blocks, all latent channels at once) or ``"element"``
            (each latent element on its own, the paper's I^M ∈ {0,1}^{C×H×W} read literally).
        skam_patch: block side of the spatial mask, in pixels of the hooked feature.
        skam_norm: SKAM target scaling: ``"image"`` (divide by its RMS per image), ``"channel"`` (standardise
            each channel) or ``"none"``.
        skam_reduction: ``"mean"`` or ``"sum"`` of the stages' losses.
        seed: seed of the SKAM mask generator.
        use_content, use_color, use_skam, use_priors: ablation switches (Table 3): L_content, L_color, SKAM, the
            SKB priors in the teacher (off: a plain second-stage teacher; the SKB is then only loaded if the
            color loss or ``perceptual="skb"`` needs it).
        prior_source: what the SKB reads for the teacher's priors and L_color's region maps: ``"output"`` (the
            paper's: T(H_in), the model's own output) or ``"truth"`` (T(GT), the ground truth of the training
            batch: a privileged teacher that sees what the student cannot; the teacher is training-only, so
            inference is untouched).
        prior_fusion: how a prior enters each of the teacher's fusion modules: ``"attention"`` (eq. 4, a channel
            × channel mix per image), ``"spatial"`` (a per-pixel scale and shift from the prior) or ``"both"``.
        teacher_moves_orm: let L_spg's gradient reach the ORM through T(H_in) (off in the paper's scheme).
        color_background: add the region "everything no SKB region covers" (``1 − max_n p_m^n``) to L_color, so
            that background pixels count too (FastSAM's masks cover objects, not the whole image).
        distill_gate: distil towards the teacher only at pixels where it is closer to the ground truth than the
            ORM's output, and towards the ORM's own output (no pull) elsewhere (:func:`semkt_plugin.strategies.skt.gated_target`).
        distill_start: training ``loss()`` calls before any distillation (λ1, λ2, λ_feat are 0 until then): the ORM
            learns at full speed first, and the teacher has learned something before it is distilled. An int is a
            step count, a float in ``[0, 1]`` a fraction of :attr:`total_steps`. Default: half the run (the paper:
            0, from the first step; docs/method.md, "Calibration").
        distill_warmup: then ramp λ1, λ2 and λ_feat linearly from 0 over this many ``loss()`` calls, so the ORM is
            not pulled towards a teacher that has not learned anything yet. An int or a fraction of
            :attr:`total_steps`, as ``distill_start``. Default: a sixth of the run (the paper: 0).
        total_steps: training steps of the whole run (``loss()`` calls; ``epochs * len(loader)`` in an epoch-based
            loop). The default schedule is in fractions of it, so ``wrap`` needs it unless both schedule points
            are given as step counts.
    """

    lambda_content: float = 0.1
    lambda_color: float = 100.0
    lambda_feat: float = 0.1
    lambda_spg: float = 1.0
    perceptual: Literal["vgg19", "skb", "none"] = "vgg19"
    perceptual_weight: float = 1e-2
    perceptual_weights: str | None = None
    skb_weights: str | None = "FastSAM-s.pt"
    skb_arch: str | None = None
    num_regions: int = 16
    mu: float = 5000.0
    hist_bins: int = 256
    hist_kernel: Literal["sigmoid", "gaussian"] = "sigmoid"
    hist_slope: float = 400.0
    hist_bandwidth: float | None = None
    hist_chunk: int = 4096
    teacher_dim: int = 32
    teacher_heads: int = 2
    teacher_stride: int = 1
    skam_latent: int = 32
    skam_ratio: float = 0.5
    skam_mask: Literal["spatial", "element"] = "spatial"
    skam_patch: int = 8
    skam_norm: Literal["image", "channel", "none"] = "image"
    skam_reduction: Literal["mean", "sum"] = "mean"
    seed: int = 0
    use_content: bool = True
    use_color: bool = True
    use_skam: bool = True
    use_priors: bool = True
    prior_source: Literal["output", "truth"] = "output"
    prior_fusion: Literal["attention", "spatial", "both"] = "attention"
    teacher_moves_orm: bool = False
    color_background: bool = True
    distill_gate: bool = True
    distill_start: float | int = 0.5
    distill_warmup: float | int = 1 / 6
    total_steps: int | None = None

    def __post_init__(self) -> None:
        if self.perceptual not in ("vgg19", "skb", "none"):
            raise ValueError(f"perceptual must be 'vgg19', 'skb' or 'none', got {self.perceptual!r}")
        if self.hist_kernel not in ("sigmoid", "gaussian"):
            raise ValueError(f"hist_kernel must be 'sigmoid' or 'gaussian', got {self.hist_kernel!r}")
        for name, allowed in (("skam_mask", ("spatial", "element")), ("skam_norm", ("image", "channel", "none")),
                              ("skam_reduction", ("mean", "sum")), ("prior_source", ("output", "truth")),
                              ("prior_fusion", ("attention", "spatial", "both"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 <= self.skam_ratio <= 1.0:
            raise ValueError(f"skam_ratio must be in [0, 1], got {self.skam_ratio}")
        check_total_steps(self.total_steps)
        for name in ("distill_start", "distill_warmup"):
            check_schedule_point(name, getattr(self, name))
        if self.total_steps is not None:
            self.schedule()
        for name in ("hist_bins", "hist_chunk", "teacher_dim", "teacher_stride", "skam_latent", "skam_patch", "num_regions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if isinstance(self.skb_weights, Path):
            self.skb_weights = str(self.skb_weights)

    @property
    def content_on(self) -> bool:
        """L_content is enabled and weighted (before the distillation ramp)."""
        return self.use_content and self.lambda_content > 0

    @property
    def color_on(self) -> bool:
        """L_color is enabled and weighted (before the distillation ramp)."""
        return self.use_color and self.lambda_color > 0

    @property
    def perceptual_on(self) -> bool:
        """L_content has a perceptual part: φ must be built."""
        return self.content_on and self.perceptual_weight > 0

    @property
    def needs_skb(self) -> bool:
        """Whether any enabled part with a non-zero weight reads the SKB."""
        return self.use_priors or self.color_on or (self.perceptual_on and self.perceptual == "skb")

    def schedule(self) -> tuple[int, int]:
        """``(distill_start, distill_warmup)`` in ``loss()`` calls, fractions resolved against ``total_steps``."""
        return (steps_of("distill_start", self.distill_start, self.total_steps),
                steps_of("distill_warmup", self.distill_warmup, self.total_steps))

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes``; unknown names raise with the list of fields."""
        return merge(self, changes)


def merge(config: Any, changes: Mapping[str, Any]) -> Any:
    """``config`` (any strategy's settings dataclass) with ``changes`` applied; unknown names raise with the list
    of fields."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown {type(config).__name__} fields {sorted(unknown)}; fields are {sorted(known)}")
    return dataclasses.replace(config, **changes)


def check_total_steps(total_steps: Any) -> None:
    """``total_steps`` is ``None`` or a positive int."""
    if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                    or total_steps < 1):
        raise ValueError(f"total_steps must be a positive int or None, got {total_steps!r}")


def check_schedule_point(name: str, value: Any) -> None:
    """A schedule point is a step count (an int ``>= 0``) or a fraction of the run (a float in ``[0, 1]``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a fraction (float) or a step count (int), got {value!r}")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value}: a float is a fraction of total_steps and must lie in [0, 1]; "
                         "give a step count as an int")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def steps_of(name: str, value: float | int, total_steps: int | None) -> int:
    """The schedule point ``value`` in ``loss()`` calls: an int as it is, a float as ``round(value * total_steps)``.

    Raises:
        ValueError: a fraction without ``total_steps``.
    """
    if isinstance(value, int):
        return value
    if total_steps is None:
        raise ValueError(f"{name}={value} is a fraction of the training length, but total_steps is not set: pass "
                         f"total_steps=<training steps> (loss() calls; epochs * len(loader)), or give {name} as a "
                         "step count (an int)")
    return round(value * total_steps)
