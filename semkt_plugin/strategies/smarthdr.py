"""SmartHDR (AAAI 2026), ``strategy="smarthdr"``: a semi-supervised mean teacher with bi-level uncertainty masking.

The user's model is the student, trained by gradient descent. The teacher is a copy of it that follows the
student's weights by an exponential moving average (EMA) and labels the data that has no ground truth. A judge
network reads one of the model's features and predicts a per-pixel uncertainty σ of its output; σ weights an
uncertainty loss on every output, and the teacher's σ decides which parts of a pseudo-label are trusted.

What it hooks: one adapter hook point (``SmartHDRConfig.judge_point``), read-only, on the model and on the teacher.
What it computes per training step, in the μ-law domain T (μ = 5000)::

    out = model(*ldrs)                                   # a labelled batch
    loss = own_loss(out, gt) + skt.loss(out, gt) + skt.after_loss(unlabelled=ldrs_u)   # after_loss: unlabelled_loss

- ``loss(output, target)``: λ_k·L_s^k, the uncertainty loss of the output against the ground truth with the
  judge's σ; and the step's bookkeeping: the step counter and, after the warm-up, the teacher's EMA update (the
  first step after the warm-up copies the student). Call it first in a step, right after the forward that made
  ``output`` (the judge reads that forward's feature).
- ``unlabelled_loss(ldrs_u)``: zero during the warm-up. Afterwards the teacher labels the batch as given (the weak
  view), the EMA judge gives the teacher's σ, and patch- and pixel-level masks drop the uncertain parts; the
  student sees a strongly augmented view (RGB shuffle, horizontal flip, 90° rotations), the pseudo-label and its
  mask are transformed to match, and the term is λ_u·(masked L1 + λ_k·masked L_u^k with the student's σ).

What it saves: the step counter, the teacher, the judge, the EMA judge and the augmentation generator's state,
so a resumed run continues identically. The model itself stays out of ``state_dict()``.

The paper's perceptual terms (its λ_v) and its L1 on labelled data are the user's own loss; this strategy adds
what SmartHDR adds on top.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..adapter import Adapter, HookPoint
from ..feature_hooks import FeatureHooks, hook_channels, unwrap_container
from ..settings import Settings
from ..validation import check
from .base import Strategy, check_pair, select_output
from .terms import Term, reported


@dataclass
class SmartHDRConfig(Settings):
    """SmartHDR settings; defaults are the paper's unless noted. ``mu`` (of the μ-law T in which every loss is
    computed), ``seed`` (the augmentation generator's) and ``total_steps`` are the base's.

    Attributes:
        ema: α of the teacher's update θ_t ← α·θ_t + (1 − α)·θ_s (eq. 3), in ``[0, 1]``.
        warmup: steps (``loss()`` calls in training) on labelled data only before the teacher starts: a float in
            ``[0, 1]`` is a fraction of :attr:`total_steps` (paper: 30 of 200 epochs, 0.15), an int a step count.
        judge_point: index into the adapter's hook points of the feature the judge reads (the paper's F_att, the
            attention-merged feature; the built-in adapters list it first).
        patch: side, in output pixels, of the patches of the patch-level mask (paper: the 64×64 training crops).
        patch_threshold: τ_pa; a patch whose normalised mean uncertainty exceeds it is dropped (eq. 11).
        pixel_threshold: τ_pi; a pixel whose normalised uncertainty exceeds it is dropped (eq. 12).
        lambda_u: λ_u of eq. 9, weight of the unlabelled terms.
        lambda_k: weight of the uncertainty terms L_s^k and L_u^k (1 in eq. 9).
        sigma_min: σ is clamped at this value in L^k: ``log σ²`` has no lower bound, so where the output matches its
            target exactly (clipped highlights) an unclamped judge could lower the loss without end, and the
            output's weight 1/σ² would grow without bound with it.
        beta: β of β-NLL (Seitzer et al., ICLR 2022): L^k's terms are weighted by σ^{2β}, held constant in the
            backward pass. At 0 (the paper's eq. 10) the gradient L^k sends to the model's output is
            ``(ĥ − h)/σ²``: with a judge that has learnt σ ≈ |ĥ − h| that is about ``1/(ĥ − h)``, largest where the
            output is already right. At 1 it is ``(ĥ − h)``, a plain squared error's; σ's own gradient keeps its
            sign and zero at ``σ = |ĥ − h|`` for any β.
        strong_augment: augment the student's view of unlabelled data (off: it sees what the teacher sees).
    """

    ema: float = 0.999
    warmup: float | int = 0.15
    judge_point: int = 0
    patch: int = 64
    patch_threshold: float = 0.4
    pixel_threshold: float = 0.4
    lambda_u: float = 1.0
    lambda_k: float = 1.0
    sigma_min: float = 1e-3
    beta: float = 0.0
    strong_augment: bool = True

    schedule_points: ClassVar[tuple[str, ...]] = ("warmup",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check("ema", self.ema, at_least=0.0, at_most=1.0)
        check("judge_point", self.judge_point, kind=int, at_least=0)
        check("patch", self.patch, kind=int, at_least=1)
        for name in ("patch_threshold", "pixel_threshold", "beta"):  # scores are min-max normalised
            check(name, getattr(self, name), at_least=0.0, at_most=1.0)
        for name in ("lambda_u", "lambda_k"):
            check(name, getattr(self, name), at_least=0)
        check("sigma_min", self.sigma_min, above=0.0, below=1.0)  # the judge's σ is a sigmoid
        check("strong_augment", self.strong_augment, kind=bool)

    @property
    def warmup_steps(self) -> int:
        """:attr:`warmup` in steps; a fraction needs :attr:`total_steps`."""
        return self.steps_of("warmup")


#: SmartHDR's loss: the labelled uncertainty term, then the parts of the unlabelled one, λ_u·(u_l1 + λ_k·k_u),
#: which :meth:`SmartHDR.unlabelled_loss` weighs itself, and the share of pseudo-label pixels kept
TERMS: tuple[Term, ...] = (
    Term("k_s", "lambda_k"),
    Term("u_l1", None),
    Term("k_u", None),
    Term("kept", None),
)


class JudgeHead(nn.Module):
    """The judge of Fig. 3: three 3×3 convolutions with a skip addition, and a sigmoid: σ per pixel and RGB channel.

    ``conv3(relu(conv2(relu(conv1(x))) + x))`` through a sigmoid, upsampled bilinearly to the output's size.

    Args:
        channels: channels of the feature it reads.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, feature: Tensor, size: tuple[int, int]) -> Tensor:
        """``(B, C, h, w)`` feature → σ ``(B, 3, *size)`` in ``(0, 1)``."""
        x = F.relu(self.conv2(F.relu(self.conv1(feature))) + feature)
        sigma = torch.sigmoid(self.conv3(x))
        if tuple(sigma.shape[-2:]) != tuple(size):
            sigma = F.interpolate(sigma, size=size, mode="bilinear", align_corners=False)
        return sigma


