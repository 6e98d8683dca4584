"""Distillation losses of §3.3: L_content (eq. 5) and the semantic-guided histogram loss L_color (eqs. 6–10).

Histogram kernels. The paper writes a Gaussian KDE with σ = 400 (eq. 7); on ``[0, 1]`` data that kernel is flat, so
the number must come from the public SKF code of this loss, where 400 is the *slope* of a sigmoid-difference
window: a pixel ``x`` adds ``sigmoid(400·(x − c + δ/2)) − sigmoid(400·(x − c − δ/2))`` to bin ``c`` (``δ`` the bin
width). That is our default (``kernel="sigmoid"``); ``kernel="gaussian"`` is eq. 7 with a bandwidth given in
``[0, 1]`` units (default one bin width).

Masks weight pixels. A region's histogram is ``Σ_j m_j K(x_j, c) / Σ_j m_j`` with ``m`` its map in ``[0, 1]``:
a pixel outside the region has weight 0 and adds nothing anywhere. (Multiplying the image by the mask, as eq. 10
reads literally, would pile every outside pixel into bin 0 and make the loss mostly about region size.)

Scale. Each histogram is normalised to sum 1, so regions of any size weigh alike. Eq. 9's squared bin differences
are averaged over the bins (as SKF's L1 is) rather than summed: summed, λ2 = 100 gives L_color a gradient on the
ORM output about ten times that of the ORM's own μ-law L1 (measured on the example AHDR), and it drowns the task;
averaged, it is a few per cent of it. Then channels are averaged, eq. 10 averages the regions that are not empty
(mask mass below ``min_mass`` pixels is empty), and the batch is averaged.

Memory. The kernel values are ``B·C·P·bins`` numbers (16 × 3 × 256² × 256 floats = 3.2 GB), so they are made
``chunk`` pixels at a time under activation checkpointing: the forward keeps only the per-chunk histograms and
the backward recomputes one chunk at a time. No Python loop runs over images, regions or channels. The sigmoid
window is a difference of soft steps at consecutive bin edges, so a soft CDF at the ``bins + 1`` edges is
accumulated and differenced once: one subtraction and one sigmoid per pixel, channel and edge.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

Kernel = Literal["sigmoid", "gaussian"]


def bin_centers(bins: int = 256, low: float = 0.0, high: float = 1.0, device=None) -> Tensor:
    """Eq. 6: ``c_i = low + (high − low)/bins · (i + 0.5)``, shape ``(bins,)``."""
    return low + (high - low) / bins * (torch.arange(bins, device=device, dtype=torch.float32) + 0.5)


def kernel_weights(x: Tensor, centers: Tensor, kernel: Kernel = "sigmoid", slope: float = 400.0,
                   bandwidth: float | None = None) -> Tensor:
    """How much each value adds to each bin.

    Args:
        x: values, any shape ``(*)``.
        centers: ``(K,)`` evenly spaced bin centres.
        kernel: ``"sigmoid"`` (difference of sigmoids of slope ``slope`` at the bin edges) or ``"gaussian"``
            (``exp(−(x − c)² / bandwidth²)``, eq. 7).
        slope: sigmoid slope.
        bandwidth: Gaussian bandwidth in value units; ``None`` is one bin width.

    Returns:
        ``(*, K)``.
    """
    width = float(centers[1] - centers[0]) if centers.numel() > 1 else 1.0
    d = x.unsqueeze(-1) - centers
    if kernel == "sigmoid":
        return torch.sigmoid(slope * (d + width / 2)) - torch.sigmoid(slope * (d - width / 2))
    if kernel == "gaussian":
        bw = width if bandwidth is None else bandwidth
        return torch.exp(-(d / bw) ** 2)
    raise ValueError(f"unknown histogram kernel {kernel!r}; use 'sigmoid' or 'gaussian'")


def region_histograms(image: Tensor, regions: Tensor, bins: int = 256, kernel: Kernel = "sigmoid",
                      slope: float = 400.0, bandwidth: float | None = None, chunk: int = 4096,
                      min_mass: float = 1.0) -> tuple[Tensor, Tensor]:
    """Normalised soft histograms of every region and channel.

    Args:
        image: ``(B, C, H, W)`` values, clamped to ``[0, 1]`` (differentiable inside it).
        regions: ``(B, N, H, W)`` region maps in ``[0, 1]`` (not differentiated).
        bins, kernel, slope, bandwidth: see :func:`kernel_weights`.
        chunk: pixels per checkpointed chunk; memory is about ``4·B·C·chunk·bins`` bytes, times 3 in backward.
        min_mass: regions whose mask sums to less than this many pixels are empty.

    Returns:
        ``(B, N, C, bins)`` histograms summing to 1 over bins (0 for empty regions), and ``(B, N)`` bool: which
        regions are non-empty.
    """
    if image.shape[0] != regions.shape[0] or image.shape[-2:] != regions.shape[-2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and regions {tuple(regions.shape)} must share batch and spatial size; "
            "resize the region maps to the image first"
        )
    with torch.autocast(image.device.type, enabled=False):
        # (B, P, C): kernel values come out (B, P, C, K), ready for bmm; values past the bins count in the end bins
        x = image.float().clamp(0, 1).flatten(2).transpose(1, 2)
        m = regions.detach().float().flatten(2)  # (B, N, P)
        centers = bin_centers(bins, device=x.device)
        if kernel == "sigmoid":
            # sigmoid(s(x − c + δ/2)) − sigmoid(s(x − c − δ/2)) is a difference of one soft step at consecutive bin
            # edges, so accumulate the soft CDF at the bins + 1 edges and difference once: a quarter of the work
            half = (centers[1] - centers[0]) / 2 if bins > 1 else torch.tensor(0.5)
            edges = slope * torch.cat([centers - half, centers[-1:] + half])

            def part(xc: Tensor, mc: Tensor) -> Tensor:
                return torch.einsum("bnp,bpce->bnce", mc, torch.sigmoid(slope * xc.unsqueeze(-1) - edges))
        else:
            def part(xc: Tensor, mc: Tensor) -> Tensor:
                return torch.einsum("bnp,bpck->bnck", mc, kernel_weights(xc, centers, kernel, slope, bandwidth))

        acc = x.new_zeros(x.shape[0], m.shape[1], x.shape[2], bins + (kernel == "sigmoid"))
        for start in range(0, x.shape[1], chunk):
            xc, mc = x[:, start:start + chunk], m[..., start:start + chunk]
            if torch.is_grad_enabled() and xc.requires_grad:
                acc = acc + checkpoint(part, xc, mc, use_reentrant=False)
            else:
                acc = acc + part(xc, mc)
        hist = acc[..., :-1] - acc[..., 1:] if kernel == "sigmoid" else acc
        mass = m.sum(-1)  # (B, N)
        valid = mass >= min_mass
        return hist / mass.clamp_min(min_mass)[..., None, None] * valid[..., None, None], valid


def histogram_loss(student: Tensor, teacher: Tensor, regions: Tensor, bins: int = 256,
                   kernel: Kernel = "sigmoid", slope: float = 400.0, bandwidth: float | None = None,
                   chunk: int = 4096, min_mass: float = 1.0) -> Tensor:
    """L_color (eqs. 9–10): per-region, per-channel histogram MSE between student and (detached) teacher.

    Args:
        student: ``(B, C, H, W)`` T(H_in), differentiable.
        teacher: ``(B, C, H, W)`` Ĥ_s; used as a target (no gradient).
        regions: ``(B, N, H, W)`` maps in ``[0, 1]``.
        Others: see :func:`region_histograms`.

    Returns:
        Scalar: mean over images of the mean over non-empty regions of ``(1/C) Σ_c (1/K) Σ_i (H^S − H^T)²``
        (``K`` bins); 0 for an image without a non-empty region.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in shape")
    opts = dict(bins=bins, kernel=kernel, slope=slope, bandwidth=bandwidth, chunk=chunk, min_mass=min_mass)
    hs, valid = region_histograms(student, regions, **opts)
    with torch.no_grad():
        ht, _ = region_histograms(teacher.detach(), regions, **opts)
    per_region = (hs - ht).pow(2).mean(-1).mean(-1)  # (B, N): mean over bins, then channels
    per_image = (per_region * valid).sum(-1) / valid.sum(-1).clamp_min(1)
    return per_image.mean()


