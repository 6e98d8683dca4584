"""Bad input: each case gets a clear error or its documented handling, never a silent NaN or a deep torch crash."""
import math

import pytest
import torch
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from semkt_plugin import Adapter, HookPoint
from semkt_plugin.domain import domain_transfer
from semkt_plugin.strategies.skt.losses import histogram_loss
from semkt_plugin.wrapping import wrap

FAST = dict(perceptual="skb", **FROM_STEP_0)
# no SKB: safe to move to other devices/dtypes
CHEAP = dict(lambda_color=0.0, use_priors=False, lambda_content=0.0, **FROM_STEP_0)
SOME = settings(max_examples=12, deadline=None)


@pytest.fixture(scope="module")
def wrapped(skb):
    torch.manual_seed(0)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    with torch.no_grad():  # an untrained teacher is the identity: content and color would be 0 whatever the input
        skt.teacher.tail.weight.normal_(0, 0.1)
    yield model, skt
    skt.unwrap()


def _frames(b: int, h: int, w: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(h * 100 + w)
    return [torch.rand(b, 6, h, w, generator=g) for _ in range(3)]


def _finite_grads(module: nn.Module) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in module.parameters())


@SOME
@given(b=st.integers(1, 2), h=st.integers(1, 12), w=st.integers(1, 12), where=st.sampled_from(["H_in", "target"]),
       bad=st.lists(st.sampled_from([math.nan, math.inf, -math.inf, -1e-3, -5.0]), min_size=1, max_size=4),
       data=st.data())
def test_non_finite_or_negative_hdr_is_refused(wrapped, b, h, w, where, bad, data):
    model, skt = wrapped
    out = model(*_frames(b, h, w))
    target = torch.rand_like(out)
    spoiled = (out if where == "H_in" else target).detach().clone()
    cells = data.draw(st.lists(st.integers(0, spoiled.numel() - 1), min_size=len(bad), max_size=len(bad), unique=True))
    spoiled.view(-1)[cells] = torch.tensor(bad)
    n_nan, n_inf = sum(math.isnan(v) for v in bad), sum(math.isinf(v) for v in bad)
    expected = rf"{where} has {n_nan} NaN and {n_inf} Inf" if n_nan + n_inf else rf"{where} has negative values"
    with pytest.raises(ValueError, match=expected):
        skt.loss(spoiled, target) if where == "H_in" else skt.loss(out, spoiled)
    assert skt.hooks.captured == {}


def test_negative_output_is_clamped_when_the_adapter_says_so(skb):
    model = TinyHDR()
    skt = wrap(model, Adapter("clamping", TINY_ADAPTER.hooks, negative="clamp"), skb=skb, **FAST)
    out = model(*_frames(1, 16, 16)) - 0.5  # a model without an output activation
    loss = skt.loss(out, torch.rand_like(out))
    loss.backward()
    assert torch.isfinite(loss) and _finite_grads(model)
    skt.unwrap()


def test_wrong_channel_counts_and_shapes_are_named(wrapped):
    model, skt = wrapped
    out = model(*_frames(1, 8, 8))
    with pytest.raises(ValueError, match=r"must be \(B, 3, H, W\) linear RGB.*got \(1, 4, 8, 8\)"):
        skt.loss(torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"must be \(B, 3, H, W\).*got \(3, 8, 8\)"):
        skt.loss(out[0], torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"target shape \(1, 1, 8, 8\) differs from H_in's \(1, 3, 8, 8\)"):
        skt.loss(out, torch.rand(1, 1, 8, 8))
    assert skt.hooks.captured == {}


