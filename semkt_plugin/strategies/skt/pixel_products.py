"""Matrix products over the pixels for the Prior Fusion Block's transposed (channel × channel) attention.

Each is a product between ``(B, C, P)`` maps, ``P`` the pixels, and a ``(C × C)`` matrix, or the ``(C × C)`` product
of two such maps. :func:`cosine_gram` and :func:`pixel_mix` have their backward written out so that a gradient
comes in its input's memory layout (a channels-last map's rows are strided) and no extra map is written; on a GPU
the long products over the pixels run in slices (:func:`split_k`), which fill it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def split_k(pixels: int, length: int = 1024) -> int:
    """How many slices a product over ``pixels`` is cut into: a power of 2 that divides it, slices of at least
    ``length`` pixels (1 when there are fewer)."""
    return math.gcd(pixels, 1 << max(0, (pixels // length).bit_length() - 1))


def channel_gram(a: Tensor, b: Tensor, slices: int = 1) -> Tensor:
    """``a @ bᵀ`` over the pixels, summed over ``slices`` equal slices of them.

    A ``(C × C)`` product over a million pixels is a matrix product with a tiny output and a long inner
    dimension, which the GPU's kernels run on a few blocks at a time; the slices make ``B·slices`` products that
    fill the GPU, and their sum is the same up to rounding (the order of the additions differs). Autograd's
    backward of it is sliced alike.

    Shapes:
        a ``(B, M, P)``, b ``(B, N, P)`` → ``(B, M, N)``; ``slices`` divides ``P``.
    """
    if slices == 1:
        return a @ b.transpose(1, 2)
    sliced = [t.unflatten(2, (slices, -1)).transpose(1, 2) for t in (a, b)]  # (B, slices, M or N, P / slices)
    return (sliced[0] @ sliced[1].transpose(2, 3)).sum(1)


def cosine_gram(a: Tensor, b: Tensor, slices: int = 1, eps: float = 1e-12) -> Tensor:
    """The cosine similarity of every row of ``a`` with every row of ``b`` over the pixels: :func:`channel_gram`
    divided by the rows' norms, each clamped to at least ``eps`` (what it gives on ``F.normalize``-d rows).

    Shapes:
        a ``(B, M, P)``, b ``(B, N, P)`` → ``(B, M, N)``; ``slices`` divides ``P``.
    """
    return _CosineGram.apply(a, b, slices, eps)


class _CosineGram(torch.autograd.Function):
    """:func:`cosine_gram` with its backward written out. Left to autograd, the norms' backward writes two more
    ``(M, P)`` maps per input and adds them to the product's gradient (and the CPU reduces strided rows slowly);
    here each input's gradient is one product and one scaled add into it."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, slices: int, eps: float) -> Tensor:
        norm_a, norm_b = _row_norms(a, slices), _row_norms(b, slices)
        scale = norm_a.clamp_min(eps)[:, :, None] * norm_b.clamp_min(eps)[:, None, :]
        cos = channel_gram(a, b, slices) / scale
        ctx.save_for_backward(a, b, cos, norm_a, norm_b, scale)
        ctx.eps = eps
        return cos

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b, cos, norm_a, norm_b, scale = ctx.saved_tensors
        grad_gram = grad / scale
        # cos_ij = gram_ij / (|a_i| |b_j|), ∂|a_i|/∂a_i = a_i / |a_i|: each row also takes back its own direction,
        # except where its norm is clamped (as clamp_min's gradient)
        pull = grad * cos
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            own = -(pull.sum(2) / norm_a.square()).where(norm_a >= ctx.eps, 0)
            grad_a = _times(grad_gram, b, _strided_rows(a)).addcmul_(a, own.unsqueeze(2).to(a.dtype))
        if ctx.needs_input_grad[1]:
            own = -(pull.sum(1) / norm_b.square()).where(norm_b >= ctx.eps, 0)
            grad_b = _times(grad_gram.transpose(1, 2), a, _strided_rows(b)).addcmul_(b, own.unsqueeze(2).to(b.dtype))
        return grad_a, grad_b, None, None


def _row_norms(x: Tensor, slices: int) -> Tensor:
    """The norm of each row of ``x`` ``(B, M, P)`` over its ``P`` pixels, in at least float32 → ``(B, M)``."""
    if x.dtype.itemsize >= 4:  # the diagonal of the rows' product: read in place, at the product's speed
        return channel_gram(x, x, slices).diagonal(dim1=1, dim2=2).sqrt()
    return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32)


def _strided_rows(x: Tensor) -> bool:
    """Whether ``x`` ``(B, M, P)`` is laid out as a channels-last map's rows: strided, its pixels contiguous."""
    return x.stride(1) == 1 and x.stride(2) != 1


def _times(m: Tensor, x: Tensor, strided: bool) -> Tensor:
    """``m @ x``, ``(B, M, N) @ (B, N, P)`` → ``(B, M, P)``, with strided rows if ``strided``
    (:func:`_strided_rows`): then the product is made transposed."""
    m = m.to(x.dtype)
    return (x.transpose(1, 2) @ m.transpose(1, 2)).transpose(1, 2) if strided else m @ x


def pixel_mix(residual: Tensor, mix: Tensor, x: Tensor, bias: Tensor, slices: int = 1) -> Tensor:
    """``residual + bias + mix @ x`` at every pixel, in ``residual``'s memory layout.

    One pass writes ``residual + bias`` and the product adds into it. The backward's product for ``mix`` is a
    :func:`channel_gram` over the pixels and runs sliced alike; ``x``'s gradient comes in ``x``'s layout
    (autograd's would be contiguous, and a channels-last map's gradient would then be copied back).

    Shapes:
        residual ``(B, D, P)``, mix ``(B, D, C)``, x ``(B, C, P)``, bias ``(D,)`` → ``(B, D, P)``; ``slices``
        divides ``P``.
    """
    return _PixelMix.apply(residual, mix, x, bias, slices)


class _PixelMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, residual: Tensor, mix: Tensor, x: Tensor, bias: Tensor, slices: int) -> Tensor:
        ctx.save_for_backward(mix, x)
        ctx.slices = slices
        dtype = torch.promote_types(residual.dtype, x.dtype)
        out = residual.to(dtype) + bias.to(dtype)[:, None]
        m, x = mix.to(dtype), x.to(dtype)
        if _strided_rows(out):
            out.transpose(1, 2).baddbmm_(x.transpose(1, 2), m.transpose(1, 2))
        else:
            out.baddbmm_(m, x)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        mix, x = ctx.saved_tensors
        grad_mix = channel_gram(grad, x.to(grad.dtype), ctx.slices) if ctx.needs_input_grad[1] else None
        grad_x = _times(mix.transpose(1, 2), grad, _strided_rows(x)) if ctx.needs_input_grad[2] else None
        grad_bias = grad.sum((0, 2)) if ctx.needs_input_grad[3] else None
        return grad, grad_mix, grad_x, grad_bias, None
