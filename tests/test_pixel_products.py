"""The products over the pixels of the Prior Fusion Block's attention: sliced products, and the written-out
backwards against autograd's (float64), in both memory layouts the block makes."""
import pytest
import torch
import torch.nn.functional as F
from conftest import grads
from torch import Tensor

from semkt_plugin.strategies.skt.pixel_products import channel_gram, cosine_gram, pixel_mix, split_k


def rows(m: int, layout: str, g: torch.Generator) -> Tensor:
    """A ``(2, m, 64)`` float64 map's rows that need a gradient: ``"rows"`` contiguous, ``"pixels"`` strided as a
    channels-last map's rows are (its pixels contiguous)."""
    x = torch.randn(2, 64, m, generator=g, dtype=torch.float64).transpose(1, 2)
    return (x if layout == "pixels" else x.contiguous()).requires_grad_()


def test_split_k_slices_evenly():
    assert [split_k(p) for p in (256 * 256, 128 * 128, 64 * 64, 1000, 9 * 7, 3000)] == [64, 16, 4, 1, 1, 2]
    a, b = torch.randn(3, 5, 4096), torch.randn(3, 7, 4096)
    torch.testing.assert_close(channel_gram(a, b, 4), a @ b.transpose(1, 2), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layout", ["rows", "pixels"])
@pytest.mark.parametrize("slices", [1, 4])
def test_cosine_gram_and_its_backward_equal_normalised_rows(layout, slices):
    """The written-out backward against autograd through ``F.normalize`` (float64, so the check is exact to
    rounding), in both memory layouts the block makes, with a zero row whose clamped norm takes no gradient."""
    g = torch.Generator().manual_seed(1)
    a, b = rows(5, layout, g), rows(7, layout, g)
    with torch.no_grad():
        a[1, 2] = 0
    expected = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(1, 2)
    out = cosine_gram(a, b, slices)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours, theirs = grads((out * upstream).sum(), [a, b]), grads((expected * upstream).sum(), [a, b])
    for x, mine, reference in zip((a, b), ours, theirs):
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)
        assert mine.stride() == x.stride()  # in the input's layout: no copy before the projections' backward
    small = [t.detach()[1:, 3:, :16].clone().requires_grad_() for t in (a, b)]  # no zero row: it has no slope
    assert torch.autograd.gradcheck(lambda x, y: cosine_gram(x, y, slices), small)


@pytest.mark.parametrize("layout", ["rows", "pixels"])
@pytest.mark.parametrize("slices", [1, 4])
def test_pixel_mix_and_its_backward_equal_the_plain_product(layout, slices):
    """Output in the residual's layout, the input's gradient in the input's layout, all equal to autograd's."""
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(2, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    residual, x = rows(5, layout, g), rows(7, layout, g)
    out = pixel_mix(residual, mix, x, bias, slices)
    expected = residual + bias[:, None] + mix @ x
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert out.stride() == residual.stride()
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)
    inputs = [residual, mix, x, bias]
    ours = grads((out * upstream).sum(), inputs)
    for mine, reference in zip(ours, grads((expected * upstream).sum(), inputs)):
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)
    assert ours[2].stride() == x.stride()
    r, y = (t.detach()[..., :16].clone().requires_grad_() for t in (residual, x))
    assert torch.autograd.gradcheck(lambda r, m, y, c: pixel_mix(r, m, y, c, slices), (r, mix, y, bias))
