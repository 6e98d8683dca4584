"""SKAM, the Semantic Knowledge Alignment Module (§3.4, eqs. 11–12).

For each hooked ORM stage k: an encoder maps the student feature F_S^k, another the teacher feature F_T^k, into
one latent space; a random binary mask I^M (``ratio`` of it 1) takes the teacher's latent where it is 1 and the
student's where it is 0; a decoder maps the mix back to F_T^k's space; ``L_feat^k = MSE(F_E^k, F_T^k)``, and
``L_feat`` is the mean over stages. The student has to supply what the mask hides, so its feature learns to carry
the teacher's semantics without being forced onto it (ORM and SPGRM live in different domains). F_T^k is a target:
no gradient reaches the teacher.

Two choices decide whether the student has to supply anything (docs/method.md has the measurements):

- The mask. Drawn per latent element (``mask="element"``), every pixel shows the decoder about half of the
  teacher's latent channels, so it can rebuild F_T from the teacher alone and the student's gradient is mostly
  noise. ``mask="spatial"`` hides whole ``patch × patch`` blocks across all channels, as MAE and MGD hide
  positions: where the teacher is hidden, only the student's latent is there to decode from.
- The target's scale. ``norm="image"`` divides F_T by its root mean square over channels and pixels, per image:
  λ_feat then means the same whatever the teacher's feature scale, and weak channels stay weak.
  ``norm="channel"`` standardises each channel, which multiplies the error of near-constant teacher channels
  by their inverse standard deviation (``docs/method.md``, "Calibration").

Masks come from a generator owned by the module and saved in its state, so a resumed run draws the same masks.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...cuda_graphs import CudaGraphed
from ...validation import check

MaskKind = Literal["element", "spatial"]
TargetNorm = Literal["image", "channel", "none"]


def draw_mask(shape: Sequence[int], ratio: float, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, kind: MaskKind = "element", patch: int = 1) -> Tensor:
    """A random binary mask I^M with ``P(1) = ratio``; ``1 − I^M`` is its complement.

    Args:
        shape: ``(B, C, H, W)``.
        ratio: share of teacher latent in the mix, in ``[0, 1]``.
        generator: random source (on ``device``).
        kind: ``"element"``: each element drawn on its own; ``"spatial"``: one draw per ``patch × patch`` block,
            shared by all channels.
        patch: block side of a spatial mask (blocks at the right and bottom edges are cut).

    Returns:
        A float tensor of values in {0, 1}: of ``shape``, or for ``"spatial"`` of ``(B, 1, H, W)``, which
        broadcasts to it.
    """
    if kind == "element":
        return (torch.rand(tuple(shape), generator=generator, device=device) < ratio).float()
    if kind == "spatial":
        b, c, h, w = shape
        coarse = torch.rand((b, 1, -(-h // patch), -(-w // patch)), generator=generator, device=device) < ratio
        return coarse.float().repeat_interleave(patch, 2).repeat_interleave(patch, 3)[..., :h, :w]
    raise ValueError(f"unknown mask kind {kind!r}; use 'element' or 'spatial'")


def normalise_target(feature: Tensor, norm: TargetNorm = "image", eps: float = 1e-5) -> Tensor:
    """Scale a teacher feature ``(B, C, H, W)`` before it is a target.

    ``"image"``: divide by its root mean square over ``C, H, W``, per image. ``"channel"``: standardise each
    channel of each image (zero mean, unit variance). ``"none"``: as it is.
    """
    if norm == "image":
        mean_square = torch.linalg.vector_norm(feature, dim=(1, 2, 3), keepdim=True).square() / feature[0].numel()
        return feature * (mean_square + eps).rsqrt()
    if norm == "channel":
        mean, var = feature.mean((2, 3), keepdim=True), feature.var((2, 3), keepdim=True, unbiased=False)
        return (feature - mean) / (var + eps).sqrt()
    if norm == "none":
        return feature
    raise ValueError(f"unknown SKAM target norm {norm!r}; use 'image', 'channel' or 'none'")


class AlignmentStage(nn.Module):
    """One SKAM stage: student/teacher encoders into ``latent`` channels, masked mix, decoder to the teacher.

    Shapes:
        student ``(B, C_s, h, w)``, teacher ``(B, C_t, H', W')``, mask ``(B, latent, h', w')`` or ``(B, 1, h',
        w')`` (:func:`draw_mask`: 1 takes the teacher's latent, 0 the student's): both features are brought to the
        mask's size (:func:`align_size`; the student by average pooling, the teacher bilinearly) → loss scalar.
    """

    def __init__(self, student_channels: int, teacher_channels: int, latent: int = 32,
                 norm: TargetNorm = "image") -> None:
        super().__init__()
        self.student_channels, self.norm = student_channels, norm
        # point-wise encoders: the mix is per element, so spatial context is the decoder's job (as in MGD)
        self.enc_s = nn.Conv2d(student_channels, latent, 1)
        self.enc_t = nn.Conv2d(teacher_channels, latent, 1)
        self.dec = nn.Sequential(
            nn.Conv2d(latent, latent, 3, padding=1), nn.ReLU(), nn.Conv2d(latent, teacher_channels, 3, padding=1)
        )

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
        teacher = teacher.detach()
        size = mask.shape[-2:]
        if student.shape[-2:] != size:
            student = F.adaptive_avg_pool2d(student, size)
        if teacher.shape[-2:] != size:
            teacher = F.interpolate(teacher, size=size, mode="bilinear", align_corners=False)
        # the teacher's features grow as it trains; unnormalised, that growth, not the semantics, would set how
        # hard the ORM's features are pulled
        teacher = normalise_target(teacher, self.norm)
        # eq. 11's I^M·t + (1 − I^M)·s in one pass (and each gradient in one); exact for a mask of 0s and 1s
        latent_s, latent_t = self.enc_s(student), self.enc_t(teacher)
        dtype = torch.promote_types(latent_s.dtype, latent_t.dtype)  # autocast may make either lower precision
        mixed = torch.lerp(latent_s.to(dtype), latent_t.to(dtype), mask.to(dtype))
        return F.mse_loss(self.dec(mixed), teacher)


class SKAM(nn.Module):
    """All alignment stages, one per hook point; stage ``k`` pairs with teacher feature ``pairing[k]``.

    Args:
        student_channels: channels of each hooked ORM feature.
        teacher_channels: channels of the teacher features.
        num_teacher: how many teacher features there are (SPGRM: 3).
        latent: latent width.
        ratio: mask ratio.
        seed: seed of the mask generator.
        mask, patch: mask kind and block side (:func:`draw_mask`).
        norm: target scaling (:func:`normalise_target`).
        reduction: ``"mean"`` or ``"sum"`` over stages.
        cuda_graphs: on a GPU, replay each stage from CUDA graphs (:class:`~semkt_plugin.cuda_graphs.CudaGraphed`).
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: int, *, num_teacher: int = 3,
                 latent: int = 32, ratio: float = 0.5, seed: int = 0, mask: MaskKind = "spatial", patch: int = 8,
                 norm: TargetNorm = "image", reduction: Literal["mean", "sum"] = "mean",
                 cuda_graphs: bool = False) -> None:
        super().__init__()
        check("latent", latent, kind=int, at_least=1)
        check("ratio", ratio, at_least=0.0, at_most=1.0)
        check("mask", mask, one_of=("spatial", "element"))
        check("patch", patch, kind=int, at_least=1)
        check("norm", norm, one_of=("image", "channel", "none"))
        check("reduction", reduction, one_of=("mean", "sum"))
        self.stages = nn.ModuleList(AlignmentStage(c, teacher_channels, latent, norm) for c in student_channels)
        self.graphed = [CudaGraphed(stage, enabled=cuda_graphs) for stage in self.stages]  # not submodules
        self.pairing = spread(len(student_channels), num_teacher)
        self.ratio, self.latent, self.seed = ratio, latent, seed
        self.mask, self.patch, self.reduction = mask, patch, reduction
        self.generator: torch.Generator | None = None
        self._pending_state: Tensor | None = None

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device).manual_seed(self.seed)
            if self._pending_state is not None:
                self.generator.set_state(self._pending_state)
                self._pending_state = None
        return self.generator

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        """Mean (or sum) of the stages' MSE: ``student`` in hook order, ``teacher`` the teacher features."""
        if len(student) != len(self.stages):
            raise ValueError(f"SKAM has {len(self.stages)} stages but got {len(student)} student features")
        total = student[0].new_zeros((), dtype=torch.float32)
        for k, (stage, s, j) in enumerate(zip(self.stages, student, self.pairing)):
            if s.shape[1] != stage.student_channels:
                raise ValueError(
                    f"SKAM stage expected {stage.student_channels} channels, the hook captured {s.shape[1]}; "
                    "set HookPoint(channels=...) in the adapter"
                )
            mask = draw_mask((s.shape[0], self.latent, *align_size(s, teacher[j])), self.ratio,
                             self._generator(s.device), s.device, self.mask, self.patch)
            total = total + self.graphed[k](s, teacher[j].detach(), mask).float()
        return total / len(self.stages) if self.reduction == "mean" else total

    def get_extra_state(self) -> dict[str, Any]:
        state = self.generator.get_state() if self.generator is not None else self._pending_state
        return {"generator": state}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator, self._pending_state = None, state.get("generator")


def align_size(student: Tensor, teacher: Tensor) -> tuple[int, int]:
    """Where a stage aligns: at the student feature's size, or at the teacher's where that is coarser in both sides
    (a slim teacher, ``SKTConfig.teacher_stride``): the student is then average-pooled rather than the teacher's
    coarse feature interpolated, so the stage costs what the teacher's resolution costs."""
    (hs, ws), (ht, wt) = student.shape[-2:], teacher.shape[-2:]
    return (ht, wt) if ht < hs and wt < ws else (hs, ws)


def spread(n: int, m: int) -> list[int]:
    """Pair ``n`` stages with ``m`` teacher features, shallow with shallow, deep with deep (last with last)."""
    if n == 1:
        return [m - 1]
    return [round(i * (m - 1) / (n - 1)) for i in range(n)]
