"""HDR metrics against hand-computed values and the usual (cv2-filtered) SSIM."""
import math

import cv2
import numpy as np
import pytest
import torch

from semkt_plugin.reproduction import metrics

C1, C2 = 0.01**2, 0.03**2


def test_identical_images_give_inf_and_one():
    x = torch.rand(2, 3, 16, 16)
    out = metrics.hdr_metrics(x, x.clone())
    assert torch.isinf(out["psnr_l"]).all() and torch.isinf(out["psnr_mu"]).all()
    torch.testing.assert_close(out["ssim_l"], torch.ones(2))
    torch.testing.assert_close(out["ssim_mu"], torch.ones(2))


def test_constant_offset_gives_known_psnr():
    target = torch.rand(1, 3, 16, 16) * 0.8
    # MSE = 0.1² → PSNR = 10·log10(1 / 0.01) = 20 dB
    torch.testing.assert_close(metrics.psnr_l(target + 0.1, target), torch.tensor([20.0]))


def test_constant_images_psnr_mu_and_ssim_by_hand():
    a, b = 0.02, 0.05
    pred, target = torch.full((1, 3, 12, 12), b), torch.full((1, 3, 12, 12), a)

    def mu(v):
        return math.log1p(5000 * v) / math.log1p(5000)

    want_psnr_mu = -20 * math.log10(abs(mu(b) - mu(a)))
    torch.testing.assert_close(metrics.psnr_mu(pred, target), torch.tensor([want_psnr_mu]))
    # constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a² + b² + C1)
    torch.testing.assert_close(metrics.ssim_l(pred, target), torch.tensor([(2 * a * b + C1) / (a * a + b * b + C1)]))
    ma, mb = mu(a), mu(b)
    torch.testing.assert_close(
        metrics.ssim_mu(pred, target), torch.tensor([(2 * ma * mb + C1) / (ma * ma + mb * mb + C1)])
    )


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """The usual SSIM: cv2 Gaussian filtering (11, 1.5), valid region, mean over pixels and channels."""
    k = cv2.getGaussianKernel(11, 1.5)
    window = k @ k.T

    def f(img):
        return cv2.filter2D(img, -1, window, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    return float((((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))).mean())


def test_ssim_matches_the_usual_definition():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 24, 20, generator=gen)
    pred = (target + 0.1 * torch.randn(2, 3, 24, 20, generator=gen)).clamp(0, 1)
    got = metrics.ssim(pred, target)
    for i in range(2):
        x = pred[i].permute(1, 2, 0).double().numpy()
        y = target[i].permute(1, 2, 0).double().numpy()
        assert got[i].item() == pytest.approx(_ssim_reference(x, y), abs=1e-6)


def test_metrics_are_per_image():
    target = torch.rand(2, 3, 16, 16) * 0.5
    pred = target.clone()
    pred[1] += 0.1
    out = metrics.psnr_l(pred, target)
    assert torch.isinf(out[0]) and out[1].item() == pytest.approx(20.0, abs=1e-4)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr_l(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
