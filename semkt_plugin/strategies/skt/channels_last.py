"""Moving a ``(B, C, H, W)`` map between the default (NCHW) and the channels-last (NHWC) memory layout, with its
gradient handed back in the layout it came in.

An operation on two maps of different layouts (a gradient being added to another, a copy) reads one of them with
a stride of ``C`` or ``H·W``, which the CPU's element-wise kernels run at a fraction of their speed; so does a
copy from channels-last into the default layout as a whole. :func:`to_channels_last` gives a map's gradient
back in the map's own layout, and :func:`nchw` copies a channels-last map on the CPU a block of rows at a time,
which stays in the cache.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: elements per block of :func:`nchw`'s copy; a map of at most this many is copied as a whole
BLOCK = 1 << 17


def nchw(x: Tensor) -> Tensor:
    """``x`` in the default (NCHW) memory layout: itself if it is, else a copy.

    Shapes:
        ``(B, C, H, W)`` → same.
    """
    if x.is_contiguous():
        return x
    row = x[:, :, 0].numel()
    if not x.is_cpu or x.numel() <= BLOCK or row == 0:
        return x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    rows = max(1, BLOCK // row)
    for top in range(0, x.shape[2], rows):
        out[:, :, top:top + rows].copy_(x[:, :, top:top + rows])
    return out


class _ToChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return nchw(grad)


def to_channels_last(x: Tensor) -> Tensor:
    """``x`` in the channels-last memory layout, its gradient in the default layout when ``x`` is not channels-last.

    Shapes:
        ``(B, C, H, W)`` → same.
    """
    if x.is_contiguous(memory_format=torch.channels_last):
        return x
    return _ToChannelsLast.apply(x)
