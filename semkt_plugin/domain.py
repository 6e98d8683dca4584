"""Domain transfer T: from the ORM's linear HDR (sRGB or RAW) into the tone-mapped SDR domain the SKB understands.

``T(H) = log(1 + μH) / log(1 + μ)`` with μ = 5000 (eq. 1), the μ-law every multi-exposure HDR paper trains and
evaluates with. RAW output is first demosaicked with kornia (bilinear, raw samples kept intact), so the teacher,
the SKB and the losses all see RGB. Everything here is differentiable and computed in float32 whatever the input
dtype, because ``log1p(5000·x)`` in half precision loses the dark tones that HDR is about.
"""
from __future__ import annotations

import math
from typing import Literal

import kornia
import torch
from einops import rearrange
from torch import Tensor, nn

from .validation import check

MU = 5000.0

_CFA = {  # kornia names a pattern by pixel (1,1) and its right neighbour (OpenCV's convention)
    "RGGB": kornia.color.CFA.BG,
    "BGGR": kornia.color.CFA.RG,
    "GRBG": kornia.color.CFA.GB,
    "GBRG": kornia.color.CFA.GR,
}


def check_hdr(h: Tensor, what: str = "H_in", negative: Literal["error", "clamp"] = "error") -> Tensor:
    """Refuse NaN/Inf, and negative values unless ``negative="clamp"``; return ``h`` (clamped at 0 if asked).

    Args:
        h: linear HDR, any shape.
        what: the tensor's name in error messages.
        negative: ``"error"`` or ``"clamp"`` (the documented policy for models without an output activation).
    """
    # one reduction, so one wait for the GPU per call; what is wrong is counted only when something is
    fine = torch.isfinite(h) if negative == "clamp" else (h >= 0) & (h < math.inf)
    if bool(fine.all()):
        return h.clamp_min(0) if negative == "clamp" else h
    finite = torch.isfinite(h)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(h).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(
            f"{what} has {n_nan} NaN and {n_inf} Inf values out of {h.numel()}: the model diverged or its input "
            "is broken. Check the learning rate and the input data; semkt does not train on non-finite values."
        )
    raise ValueError(
        f"{what} has negative values (min {float(h.min()):.4g}) but the adapter says the output is "
        "non-negative (negative='error'). If the model has no output activation, use an adapter with "
        "negative='clamp'; if it should be non-negative, check the adapter's output index and scale."
    )


def mu_law(h: Tensor, mu: float = MU) -> Tensor:
    """μ-law tone map ``log(1 + μh) / log(1 + μ)``, in float32.

    Args:
        h: linear HDR, non-negative, any shape; about ``[0, 1]``.
        mu: compression; 5000 as in the HDR literature.

    Returns:
        Tensor of ``h``'s shape, float32, in ``[0, 1]`` where ``h`` is.

    Example:
        Black and white stay put; the dark tones are lifted:

        >>> import torch
        >>> mu_law(torch.tensor([0.0, 0.01, 1.0]))
        tensor([0.0000, 0.4616, 1.0000])
        >>> mu_law(torch.ones(2, 3, dtype=torch.float16)).dtype
        torch.float32
    """
    return torch.log1p(mu * h.float()) / math.log1p(mu)


def unpack_raw(packed: Tensor) -> Tensor:
    """Interleave packed Bayer planes into a mosaic.

    Args:
        packed: ``(B, 4, H, W)``, planes in pattern order (for RGGB: R, G1, G2, B).

    Returns:
        ``(B, 1, 2H, 2W)`` mosaic.
    """
    if packed.ndim != 4 or packed.shape[1] != 4:
        raise ValueError(f"packed RAW must be (B, 4, H, W), got {tuple(packed.shape)}")
    return rearrange(packed, "b (i j) h w -> b 1 (h i) (w j)", i=2, j=2)


