"""SPGRM, the teacher: its fast forms (channels-last on the CPU, one masked product for all attention heads, the
output projection folded into the attention weights, the norms' scale and shift folded into the projections after
them) against the plain computation they replace, its parameter names, and the strided (slim) teacher's shapes and
identity at initialisation."""
import pytest
import torch
import torch.nn.functional as F
from conftest import grads
from einops import rearrange
from torch import Tensor

from semkt_plugin.strategies.skt.pixel_products import split_k
from semkt_plugin.strategies.skt.teacher import SPGRM, LayerNorm2d, PriorFusionBlock

PRIOR_CHANNELS = (8, 12, 16, 20)
PRIOR_STRIDES = (4, 8, 16, 32)


def priors_for(b: int, h: int, w: int, generator: torch.Generator) -> list[Tensor]:
    return [torch.randn(b, c, -(-h // s), -(-w // s), generator=generator)
            for c, s in zip(PRIOR_CHANNELS, PRIOR_STRIDES)]


def reference_layer_norm(norm: LayerNorm2d, x: Tensor) -> Tensor:
    return F.layer_norm(x.permute(0, 2, 3, 1).contiguous(), norm.norm.normalized_shape, norm.norm.weight,
                        norm.norm.bias, norm.norm.eps).permute(0, 3, 1, 2)


def reference_fusion(block: PriorFusionBlock, feature: Tensor, prior: Tensor) -> Tensor:
    """Eq. 4 the plain way: per-head q, k, v, F.normalize, softmax, product, then the 1×1 output convolution."""
    h, w = feature.shape[-2:]
    prior = F.interpolate(prior, size=(h, w), mode="bilinear", align_corners=False)
    q = block.q(reference_layer_norm(block.norm_p, prior))
    k, v = block.kv(reference_layer_norm(block.norm_f, feature)).chunk(2, dim=1)
    q, k, v = (rearrange(t, "b (n c) h w -> b n c (h w)", n=block.heads) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * block.gamma).softmax(dim=-1)
    return feature + block.out(rearrange(attn @ v, "b n c (h w) -> b (n c) h w", h=h, w=w))


def reference_teacher(model: SPGRM, hs: Tensor, priors: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """A stride-1 SPGRM's forward in the default layout, with :func:`reference_fusion` for its fusion blocks."""
    x, feats = model.head(hs), []
    for module, level in zip(model.fusion, model.fpn(priors)):
        x = reference_fusion(module.fuse, module.body(x), level)
        feats.append(x)
    return hs + model.tail(x), feats


def assert_near(actual: Tensor, expected: Tensor, tol: float = 1e-4) -> None:
    """Equal up to float32 rounding: the largest difference is a tiny fraction of the tensor's scale."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(1e-12)
    assert (actual - expected).abs().max() <= tol * scale


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_layer_norm_2d_normalises_channels_at_every_pixel(layout):
    g = torch.Generator().manual_seed(0)
    norm = LayerNorm2d(6)
    torch.nn.init.normal_(norm.norm.weight, generator=g)
    torch.nn.init.normal_(norm.norm.bias, generator=g)
    x = (torch.randn(2, 6, 5, 7, generator=g) * 3 + 1).contiguous(memory_format=layout).requires_grad_()
    expected_x = x.detach().contiguous().requires_grad_()
    out, expected = norm(x), reference_layer_norm(norm, expected_x)
    assert_near(out, expected, 1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the (B, H, W, C) result, permuted as a view
    upstream = torch.randn(2, 6, 5, 7, generator=g)
    ours = grads((out * upstream).sum(), [x, *norm.parameters()])
    theirs = grads((expected * upstream).sum(), [expected_x, *norm.parameters()])
    for a, b in zip(ours, theirs):
        assert_near(a, b, 1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_layer_norm_2d_project_folds_the_norms_affine_into_the_convolution(layout):
    """``project(x, conv)`` is ``conv(norm(x))`` to rounding, with the same gradients for the input, the norm's
    scale and shift and the convolution's weights."""
    g = torch.Generator().manual_seed(0)
    norm, conv = LayerNorm2d(6), torch.nn.Conv2d(6, 10, 1)
    for p in (*norm.parameters(), *conv.parameters()):
        torch.nn.init.normal_(p, generator=g)
    x = (torch.randn(2, 6, 5, 7, generator=g) * 3 + 1).contiguous(memory_format=layout).requires_grad_()
    out, expected = norm.project(x, conv), conv(reference_layer_norm(norm, x))
    assert_near(out, expected, 1e-6)
    upstream = torch.randn(out.shape, generator=g)
    inputs = [x, *norm.parameters(), *conv.parameters()]
    for a, b in zip(grads((out * upstream).sum(), inputs), grads((expected * upstream).sum(), inputs)):
        assert_near(a, b, 1e-5)


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_prior_fusion_block_equals_per_head_attention(heads, layout):
    g = torch.Generator().manual_seed(heads)
    torch.manual_seed(heads)
    block = PriorFusionBlock(dim=8, prior_dim=6, heads=heads)
    with torch.no_grad():
        block.gamma.uniform_(0.5, 3.0)  # unequal temperatures: each row must take its own head's
    feature = torch.randn(2, 8, 9, 7, generator=g).contiguous(memory_format=layout).requires_grad_()
    prior = torch.randn(2, 6, 4, 3, generator=g).contiguous(memory_format=layout).requires_grad_()
    out, expected = block(feature, prior), reference_fusion(block, feature, prior)
    assert_near(out, expected)
    assert out.is_contiguous(memory_format=layout)  # the residual keeps the feature's layout
    upstream = torch.randn(2, 8, 9, 7, generator=g)
    inputs = [feature, prior, *block.parameters()]
    for a, b in zip(grads((out * upstream).sum(), inputs), grads((expected * upstream).sum(), inputs)):
        assert_near(a, b)


def test_teacher_outputs_and_gradients_equal_the_plain_computation():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = SPGRM(PRIOR_CHANNELS, dim=16, heads=2)
    with torch.no_grad():  # a trained teacher: its tail is no longer zero, so the fusion path reaches Ĥ_s
        model.tail.weight.normal_(0, 0.05, generator=g)
        model.tail.bias.normal_(0, 0.05, generator=g)
        for module in model.fusion:
            module.fuse.gamma.uniform_(0.5, 3.0, generator=g)
    hs = torch.rand(2, 3, 40, 32, generator=g).requires_grad_()
    priors = [p.requires_grad_() for p in priors_for(2, 40, 32, g)]
    out, feats = model(hs, priors)
    expected, expected_feats = reference_teacher(model, hs, priors)
    assert_near(out, expected)
    for f, e in zip(feats, expected_feats):
        assert_near(f, e)
    upstream = [torch.randn(t.shape, generator=g) for t in (out, *feats)]
    inputs = [hs, *priors, *model.parameters()]
    ours = grads(sum((t * u).sum() for t, u in zip((out, *feats), upstream)), inputs)
    theirs = grads(sum((t * u).sum() for t, u in zip((expected, *expected_feats), upstream)), inputs)
    for a, b in zip(ours, theirs):
        assert_near(a, b)


def test_stride_one_keeps_the_checkpoint_keys_and_shapes():
    dim = 16
    blocks = [f"fusion.{m}.body.{r}.body.{c}" for m in range(3) for r in range(2) for c in (0, 2)]
    fuse = [f"fusion.{m}.fuse.{p}" for m in range(3)
            for p in ("norm_f.norm", "norm_p.norm", "q.0", "q.1", "kv.0", "kv.1", "out")]
    layers = ([f"fpn.lateral.{i}" for i in range(4)] + [f"fpn.smooth.{i}" for i in range(3)]
              + ["head", "tail"] + blocks + fuse)
    expected = {f"{layer}.{p}" for layer in layers for p in ("weight", "bias")}
    expected |= {f"fusion.{m}.fuse.gamma" for m in range(3)}
    state = SPGRM(PRIOR_CHANNELS, dim=dim, heads=2).state_dict()
    assert set(state) == expected
    assert state["head.weight"].shape == (dim, 3, 3, 3) and state["tail.weight"].shape == (3, dim, 3, 3)
    assert set(SPGRM(PRIOR_CHANNELS, dim=dim, heads=2, stride=2).state_dict()) == expected  # same names


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("size", [(32, 48), (30, 45)])  # the second not a multiple of the strides
def test_teacher_is_the_identity_at_init_and_its_features_are_at_one_over_stride(stride, size):
    g = torch.Generator().manual_seed(stride)
    h, w = size
    model = SPGRM(PRIOR_CHANNELS, dim=8, heads=2, stride=stride)
    hs = torch.rand(2, 3, h, w, generator=g)
    out, feats = model(hs, priors_for(2, h, w, g))
    assert torch.equal(out, hs)
    assert out.is_contiguous() and all(f.is_contiguous() for f in feats)  # the caller's layout
    assert [f.shape for f in feats] == [(2, 8, -(-h // stride), -(-w // stride))] * SPGRM.num_features


def test_strided_teacher_trains_and_runs_without_priors():
    g = torch.Generator().manual_seed(0)
    model = SPGRM(PRIOR_CHANNELS, dim=8, heads=2, stride=2)
    assert model.head.weight.shape == (8, 12, 3, 3) and model.tail.weight.shape == (12, 8, 3, 3)
    hs, target = torch.rand(2, 3, 30, 45, generator=g), torch.rand(2, 3, 30, 45, generator=g)
    out, _ = model(hs, priors_for(2, 30, 45, g))
    (out - target).abs().mean().backward()
    assert model.tail.weight.grad.abs().sum() > 0  # the zero tail still learns
    assert all(p.grad is not None for p in model.parameters())
    bare = SPGRM(PRIOR_CHANNELS, dim=8, heads=2, use_priors=False, stride=2)
    out, feats = bare(hs)
    assert torch.equal(out, hs) and feats[0].shape == (2, 8, 15, 23)
    with pytest.raises(ValueError, match="stride"):
        SPGRM(PRIOR_CHANNELS, stride=0)



@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_sliced_products_equal_the_whole_ones(layout):
    """The GPU's sliced products over the pixels (run here on the CPU) give the block's output and gradients up to
    rounding."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    block = PriorFusionBlock(dim=16, prior_dim=6, heads=2)
    feature = torch.randn(2, 16, 64, 48, generator=g).contiguous(memory_format=layout).requires_grad_()
    prior = torch.randn(2, 6, 16, 12, generator=g).requires_grad_()
    upstream = torch.randn(2, 16, 64, 48, generator=g)
    inputs = [feature, prior, *block.parameters()]
    results = []
    for sliced in (False, True):
        block.sliced = sliced
        out = block(feature, prior)
        results.append((out, grads((out * upstream).sum(), inputs)))
    (whole, whole_grads), (sliced_out, sliced_grads) = results
    assert split_k(64 * 48) == 2 and sliced_out.is_contiguous(memory_format=layout)
    assert_near(sliced_out, whole, tol=1e-6)
    for a, b in zip(sliced_grads, whole_grads):
        assert_near(a, b, tol=1e-5)