class TinyRaw(nn.Module):
    """Packed RGGB in, packed RGGB out (TMRNet-like, no activation on the output)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(4, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.tail(torch.relu(self.head(x)))


@SOME
@given(h=st.integers(1, 9), w=st.integers(1, 9))
def test_packed_raw_of_any_size_trains(skb, h, w):
    model = TinyRaw()
    skt = wrap(model, Adapter("raw", [HookPoint("head")], domain="raw", negative="clamp"), skb=skb, **FAST)
    try:
        out = model(torch.rand(1, 4, h, w))
        loss = skt.loss(out, torch.rand_like(out))
        loss.backward()
        assert torch.isfinite(loss) and _finite_grads(model) and _finite_grads(skt)
    finally:
        skt.unwrap()


@given(h=st.integers(1, 9), w=st.integers(1, 9))
def test_a_bayer_mosaic_needs_even_sides(h, w):
    mosaic = torch.rand(1, 1, h, w)
    if h % 2 or w % 2:
        with pytest.raises(ValueError, match=rf"even height and width, got \({h}, {w}\); crop"):
            domain_transfer(mosaic, "raw")
    else:
        assert domain_transfer(mosaic, "raw").shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="RAW must be packed"):
        domain_transfer(torch.rand(1, 3, 2 * h, 2 * w), "raw")


@SOME
@given(b=st.integers(1, 2), h=st.integers(1, 40), w=st.integers(1, 40))
def test_any_size_down_to_one_pixel_and_batch_of_one(wrapped, b, h, w):
    """Smaller than the SKB's stride 32: it pads with grey, and regions of under a pixel of mass count as empty."""
    model, skt = wrapped
    model.zero_grad()
    skt.zero_grad()
    out = model(*_frames(b, h, w))
    loss = skt.loss(out, torch.rand_like(out))
    loss.backward()
    assert torch.isfinite(loss) and _finite_grads(model) and _finite_grads(skt)
    assert set(skt.last_losses) == {"spg", "content", "color", "feat", "orm", "total"}


@SOME
@given(empty=st.lists(st.booleans(), min_size=3, max_size=3), seed=st.integers(0, 2**16))
def test_empty_regions_are_left_out_not_nan(empty, seed):
    g = torch.Generator().manual_seed(seed)
    student = torch.rand(2, 3, 12, 12, generator=g, requires_grad=True)
    teacher = torch.rand(2, 3, 12, 12, generator=g)
    regions = torch.rand(2, 3, 12, 12, generator=g)
    regions[:, torch.tensor(empty)] = 0
    loss = histogram_loss(student, teacher, regions, bins=16)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    kept = regions[:, [not e for e in empty]]
    if kept.shape[1]:
        assert loss.item() == pytest.approx(histogram_loss(student, teacher, kept, bins=16).item(), rel=1e-5)
    else:
        assert loss.item() == 0.0 and not student.grad.any()


def test_no_region_found_gives_a_zero_color_term(wrapped, monkeypatch):
    model, skt = wrapped
    monkeypatch.setattr(skt.skb, "score_threshold", 2.0)  # scores are below 1: every region slot is empty
    monkeypatch.setattr(skt.config, "color_background", False)
    out = model(*_frames(1, 32, 32))
    loss = skt.loss(out, torch.rand_like(out))
    loss.backward()
    assert skt.last_losses["color"] == 0.0 and torch.isfinite(loss) and _finite_grads(model)
    monkeypatch.setattr(skt.config, "color_background", True)  # then the whole image is the one region
    out = model(*_frames(1, 32, 32))
    loss = skt.loss(out, torch.rand_like(out))
    loss.backward()
    assert torch.isfinite(loss) and _finite_grads(model)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_model_in_another_dtype_trains_with_a_float32_plugin(skb, dtype):
    model = TinyHDR().to(dtype)
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    out = model(*[f.to(dtype) for f in _frames(1, 16, 16)])
    loss = skt.loss(out, torch.rand_like(out))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad.dtype == dtype for p in model.parameters()) and _finite_grads(model)
    skt.unwrap()


def test_a_plugin_in_half_precision_is_refused():
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, **CHEAP).bfloat16()
    with pytest.raises(TypeError, match=r"torch.bfloat16; keep them in float32 \(skt.float\(\)\).*autocast"):
        skt.loss(model(*_frames(1, 8, 8)), torch.rand(1, 3, 8, 8))
    assert skt.hooks.captured == {}
    skt.float().unwrap()


def test_device_mismatches_are_explained(wrapped):
    """Only CPU here: the meta device stands in for a second device."""
    model, skt = wrapped
    out = model(*_frames(1, 8, 8))
    with pytest.raises(RuntimeError, match=r"output is on meta but the plugin is on cpu; call skt.to\('meta'\)"):
        skt.loss(out.to("meta"), torch.rand(1, 3, 8, 8, device="meta"))
    with pytest.raises(RuntimeError, match=r"target is on meta but the model's output is on cpu"):
        skt.loss(out, torch.rand(1, 3, 8, 8, device="meta"))
    model2 = TinyHDR()
    on_meta = wrap(model2, TINY_ADAPTER, **CHEAP).to("meta")
    with pytest.raises(RuntimeError, match=r"output is on cpu but the plugin is on meta"):
        on_meta.loss(model2(*_frames(1, 8, 8)), torch.rand(1, 3, 8, 8))
    on_meta.unwrap()
