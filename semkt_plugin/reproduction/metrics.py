"""HDR reconstruction metrics as the multi-exposure HDR papers compute them.

Following the evaluation scripts of AHDRNet / HDR-Transformer / SCTNet (per image, then averaged over scenes):

- PSNR-L: PSNR of the linear HDR, peak 1, label not clipped.
- PSNR-μ: PSNR after the μ-law tone map (μ = 5000), peak 1.
- SSIM-L / SSIM-μ: SSIM of the linear / μ-law images clipped to [0, 1], Gaussian window 11, σ = 1.5,
  K1 = 0.01, K2 = 0.03, averaged over the "valid" region (no padding, 5-pixel border dropped) and channels.
  That is ``kornia.metrics.ssim(..., padding="valid")``.
"""
from __future__ import annotations

import kornia
import torch
from torch import Tensor

from ..domain import mu_law

SSIM_WINDOW = 11


def _check(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"metrics need two (B, C, H, W) tensors of the same shape, got {pred.shape} and {target.shape}"
        )


def psnr(pred: Tensor, target: Tensor, peak: float = 1.0) -> Tensor:
    """Per-image PSNR ``10·log10(peak² / MSE)`` of (B, C, H, W) tensors; returns (B,), ``inf`` where identical."""
    _check(pred, target)
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(peak**2 / mse)).float()


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image SSIM of (B, C, H, W) tensors in [0, 1] (Gaussian 11 / 1.5, valid region); returns (B,)."""
    _check(pred, target)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}")
    ssim_map = kornia.metrics.ssim(pred.double(), target.double(), SSIM_WINDOW, max_val=1.0, padding="valid")
    return ssim_map.flatten(1).mean(1).float()


def psnr_l(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR-L of linear HDR (B, 3, H, W); returns (B,)."""
    return psnr(pred, target)


def psnr_mu(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR-μ of linear HDR (B, 3, H, W), μ-law with μ = 5000; returns (B,)."""
    return psnr(mu_law(pred.clamp_min(0)), mu_law(target.clamp_min(0)))


def ssim_l(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM-L of linear HDR (B, 3, H, W) clipped to [0, 1]; returns (B,)."""
    return ssim(pred.clamp(0, 1), target.clamp(0, 1))


def ssim_mu(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM-μ of linear HDR (B, 3, H, W): μ-law, clipped to [0, 1]; returns (B,)."""
    return ssim(mu_law(pred.clamp_min(0)).clamp(0, 1), mu_law(target.clamp_min(0)).clamp(0, 1))


def hdr_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """All four metrics of linear HDR (B, 3, H, W): ``{"psnr_mu", "psnr_l", "ssim_mu", "ssim_l"}`` → (B,) each."""
    with torch.no_grad():
        return {
            "psnr_mu": psnr_mu(pred, target),
            "psnr_l": psnr_l(pred, target),
            "ssim_mu": ssim_mu(pred, target),
            "ssim_l": ssim_l(pred, target),
        }
