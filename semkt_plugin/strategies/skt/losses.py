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
ORM output that drowns the ORM's own μ-law L1 (``docs/method.md``, "The histogram loss"). Then channels are
averaged, eq. 10 averages the regions that are not empty
(mask mass below ``min_mass`` pixels is empty), and the batch is averaged.

Cost. The dense kernel is ``bins`` numbers per pixel, channel and region (16 × 3 × 256² × 256 × 32 of them for
a batch of 16 with 32 regions); the loss needs far fewer. A value's window is below 1e-9 beyond ``half`` bins
of its own (14 for the default slope and bins: the sigmoid's tail falls as ``exp(−slope·distance)``, the
Gaussian's as ``exp(−(distance/bandwidth)²)``), and within that band what it adds to each bin is a smooth
function of where it lies inside its own bin, the same for every bin (edges are evenly spaced). That function is
fitted once, in float64, by Chebyshev series of at most 10 terms, to within 1e-9 (a sharp kernel has each bin cut
into a few equal parts, each with its own series). So every nonzero region-map value adds itself times 10
polynomial values of its pixel to a table indexed by (region, channel, bin, part), and one small matrix product
with the coefficients turns that table into each bin's band, which overlap into the histogram: a few dozen flops
and a 10-number scatter per region–pixel pair and channel, where the dense kernel costs 256 sigmoids per pixel and
channel and a region × bins product. The backward is written by hand (a ``torch.autograd.Function``): the
gradient's band around each bin, times the derivative of the series, gives the series of ``∂L/∂x`` per table
cell, and each value sums its cell's series at its position (cells and positions kept from the forward for up to
4 region–pixel pairs per pixel; denser maps are scanned again). Nothing of the size of the pixels times the bins
is made, nothing is recomputed under checkpointing, and the student and the teacher (without gradient) go through
one pass into one table: the loss needs only the difference of their histograms, and that is linear in the table.

What it assumes. (1) Region maps are sparse: time grows with their nonzero values, so hard partitions and SKB
masks (zero outside their box) cost about one pass over the pixels, while dense soft maps cost one pass per map
(still exact; ``chunk`` bounds the memory either way). (2) 1e-9 is well below what float32 resolves in a bin, so
the left-out tails and the series' error do not show: in float32 the loss and its gradient agree with a float64
evaluation of the dense kernel to about 1e-6 (``tests/test_histogram.py``). Positions within a bin are float32
too, which bounds how sharp a kernel can be: one that would need bins cut finer than ``2^24`` parts in all is
refused.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

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


_TOL = 1e-9  # kernel values left out, and the error of their polynomials: far below float32's resolution
_MAX_TERMS = 10  # beyond this, cut bins into more pieces rather than add terms


