"""Moving maps between memory layouts: the blocked copy into the default layout is a plain copy, bit for bit, and
``to_channels_last`` hands a map's gradient back in the map's own layout."""
import pytest
import torch

from semkt_plugin.strategies.skt import channels_last
from semkt_plugin.strategies.skt.channels_last import nchw, to_channels_last


@pytest.mark.parametrize("shape", [(2, 5, 37, 11), (1, 3, 4, 2), (3, 1, 9, 9), (2, 4, 0, 3)])
@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_nchw_is_a_plain_copy_in_blocks_of_rows(shape, layout, monkeypatch):
    monkeypatch.setattr(channels_last, "BLOCK", 64)  # many blocks, a last one cut short, rows wider than a block
    x = torch.randn(shape)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    else:  # columns contiguous
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    out = nchw(x)
    assert out.is_contiguous() and torch.equal(out, x)


def test_nchw_returns_a_contiguous_map_itself():
    x = torch.randn(2, 3, 4, 5)
    assert nchw(x) is x


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_to_channels_last_hands_the_gradient_back_in_the_maps_layout(layout, monkeypatch):
    monkeypatch.setattr(channels_last, "BLOCK", 64)
    x = torch.randn(2, 6, 9, 7).contiguous(memory_format=layout).requires_grad_()
    y = to_channels_last(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, x)
    upstream = torch.randn(2, 9, 7, 6).permute(0, 3, 1, 2)  # channels-last, as the norm's gradient comes
    (grad,) = torch.autograd.grad((y * upstream).sum(), [x])
    assert torch.equal(grad, upstream)
    assert grad.is_contiguous(memory_format=layout)
