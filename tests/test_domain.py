import math

import pytest
import torch

from semkt_plugin.domain import DomainTransfer, demosaic, domain_transfer, mu_law, unpack_raw


def test_mu_law_hand_values():
    h = torch.tensor([0.0, 0.01, 0.5, 1.0])
    expected = torch.tensor([0.0, math.log(51) / math.log(5001), math.log(2501) / math.log(5001), 1.0])
    assert torch.allclose(mu_law(h), expected, atol=1e-7)


def test_srgb_transfer_is_differentiable_and_float32_under_autocast():
    h = torch.rand(2, 3, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = domain_transfer(h)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert h.grad is not None and torch.isfinite(h.grad.float()).all()


@pytest.mark.parametrize("bad, match", [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_non_finite_is_an_error(bad, match):
    h = torch.rand(1, 3, 4, 4)
    h[0, 1, 2, 2] = bad
    with pytest.raises(ValueError, match=match):
        domain_transfer(h)


def test_negative_error_or_documented_clamp():
    h = torch.rand(1, 3, 4, 4)
    h[0, 0, 0, 0] = -0.5
    with pytest.raises(ValueError, match="negative"):
        domain_transfer(h)
    out = domain_transfer(h, negative="clamp")
    assert out[0, 0, 0, 0] == 0


def test_wrong_channel_count_names_the_fix():
    with pytest.raises(ValueError, match="domain='raw'"):
        domain_transfer(torch.rand(1, 4, 4, 4))


def test_unpack_raw_places_planes_in_rggb_order():
    packed = torch.arange(4.0).view(1, 4, 1, 1)  # R, G1, G2, B
    assert unpack_raw(packed).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("pattern, order", [("RGGB", "RGGB"), ("BGGR", "BGGR"), ("GRBG", "GRBG"), ("GBRG", "GBRG")])
def test_demosaic_constant_colour(pattern, order):
    rgb = {"R": 0.8, "G": 0.5, "B": 0.2}
    packed = torch.tensor([rgb[c] for c in order]).view(1, 4, 1, 1).expand(1, 4, 6, 6)
    out = demosaic(packed, pattern)
    assert out.shape == (1, 3, 12, 12)
    assert torch.allclose(out, torch.tensor([0.8, 0.5, 0.2]).view(1, 3, 1, 1).expand_as(out), atol=1e-6)


def test_demosaic_bilinear_at_an_interior_red_site():
    torch.manual_seed(0)
    m = torch.rand(1, 1, 8, 8)
    out = demosaic(m, "RGGB")
    y, x = 4, 4  # red site of RGGB (even, even)
    g = (m[0, 0, y - 1, x] + m[0, 0, y + 1, x] + m[0, 0, y, x - 1] + m[0, 0, y, x + 1]) / 4
    b = (m[0, 0, y - 1, x - 1] + m[0, 0, y - 1, x + 1] + m[0, 0, y + 1, x - 1] + m[0, 0, y + 1, x + 1]) / 4
    assert out[0, 0, y, x] == pytest.approx(float(m[0, 0, y, x]), abs=1e-6)  # raw sample kept
    assert out[0, 1, y, x] == pytest.approx(float(g), abs=1e-6)
    assert out[0, 2, y, x] == pytest.approx(float(b), abs=1e-6)


def test_raw_transfer_scale_and_errors():
    t = DomainTransfer("raw", scale=16.0, negative="clamp")
    packed = torch.full((1, 4, 3, 3), 16.0)
    assert torch.allclose(t(packed), torch.ones(1, 3, 6, 6))
    with pytest.raises(ValueError, match="even"):
        demosaic(torch.rand(1, 1, 5, 6))
    with pytest.raises(ValueError, match="Bayer pattern"):
        demosaic(torch.rand(1, 4, 2, 2), "RGBG")