class HistogramLoss(nn.Module):
    """Module form of :func:`histogram_loss`."""

    def __init__(self, bins: int = 256, kernel: Kernel = "sigmoid", slope: float = 400.0,
                 bandwidth: float | None = None, chunk: int = 4096, min_mass: float = 1.0) -> None:
        super().__init__()
        self.opts = dict(bins=bins, kernel=kernel, slope=slope, bandwidth=bandwidth, chunk=chunk, min_mass=min_mass)

    def forward(self, student: Tensor, teacher: Tensor, regions: Tensor) -> Tensor:
        return histogram_loss(student, teacher, regions, **self.opts)


def content_loss(student: Tensor, teacher: Tensor, perceptual: Callable[[Tensor], list[Tensor]] | None = None,
                 weight: float = 1e-2, student_features: list[Tensor] | None = None) -> Tensor:
    """L_content (eq. 5): ``|T(H_in) − Ĥ_s|₁ + weight · Σ_l |φ_l(T(H_in)) − φ_l(Ĥ_s)|₁`` with a detached teacher.

    Args:
        student: ``(B, 3, H, W)`` T(H_in).
        teacher: ``(B, 3, H, W)`` Ĥ_s (target).
        perceptual: feature extractor returning a list of maps, or ``None`` for the L1 term alone.
        weight: λ of eq. 5.
        student_features: ``perceptual(student)`` when the caller already has it (the SKB's pass over the
            student, which also gives the teacher's priors), so it is not computed twice.

    Returns:
        Scalar.
    """
    teacher = teacher.detach()
    loss = F.l1_loss(student, teacher)
    if perceptual is not None and weight:
        with torch.no_grad():
            target = perceptual(teacher)
        if student_features is None:
            student_features = perceptual(student)
        loss = loss + weight * sum(F.l1_loss(a, b) for a, b in zip(student_features, target))
    return loss