def demosaic(raw: Tensor, bayer: str = "RGGB") -> Tensor:
    """Bilinear demosaic (kornia) of packed 4-channel planes or a 1-channel mosaic.

    Args:
        raw: ``(B, 4, H, W)`` packed planes (output ``(B, 3, 2H, 2W)``) or ``(B, 1, H, W)`` mosaic with even
            ``H, W`` (output ``(B, 3, H, W)``).
        bayer: the 2×2 pattern from the top-left pixel: ``"RGGB"``, ``"BGGR"``, ``"GRBG"`` or ``"GBRG"``.

    Returns:
        ``(B, 3, H', W')`` linear RGB, float32.
    """
    if bayer not in _CFA:
        raise ValueError(f"unknown Bayer pattern {bayer!r}; use one of {sorted(_CFA)}")
    if raw.ndim != 4 or raw.shape[1] not in (1, 4):
        raise ValueError(
            f"RAW must be packed (B, 4, H, W) or a mosaic (B, 1, H, W), got {tuple(raw.shape)}; "
            "for sRGB output use domain='srgb'"
        )
    mosaic = unpack_raw(raw) if raw.shape[1] == 4 else raw
    if mosaic.shape[-2] % 2 or mosaic.shape[-1] % 2:
        raise ValueError(
            f"a Bayer mosaic needs even height and width, got {tuple(mosaic.shape[-2:])}; crop one row/column"
        )
    return kornia.color.raw_to_rgb(mosaic.float(), _CFA[bayer])


def domain_transfer(
    h: Tensor,
    domain: Literal["srgb", "raw"] = "srgb",
    *,
    scale: float = 1.0,
    negative: Literal["error", "clamp"] = "error",
    bayer: str = "RGGB",
    mu: float = MU,
    what: str = "H_in",
) -> Tensor:
    """T of eq. 1: checks, rescales, demosaics RAW, and μ-law tone maps.

    Args:
        h: ``(B, 3, H, W)`` linear sRGB HDR, or RAW as :func:`demosaic` takes.
        domain: ``"srgb"`` or ``"raw"``.
        scale: ``h / scale`` is about ``[0, 1]``.
        negative: see :func:`check_hdr`.
        bayer: RAW pattern.
        mu: μ-law compression.
        what: name in error messages.

    Returns:
        ``(B, 3, H', W')`` tone-mapped RGB in ``[0, 1]`` (values above 1 where ``h / scale > 1``), float32.
    """
    if domain == "srgb" and (h.ndim != 4 or h.shape[1] != 3):
        raise ValueError(
            f"{what} must be (B, 3, H, W) linear RGB for domain='srgb', got {tuple(h.shape)}; "
            "check the adapter's output index, or use domain='raw' for packed Bayer output"
        )
    check("domain", domain, one_of=("srgb", "raw"))
    with torch.autocast(h.device.type, enabled=False):
        h = check_hdr(h.float(), what, negative) / scale
        if domain == "raw":
            h = demosaic(h, bayer).clamp_min(0)  # bilinear weights are positive; this only guards rounding
        return mu_law(h, mu)


class DomainTransfer(nn.Module):
    """Module form of :func:`domain_transfer` with the adapter's settings bound.

    Example:
        >>> import torch
        >>> T = DomainTransfer(scale=2.0)
        >>> T
        DomainTransfer(domain='srgb', scale=2.0, negative='error', mu=5000.0)
        >>> T(torch.full((1, 3, 4, 4), 2.0)).unique()  # H / scale = 1 maps to 1
        tensor([1.])

        Packed RGGB planes are demosaicked to RGB at twice their size:

        >>> DomainTransfer("raw")(torch.rand(1, 4, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
        >>> T(-torch.ones(1, 3, 4, 4))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: H_in has negative values (min -1) ...
    """

    def __init__(
        self,
        domain: Literal["srgb", "raw"] = "srgb",
        scale: float = 1.0,
        negative: Literal["error", "clamp"] = "error",
        bayer: str = "RGGB",
        mu: float = MU,
    ) -> None:
        super().__init__()
        self.domain, self.scale, self.negative, self.bayer, self.mu = domain, scale, negative, bayer, mu

    def forward(self, h: Tensor, what: str = "H_in") -> Tensor:
        return domain_transfer(
            h, self.domain, scale=self.scale, negative=self.negative, bayer=self.bayer, mu=self.mu, what=what
        )

    def extra_repr(self) -> str:
        return f"domain={self.domain!r}, scale={self.scale}, negative={self.negative!r}, mu={self.mu}"