class _Plan(NamedTuple):
    """A histogram kernel as a short Chebyshev series in where a value lies inside its bin.

    A value ``x`` in bin ``b``, at ``φ = x·bins − b ∈ [0, 1]``, adds ``K_j(φ)`` to bin ``b + j − half``
    (``j < band = 2·half + 1``) and less than ``_TOL`` to any other bin (edges and centres are evenly spaced, so
    ``K_j`` does not depend on ``b``). Each bin is cut into ``pieces`` equal parts; on part ``q``,
    ``K_j = Σ_d coeffs[q, j, d]·S_d(ψ)`` to within ``_TOL``, with ``ψ ∈ [−1, 1]`` the position inside the part
    and ``S_d = (−1)^⌊d/2⌋·T_d`` the Chebyshev polynomials with signs that make their recurrence one fused
    multiply-add: ``S_d = S_{d−2} ∓ 2ψ·S_{d−1}`` (− for even ``d``).
    """

    bins: int
    half: int
    pieces: int
    coeffs: Tensor  # (pieces, band, terms) float64
    slopes: Tensor  # (pieces, band, terms − 1) float64: ∂K_j/∂x = Σ_k slopes[q, j, k]·U_k(ψ), U: second kind

    @property
    def band(self) -> int:
        return 2 * self.half + 1

    @property
    def terms(self) -> int:
        return self.coeffs.shape[-1]

    def cells(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(*)`` values in ``[0, 1]`` → ``(*)`` long part ``b·pieces + q`` and ``(*)`` position ``ψ`` in it."""
        pos = x * (self.bins * self.pieces)
        # truncation is floor for x ≥ 0; the clamp also keeps a NaN's cell in range (its histogram turns NaN)
        cell = pos.long().clamp_(0, self.bins * self.pieces - 1)
        return cell, pos.sub_(cell).mul_(2).sub_(1)

    def basis(self, psi: Tensor, weight: Tensor, out: Tensor) -> Tensor:
        """``weight·S_d(ψ)`` for every term ``d``, written to ``out``: ``(terms, *)`` for ``(*)`` positions and
        weights."""
        out[0] = weight
        torch.mul(psi, weight, out=out[1])
        twice = psi * 2
        for d in range(2, self.terms):
            torch.addcmul(out[d - 2], twice, out[d - 1], value=-1 if d % 2 == 0 else 1, out=out[d])
        return out

    def derivative(self, psi: Tensor, coeff: Tensor) -> Tensor:
        """``Σ_k coeff[k]·U_k(ψ)`` by Clenshaw's recurrence: ``(*)`` for ``(*)`` positions and
        ``(terms − 1, *)`` coefficients."""
        twice = psi * 2
        after, out = torch.zeros_like(psi), coeff[-1].clone()
        for k in range(coeff.shape[0] - 2, -1, -1):
            after, out = out, torch.addcmul(coeff[k], twice, out).sub_(after)
        return out


def _chebyshev(f: Callable[[Tensor], Tensor], pieces: int, terms: int) -> tuple[Tensor, float]:
    """Chebyshev interpolants of ``f`` on ``pieces`` equal parts of ``[0, 1]`` and their largest error.

    Args:
        f: ``(*)`` float64 points of ``[0, 1]`` → ``(*, J)`` values.
    Returns:
        ``(pieces, J, terms)`` coefficients, and the largest error over a fine grid of every part.
    """
    degree = torch.arange(terms, dtype=torch.float64)
    nodes = torch.cos(math.pi * (degree + 0.5) / terms)
    check = torch.linspace(-1, 1, 257, dtype=torch.float64)
    start = torch.arange(pieces, dtype=torch.float64)[:, None]
    on = lambda psi: (start + (psi + 1) / 2) / pieces  # noqa: E731  (pieces, len(psi)) points of [0, 1]
    coeffs = torch.einsum("dn,qnj->qjd", torch.cos(degree[:, None] * nodes.acos()), f(on(nodes))) * (2 / terms)
    coeffs[..., 0] /= 2
    fitted = torch.einsum("qjd,dn->qnj", coeffs, torch.cos(degree[:, None] * check.acos()))
    return coeffs, float((fitted - f(on(check))).abs().max())


@functools.lru_cache(maxsize=8)
def _plan(bins: int, kernel: str, slope: float, bandwidth: float | None) -> _Plan:
    """Fit :class:`_Plan` to :func:`kernel_weights`, in float64: the fewest pieces (a power of 2) whose series
    need at most ``_MAX_TERMS`` terms."""
    width = 1.0 / bins
    bw = width if bandwidth is None else bandwidth
    if slope <= 0 or bw <= 0:
        raise ValueError(f"the histogram kernel needs a positive slope and bandwidth, got {slope} and {bandwidth}")
    # the band ends where every bin past it gets less than _TOL from any value in bin b (the same b that picks
    # the series, so rounding in floor(x·bins) moves both alike)
    if kernel == "sigmoid":
        # k bins past b the window is below exp(−slope·width·(k − 1))
        half = math.ceil(math.log(1 / _TOL) / (slope * width))
    elif kernel == "gaussian":
        # k bins past b the distance to the centre is at least (k − 1/2)·width
        half = math.ceil(math.sqrt(math.log(1 / _TOL)) * bw / width - 0.5)
    else:
        raise ValueError(f"unknown histogram kernel {kernel!r}; use 'sigmoid' or 'gaussian'")
    half = min(half, bins - 1)  # no more than every bin
    centers = (torch.arange(2 * half + 1, dtype=torch.float64) + 0.5) * width  # bins b − half … b + half, b = half

    def f(phi: Tensor) -> Tensor:
        return kernel_weights((phi + half) * width, centers, kernel, slope, bw)

    pieces = 1
    while bins * pieces <= 2 ** 24:  # finer parts than float32 resolves on [0, 1] would be no help
        for terms in range(2, _MAX_TERMS + 1):
            coeffs, error = _chebyshev(f, pieces, terms)
            if error <= _TOL:
                # d/dψ T_d = d·U_{d−1}, and dψ/dx = 2·bins·pieces
                slopes = coeffs[..., 1:] * torch.arange(1, terms) * (2 * bins * pieces)
                signs = torch.tensor([(-1.0) ** (d // 2) for d in range(terms)], dtype=torch.float64)
                return _Plan(bins, half, pieces, coeffs * signs, slopes)
        pieces *= 2
    raise ValueError(f"a {kernel} kernel this sharp (slope {slope}, bandwidth {bandwidth}, {bins} bins) is finer "
                     "than float32 resolves")


def _entries(m: Tensor, rows: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """The nonzero entries of region maps ``m`` ``(B, N, P)``, fewer than ``2·rows`` at a time: ``(E,)`` flat
    pixel ``b·P + p``, ``(E,)`` flat region ``b·N + n`` and ``(E,)`` weight ``m[b, n, p]``.

    The maps are scanned in memory order (region by region, or pixel by pixel when stored channels-last, as a
    permuted one-hot is: no copy either way), ``rows·N`` values at a time: about ``rows`` entries when each pixel
    lies in one region, at most ``rows·N``, so the index never grows with the image or the batch.
    """
    B, N, P = m.shape
    pixel_major = not m.is_contiguous() and m.transpose(1, 2).is_contiguous()
    flat = (m.transpose(1, 2) if pixel_major else m).reshape(-1)
    span = rows * max(N, 1)
    for lo in range(0, flat.numel(), span):
        idx = flat[lo:lo + span].nonzero().squeeze(1).add_(lo)
        if not idx.numel():
            continue
        for part in idx.tensor_split(max(1, idx.numel() // rows)):
            if pixel_major:  # part = (b·P + p)·N + n
                pix = part // N
                region = (pix // P * N).add_(part).sub_(pix * N)
            else:  # part = (b·N + n)·P + p
                region = part // P
                pix = (region // N * P).add_(part).sub_(region * P)
            yield pix, region, flat.index_select(0, part)


class _RegionSums(torch.autograd.Function):
    """``Σ_p m[b, n, p]·(K(x[b, c, p], k) − K(target[b, c, p], k))`` for every region, channel and bin: the sums
    of an image (differentiable) less those of a target (not, and 0 when ``None``), in one pass.

    Forward: every nonzero ``m[b, n, p]`` adds ``m·S_d(ψ)`` (see :class:`_Plan`) of each channel's value, and
    subtracts that of the target's, in a moment table indexed by term, (region, channel) and part of a bin (the
    histograms are linear in it, and the loss needs only their difference); the coefficients turn the table into each
    bin's band of ``2·half + 1`` bins, which overlap into the histogram. Backward: the gradient's band around each
    bin times the slopes gives, per table cell, the series of ``∂L/∂x``, which Clenshaw's recurrence sums at each
    value.
    """

    #: entries per pixel up to which the forward keeps, for the backward, each entry's table cells and positions
    #: (48 bytes an entry for 3 channels); denser maps are scanned again instead
    KEEP = 4

    @staticmethod
    def forward(ctx, x: Tensor, target: Tensor | None, m: Tensor, plan: _Plan, rows: int) -> Tensor:
        """``x``, ``target``: ``(B, C, P)`` in ``[0, 1]`` (``target`` may be ``None``); ``m``: ``(B, N, P)``.
        Returns ``(B, N, C, bins)``."""
        B, C, P = x.shape
        G, R = (1 if target is None else 2), B * m.shape[1] * C  # table rows [(b·N + n)·C + c]
        # a pixel's channels side by side (the target's after x's), for one gather per entry
        values = torch.cat([v.transpose(1, 2) for v in (x, target) if v is not None], 2).view(B * P, G * C)
        channel = torch.arange(C, device=x.device).repeat(G)
        sign = torch.ones(G, C, dtype=x.dtype, device=x.device)
        sign[1:] = -1
        cells = plan.bins * plan.pieces
        moments = x.new_zeros(plan.terms, R * cells)  # [d, (row·bins + b)·pieces + q]
        buffer = x.new_empty(plan.terms, 2 * rows * G * C)  # one for all chunks: fresh memory is slow to touch
        kept, budget = ([] if ctx.needs_input_grad[0] else None), _RegionSums.KEEP * B * P
        for pix, region, weight in _entries(m, rows):
            cell, psi = plan.cells(values.index_select(0, pix))
            key = (region[:, None] * C + channel).mul_(cells).add_(cell)
            basis = plan.basis(psi, weight[:, None] * sign.view(-1),
                               buffer[:, :psi.numel()].view(plan.terms, *psi.shape))
            # index_add_ along dim 1 runs one tight loop per term; along dim 0 it would pay a call per entry
            moments.index_add_(1, key.view(-1), basis.view(plan.terms, -1))
            if kept is not None:
                kept.append((pix, weight, key[:, :C].contiguous(), psi[:, :C].contiguous()))
                budget -= pix.numel()
                kept = kept if budget >= 0 else None
        ctx.save_for_backward(x, m)
        ctx.plan, ctx.rows, ctx.kept = plan, rows, kept
        # what the values of bin b add to bin b + j − half, then the overlapping bands added up
        moments = moments.view(plan.terms, R * plan.bins, plan.pieces).transpose(1, 2)
        moments = moments.reshape(plan.terms * plan.pieces, R * plan.bins)
        bands = plan.coeffs.to(x).permute(1, 2, 0).reshape(plan.band, -1) @ moments
        bands = bands.view(plan.band, R, plan.bins)
        hist = x.new_zeros(R, plan.bins + 2 * plan.half)
        for j in range(plan.band):
            hist[:, j:j + plan.bins] += bands[j]
        return hist[:, plan.half:plan.half + plan.bins].reshape(B, m.shape[1], C, plan.bins)  # none past the ends

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, m = ctx.saved_tensors
        plan, rows, kept = ctx.plan, ctx.rows, ctx.kept
        B, C, P = x.shape
        R, cells = B * m.shape[1] * C, plan.bins * plan.pieces
        channel = torch.arange(C, device=x.device)

        def rescan() -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
            values = x.transpose(1, 2).reshape(B * P, C)
            for pix, region, weight in _entries(m, rows):
                cell, psi = plan.cells(values.index_select(0, pix))
                yield pix, weight, (region[:, None] * C + channel).mul_(cells).add_(cell), psi

        # the engine may run this under the caller's autocast; the forward ran in float32
        with torch.autocast(x.device.type, enabled=False):
            # ∂L/∂x = Σ_j grad[bin b + j − half]·∂K_j/∂x: the gradient's band around bin b, times the slopes,
            # is the series of ∂L/∂x for values in b, per part: [(row·bins + b)·pieces + q, k]
            bands = F.pad(grad.reshape(R, plan.bins), (plan.half, plan.half)).unfold(-1, plan.band, 1)
            slopes = plan.slopes.to(x).permute(1, 0, 2).reshape(plan.band, -1)
            series = (bands.reshape(R * plan.bins, plan.band) @ slopes).view(R * cells, plan.terms - 1)
            gx = x.new_zeros(B * P * C)
            for pix, weight, key, psi in rescan() if kept is None else kept:
                coeff = series.index_select(0, key.view(-1)).view(*psi.shape, plan.terms - 1)
                g = plan.derivative(psi, coeff.movedim(-1, 0)).mul_(weight[:, None])
                gx.index_add_(0, (pix[:, None] * C + channel).view(-1), g.view(-1))
        return gx.view(B, P, C).transpose(1, 2), None, None, None, None


def _histograms(image: Tensor, target: Tensor | None, regions: Tensor, bins: int, kernel: Kernel, slope: float,
                bandwidth: float | None, chunk: int | None, min_mass: float) -> tuple[Tensor, Tensor]:
    """``(B, N, C, bins)`` normalised histograms of ``image``, less those of ``target`` (without gradient) unless it
    is ``None``, and ``(B, N)`` which regions are non-empty."""
    if image.shape[0] != regions.shape[0] or image.shape[-2:] != regions.shape[-2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and regions {tuple(regions.shape)} must share batch and spatial size; "
            "resize the region maps to the image first"
        )
    plan = _plan(bins, kernel, float(slope), bandwidth)
    if chunk is None:
        # a chunk has a fixed cost in operators: on the CPU a small batch takes more pixels per image, so that
        # a chunk holds at least 16384 region–pixel pairs (fastest there, docs/benchmarks.md)
        chunk = 65536 if image.is_cuda else max(4096, 16384 // image.shape[0])
    with torch.autocast(image.device.type, enabled=False):
        # values past the bins count in the end bins, and get no gradient there
        x = image.float().clamp(0, 1).flatten(2)
        t = None if target is None else target.detach().float().clamp(0, 1).flatten(2)
        m = regions.detach().float().flatten(2)  # (B, N, P)
        sums = _RegionSums.apply(x, t, m, plan, max(1, chunk * x.shape[0]))
        mass = m.sum(-1)  # (B, N)
        valid = mass >= min_mass
        return sums / mass.clamp_min(min_mass)[..., None, None] * valid[..., None, None], valid


def region_histograms(image: Tensor, regions: Tensor, bins: int = 256, kernel: Kernel = "sigmoid",
                      slope: float = 400.0, bandwidth: float | None = None, chunk: int | None = None,
                      min_mass: float = 1.0) -> tuple[Tensor, Tensor]:
    """Normalised soft histograms of every region and channel.

    Args:
        image: ``(B, C, H, W)`` values, clamped to ``[0, 1]`` (differentiable inside it).
        regions: ``(B, N, H, W)`` region maps in ``[0, 1]`` (not differentiated).
        bins, kernel, slope, bandwidth: see :func:`kernel_weights`.
        chunk: fewer than ``2·B·chunk`` region–pixel pairs (nonzero map values) are handled at a time (about
            ``chunk`` pixels of each image when the regions partition it), each taking about ``150·C`` bytes.
            ``None``: on the CPU 4096, or more for a batch under 4 (at least ``16384 / B``); 65536 on a GPU
            (where each chunk's few kernel launches, not its size, set its time).
        min_mass: regions whose mask sums to less than this many pixels are empty.

    Returns:
        ``(B, N, C, bins)`` histograms summing to 1 over bins (0 for empty regions), and ``(B, N)`` bool: which
        regions are non-empty.
    """
    return _histograms(image, None, regions, bins, kernel, slope, bandwidth, chunk, min_mass)


def histogram_loss(student: Tensor, teacher: Tensor, regions: Tensor, bins: int = 256,
                   kernel: Kernel = "sigmoid", slope: float = 400.0, bandwidth: float | None = None,
                   chunk: int | None = None, min_mass: float = 1.0) -> Tensor:
    """L_color (eqs. 9–10): per-region, per-channel histogram MSE between student and (detached) teacher.

    Args:
        student: ``(B, C, H, W)`` T(H_in), differentiable.
        teacher: ``(B, C, H, W)`` Ĥ_s; used as a target (no gradient).
        regions: ``(B, N, H, W)`` maps in ``[0, 1]``.
        Others: see :func:`region_histograms`.

    Returns:
        Scalar: mean over images of the mean over non-empty regions of ``(1/C) Σ_c (1/K) Σ_i (H^S − H^T)²``
        (``K`` bins); 0 for an image without a non-empty region.

    Example:
        Two regions, the top and bottom halves; a student that is all black against a uniform teacher:

        >>> import torch
        >>> regions = torch.zeros(1, 2, 16, 16)
        >>> regions[:, 0, :8] = 1
        >>> regions[:, 1, 8:] = 1
        >>> teacher = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> histogram_loss(teacher, teacher, regions, bins=16)
        tensor(0.)
        >>> student = torch.zeros(1, 3, 16, 16, requires_grad=True)
        >>> loss = histogram_loss(student, teacher, regions, bins=16)
        >>> loss.shape, round(loss.item(), 4)
        (torch.Size([]), 0.0162)
        >>> loss.backward()
        >>> student.grad.shape
        torch.Size([1, 3, 16, 16])
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ in shape")
    diff, valid = _histograms(student, teacher, regions, bins, kernel, slope, bandwidth, chunk, min_mass)
    per_region = diff.pow(2).mean(-1).mean(-1)  # (B, N): mean over bins, then channels
    per_image = (per_region * valid).sum(-1) / valid.sum(-1).clamp_min(1)
    return per_image.mean()


class HistogramLoss(nn.Module):
    """Module form of :func:`histogram_loss`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> student, teacher = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
        >>> regions = torch.ones(2, 1, 16, 16)  # one region, the whole image
        >>> loss = HistogramLoss(bins=16)
        >>> torch.equal(loss(student, teacher, regions), histogram_loss(student, teacher, regions, bins=16))
        True
        >>> loss(student, student, regions)
        tensor(0.)
    """

    def __init__(self, bins: int = 256, kernel: Kernel = "sigmoid", slope: float = 400.0,
                 bandwidth: float | None = None, chunk: int | None = None, min_mass: float = 1.0) -> None:
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