def masked_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of ``values`` over the elements where ``mask`` is 1 (all of them if ``None``); 0 if none is kept.

    Shapes:
        values ``(B, C, H, W)``, mask ``(B, 1, H, W)`` (broadcast over channels) → scalar.
    """
    if mask is None:
        return values.mean()
    mask = mask.expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def uncertainty_loss(pred: Tensor, target: Tensor, sigma: Tensor, mask: Tensor | None = None,
                     sigma_min: float = 1e-3, beta: float = 0.0) -> Tensor:
    """L^k of eq. 10: the mean of ``(pred − target)² / (2σ²) + ½·log σ²`` over the kept elements, in float32;
    with ``beta > 0`` each element weighted by ``sg(σ²)^β`` (β-NLL; ``sg``: no gradient through it).

    At β = 0 each element is smallest at ``σ = max(|pred − target|, sigma_min)``, and negative where the error is
    below ``e^{-1/2}``, as the negative log-likelihood of a Gaussian is. For any β its gradient in σ is zero there,
    and its gradient in ``pred`` is ``σ^{2β}·(pred − target)/σ²`` per element (divided by the kept count).

    Shapes:
        pred, target, sigma ``(B, 3, H, W)``; mask ``(B, 1, H, W)`` of 0/1 or ``None`` → scalar.
    """
    with torch.autocast(pred.device.type, enabled=False):
        var = sigma.float().clamp_min(sigma_min).square()
        values = (pred.float() - target.float()).square() / (2 * var) + 0.5 * var.log()
        if beta:
            values = values * var.detach().pow(beta)
        return masked_mean(values, mask)


def _minmax(score: Tensor) -> Tensor:
    """``score`` scaled to ``[0, 1]`` by its min and max over the whole batch; all zeros if they are equal."""
    low = score.amin()
    return (score - low) / (score.amax() - low).clamp_min(torch.finfo(score.dtype).tiny)


def patch_mask(sigma: Tensor, patch: int, threshold: float) -> Tensor:
    """The patch-level mask M_pa (eq. 11): 0 on the patches whose normalised mean uncertainty exceeds ``threshold``.

    A patch's score is the mean of σ over its pixels and channels; the scores are min–max normalised over every
    patch of the batch (the paper normalises "globally"; the batch is what one step sees), so the most uncertain
    patch scores 1 and is dropped unless all scores are equal. Patches tile the image from the top left; those
    cut by the border are averaged over their real pixels.

    Shapes:
        sigma ``(B, C, H, W)`` → ``(B, 1, H, W)`` of 0/1, float32.
    """
    h, w = sigma.shape[-2:]
    u = sigma.float().mean(1, keepdim=True)
    pad = (0, -w % patch, 0, -h % patch)
    total = F.avg_pool2d(F.pad(u, pad), patch)
    count = F.avg_pool2d(F.pad(torch.ones_like(u), pad), patch)
    keep = (_minmax(total / count) <= threshold).float()
    return keep.repeat_interleave(patch, -2).repeat_interleave(patch, -1)[..., :h, :w]


def pixel_mask(sigma: Tensor, threshold: float) -> Tensor:
    """The pixel-level mask M_pi (eq. 12): 0 where the mean of σ over the channels, min–max normalised over the
    batch, exceeds ``threshold``.

    Shapes:
        sigma ``(B, C, H, W)`` → ``(B, 1, H, W)`` of 0/1, float32.
    """
    return (_minmax(sigma.float().mean(1, keepdim=True)) <= threshold).float()


def shuffle_channels(x: Tensor, perm: Sequence[int]) -> Tensor:
    """Permute every RGB triplet of the channel axis (``-3``) by ``perm``: channel ``3g + i`` becomes ``3g + perm[i]``.

    AHDR's inputs ``[LDR, LDR^γ / t]`` and HDR-Transformer's ``[LDR^γ / t, LDR]`` are two triplets; both get the same
    permutation, so the linearised image stays the linearisation of the LDR.

    Shapes:
        x ``(..., 3k, H, W)`` → same.
    """
    c = x.shape[-3]
    if c % 3:
        raise ValueError(f"a channel shuffle permutes RGB triplets, but the tensor has {c} channels")
    # slices, not an index tensor: copying one to the GPU would wait for it
    triplets = x.unflatten(-3, (c // 3, 3))
    return torch.cat([triplets.narrow(-3, p, 1) for p in perm], -3).flatten(-4, -3)


@dataclass(frozen=True)
class Augmentation:
    """One strong augmentation: an RGB permutation, then a horizontal flip, then ``rot`` 90° counter-clockwise turns.

    One draw serves a whole batch and every tensor of it, so the inputs, the pseudo-label and its mask stay aligned.
    Geometric parts act on the last two axes, the channel shuffle on axis ``-3``.
    """

    perm: tuple[int, int, int] = (0, 1, 2)
    flip: bool = False
    rot: int = 0

    @classmethod
    def draw(cls, generator: torch.Generator, channel_shuffle: bool = True) -> Augmentation:
        """A uniform draw: any of the 6 permutations (the identity if not ``channel_shuffle``), a flip with
        probability ½, 0–3 quarter turns. The generator advances the same way either way."""
        perm = tuple(int(i) for i in torch.randperm(3, generator=generator))
        flip = bool(torch.randint(2, (), generator=generator))
        rot = int(torch.randint(4, (), generator=generator))
        return cls(perm if channel_shuffle else (0, 1, 2), flip, rot)

    def apply(self, x: Tensor, channels: bool = True) -> Tensor:
        """The augmented ``x`` ``(..., C, H, W)``; ``channels=False`` for what has no RGB triplets (masks, RAW)."""
        if channels:
            x = shuffle_channels(x, self.perm)
        if self.flip:
            x = x.flip(-1)
        return torch.rot90(x, self.rot, dims=(-2, -1))

    def invert(self, x: Tensor, channels: bool = True) -> Tensor:
        """Undo :meth:`apply` (with the same ``channels``)."""
        x = torch.rot90(x, -self.rot, dims=(-2, -1))
        if self.flip:
            x = x.flip(-1)
        if channels:
            x = shuffle_channels(x, sorted(range(3), key=self.perm.__getitem__))
        return x


@torch.no_grad()
def ema_update(mean: nn.Module, live: nn.Module, alpha: float) -> None:
    """``mean``'s parameters ← α·mean + (1 − α)·live (eq. 3; α = 0 copies), its buffers ← ``live``'s.

    Buffers (BatchNorm statistics, counters) are copied rather than averaged: they are statistics of the data,
    not weights, and the counters are integers.
    """
    params = list(zip(mean.parameters(), live.parameters(), strict=True))
    if alpha == 0:
        for m, p in params:
            m.copy_(p)
    else:  # one fused kernel per device and dtype instead of one per tensor
        torch._foreach_lerp_([m for m, _ in params], [p.detach() for _, p in params], 1.0 - alpha)
    for m, b in zip(mean.buffers(), live.buffers(), strict=True):
        m.copy_(b)


def _check_ema_horizon(config: SmartHDRConfig, warmup_steps: int) -> None:
    """Warn when the teacher's averaging horizon ``1/(1 − α)`` is over a twentieth of the semi-supervised phase.

    The teacher is then mostly the student of many steps ago, and the student is pulled back towards it
    (``docs/strategies.md`` has the runs that showed it). The paper's α = 0.999 assumes a run of 200 epochs.
    """
    if config.total_steps is None or config.ema == 0:
        return
    semi = config.total_steps - warmup_steps
    if semi <= 0:
        warnings.warn(f"SmartHDR's warm-up ({warmup_steps} steps) lasts the whole run (total_steps="
                      f"{config.total_steps}): unlabelled_loss() will return 0 throughout; shorten warmup",
                      UserWarning, stacklevel=4)
        return
    horizon = float("inf") if config.ema == 1 else 1 / (1 - config.ema)
    if horizon > semi / 20:
        hint = f"; ema <= {1 - 20 / semi:.3g} keeps it within a twentieth" if semi > 20 else ""
        warnings.warn(f"SmartHDR's EMA teacher averages over about 1/(1 - ema) = {horizon:.0f} steps, but the "
                      f"semi-supervised phase has {semi}: the teacher's pseudo-labels will lag the student they "
                      f"train and pull it back; lower ema{hint}, or train longer", UserWarning, stacklevel=4)


class SmartHDR(Strategy):
    """SmartHDR's state and its two loss terms. Built by :func:`semkt_plugin.wrap` (``strategy="smarthdr"``).

    ``skb`` is accepted because every strategy is built alike; SmartHDR has no semantic prior and ignores it.
    """

    name = "smarthdr"
    settings_class = SmartHDRConfig
    extras = ("unlabelled",)

    def __init__(self, model: nn.Module, adapter: Adapter, config: SmartHDRConfig,
                 skb: nn.Module | None = None) -> None:
        super().__init__(model, adapter, config)
        core = unwrap_container(model)
        self.warmup_steps = config.warmup_steps  # a fractional warm-up without total_steps fails here, not mid-run
        _check_ema_horizon(config, self.warmup_steps)
        point = self._judge_point(adapter, config)
        channels = hook_channels(core, point)
        # copied before any semkt hook is on the model: a deepcopy copies hooks too
        try:
            teacher = copy.deepcopy(core)
        except Exception as err:
            raise TypeError(f"SmartHDR's teacher is a copy of the model, but copy.deepcopy({type(core).__name__}) "
                            f"failed: {err}") from err
        for p in teacher.parameters():
            p.grad = None
        self.teacher = teacher.requires_grad_(False).eval()
        self.judge = JudgeHead(channels)
        self.judge_ema = copy.deepcopy(self.judge).requires_grad_(False)
        self.hooks = FeatureHooks(core, [point])
        self.teacher_hooks = FeatureHooks(self.teacher, [point])
        self.generator = torch.Generator().manual_seed(config.seed)  # on the CPU: it draws a few integers a step
        # this step's values of the rows of TERMS, and its weighted terms as the loss sums them
        self._values: dict[str, Tensor | float] = {}
        self._summed: dict[str, Tensor | float] = {}
        self._follow_model()

    @staticmethod
    def _judge_point(adapter: Adapter, config: SmartHDRConfig) -> HookPoint:
        if not config.judge_point < len(adapter.hooks):
            raise ValueError(f"judge_point={config.judge_point} but adapter {adapter.name!r} has "
                             f"{len(adapter.hooks)} hook point(s); the judge reads one of them")
        return adapter.hooks[config.judge_point]

    @property
    def semi_supervised(self) -> bool:
        """Whether the warm-up is over: the ``loss()`` call that copies the student into the teacher has run."""
        return self._step > self.warmup_steps

    def train(self, mode: bool = True) -> SmartHDR:
        super().train(mode)
        self.teacher.eval()  # pseudo-labels come from the model as it infers: no dropout, running statistics
        return self

    def _sigma(self, judge: JudgeHead, hooks: FeatureHooks, size: tuple[int, int]) -> Tensor:
        """σ ``(B, 3, *size)``, float32, from the feature ``hooks`` captured in the last forward.

        The feature is detached: the judge reads it and does not train it, so L^k reaches the model only through
        its output.
        """
        feature = hooks.maps(aspect=size[0] / size[1])[0].detach().float()
        return judge(feature, size).float()

    def _follow_student(self, step: int) -> None:
        """After the warm-up, move the teacher and the EMA judge towards the student (copy them at first)."""
        if step >= self.warmup_steps:
            alpha = 0.0 if step == self.warmup_steps else self.config.ema
            ema_update(self.teacher, unwrap_container(self.model), alpha)
            ema_update(self.judge_ema, self.judge, alpha)

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """λ_k·L_s^k: the uncertainty loss of the model's output against the ground truth, σ from the judge.

        In training (grad enabled) it also counts the step and moves the teacher (see the module docstring). Call
        it after the forward that made ``output`` and before :meth:`unlabelled_loss`, which runs the model again.

        Args:
            output: what the model returned for this labelled batch (the adapter finds H_in in it).
            target: ground truth in H_in's domain, scale and shape.

        Returns:
            Scalar; add it to the model's own loss. Components are in :attr:`last_losses`.
        """
        cfg = self.config
        try:
            _, hs, ts, step = self.open(output, target, next(self.judge.parameters()))
            try:
                sigma = self._sigma(self.judge, self.hooks, tuple(hs.shape[-2:]))
            except RuntimeError as err:
                raise RuntimeError(f"{err} SmartHDR: call skt.loss(output, target) right after the forward that "
                                   "made output, and before skt.unlabelled_loss(...), which runs the model "
                                   "again.") from err
            k_s = uncertainty_loss(hs, ts, sigma, None, cfg.sigma_min, cfg.beta)
            if torch.is_grad_enabled():
                self._follow_student(step)
        finally:
            self.hooks.clear()
        self._values = {"k_s": k_s}
        self._summed = {"k_s": TERMS[0].weight_in(cfg) * k_s.detach()}
        self._record(0.0, 0.0, 0.0, 0.0)  # until after_loss: the unlabelled components of the step are 0
        return TERMS[0].weight_in(cfg) * k_s

    def _strong_input(self, x: Any, aug: Augmentation) -> Any:
        """The strong view of one positional input: images (``ndim >= 4``) are augmented, their RGB triplets
        shuffled unless the adapter is RAW or the channels are not triplets; anything else passes as is."""
        if not (isinstance(x, Tensor) and x.ndim >= 4):
            return x
        return aug.apply(x, channels=self.adapter.domain != "raw" and x.shape[-3] % 3 == 0)

    def after_loss(self, unlabelled: Sequence[Any] | None = None, **extras: Any) -> Tensor:
        """The loop contract's call after :meth:`loss`: :meth:`unlabelled_loss` of the batch's ``unlabelled``
        inputs, to add to the loss."""
        if unlabelled is None:
            raise TypeError("SmartHDR trains on an unlabelled batch each step: skt.after_loss(unlabelled=[...]) with "
                            "the model's positional inputs for it")
        return self.unlabelled_loss(unlabelled)

    def unlabelled_loss(self, ldrs: Sequence[Any]) -> Tensor:
        """λ_u·(L_u^r + λ_k·L_u^k) on a batch without ground truth: the student against the teacher's masked
        pseudo-label.

        During the warm-up it is a zero on the plugin's device and runs nothing: adding it changes no loss and no
        gradient. Afterwards the teacher labels ``ldrs`` as given; the patch and pixel masks from the EMA judge's
        σ drop what the teacher is unsure of; the student runs on a strong view (one :class:`Augmentation` for
        the batch), against the pseudo-label and mask transformed alike. Needs grad enabled (it trains).

        Args:
            ldrs: the model's positional inputs for the unlabelled batch, e.g. AHDR's three ``(B, 6, H, W)``
                frames; it is called as ``model(*ldrs)``.

        Returns:
            Scalar; add it to the step's loss. ``u_l1``, ``k_u`` and ``kept`` (the share of pseudo-label pixels
            used) join :attr:`last_losses`.
        """
        cfg = self.config
        param = next(self.judge.parameters())
        if not self.semi_supervised:
            self._record(0.0, 0.0, 0.0, 0.0)
            return torch.zeros((), device=param.device)
        if not torch.is_grad_enabled():
            raise RuntimeError("skt.unlabelled_loss trains the student: call it with grad enabled, not under "
                               "torch.no_grad()")
        try:
            weak = [x.detach() if isinstance(x, Tensor) else x for x in ldrs]
            # the hooks capture only with grad enabled; nothing in the teacher requires grad, so no graph is kept
            pseudo = select_output(self.teacher(*weak), self.adapter.output).detach()
            with torch.no_grad():
                aug = (Augmentation.draw(self.generator, self.adapter.domain != "raw") if cfg.strong_augment
                       else Augmentation())
                pseudo = self._strong_input(pseudo, aug)
                target = self.transfer(pseudo, what="the teacher's pseudo-label")
                h, w = target.shape[-2:]
                size = (w, h) if aug.rot % 2 else (h, w)  # the teacher's view, before the quarter turns
                sigma_t = self._sigma(self.judge_ema, self.teacher_hooks, size)
                mask = patch_mask(sigma_t, cfg.patch, cfg.patch_threshold) * pixel_mask(sigma_t, cfg.pixel_threshold)
                mask = aug.apply(mask, channels=False)
            h_in = select_output(self.model(*[self._strong_input(x, aug) for x in weak]), self.adapter.output)
            if h_in.shape != pseudo.shape:
                raise ValueError(f"the model's output on the augmented view is {tuple(h_in.shape)} but the augmented "
                                 f"pseudo-label is {tuple(pseudo.shape)} ({aug.rot} quarter turn(s)): the model does "
                                 "not map a turned input to a turned output (it pads non-square inputs?); feed "
                                 "square crops or set strong_augment=False")
            check_pair(h_in, pseudo, param)
            hs = self.transfer(h_in)
            sigma_s = self._sigma(self.judge, self.hooks, tuple(hs.shape[-2:]))
            with torch.autocast(hs.device.type, enabled=False):
                u_l1 = masked_mean((hs - target).abs(), mask)
            k_u = uncertainty_loss(hs, target, sigma_s, mask, cfg.sigma_min, cfg.beta)
        finally:
            self.hooks.clear()
            self.teacher_hooks.clear()
        term = cfg.lambda_u * (u_l1 + cfg.lambda_k * k_u)
        self._record(u_l1.detach(), k_u.detach(), mask.mean(), term.detach())
        return term

    def _record(self, u_l1: Tensor | float, k_u: Tensor | float, kept: Tensor | float, term: Tensor | float) -> None:
        """Set the unlabelled components in :attr:`last_losses`; ``total`` is the step's weighted sum."""
        self._values.update(u_l1=u_l1, k_u=k_u, kept=kept)
        self._summed["u"] = term
        self._last = reported(TERMS, self._values, self._summed)

    def get_extra_state(self) -> dict[str, Any]:
        return {**super().get_extra_state(), "generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    @classmethod
    def hook_plan(cls, adapter: Adapter, config: SmartHDRConfig) -> list[tuple[str, str]]:
        """The one read hook on the model, where the judge reads its feature (the teacher's twin is not listed:
        the teacher is the plugin's own copy)."""
        return [(cls._judge_point(adapter, config).path, "read by the judge")]

    def _remove_hooks(self) -> None:
        self.hooks.remove()
        self.teacher_hooks.remove()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, warmup_steps={self.warmup_steps}, ema={self.config.ema}"
