"""The test replicas match the real upstream classes (tests/upstream/expected/*.txt, dumped from upstream)."""
from __future__ import annotations

import pytest
import torch
from _replicas import AHDR_MODEL, NAMES, build, expected_listing
from torch import nn

REPLICAS = ("hdr_transformer", "sctnet", "safnet", "tmrnet")


def _needs(name):
    if name == "ahdr" and not AHDR_MODEL.exists():
        pytest.skip("examples/ahdr/model.py is not written yet")


@pytest.fixture(scope="module")
def models():
    cache: dict[str, nn.Module] = {}

    def get(name):
        _needs(name)
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build(name).eval()
        return cache[name]

    return get


def _frames(b, c, h, w, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, c, h, w, generator=g) for _ in range(n)]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_upstream_listing(models, name):
    got = [(k, tuple(v.shape)) for k, v in models(name).state_dict().items()]
    want = expected_listing(name)
    assert set(got) == set(want), (
        f"missing {sorted(set(want) - set(got))[:5]}, unexpected {sorted(set(got) - set(want))[:5]}")
    assert got == want  # same order too: same registration order as upstream


@pytest.mark.parametrize("name", NAMES)
def test_upstream_checkpoint_loads_strict(models, name):
    """A checkpoint with upstream's keys and shapes loads with strict=True (values: a seeded fill)."""
    model = models(name)
    g = torch.Generator().manual_seed(1)
    ckpt = {}
    for key, shape in expected_listing(name):
        ref = model.state_dict()[key]
        ckpt[key] = torch.randn(shape, generator=g).to(ref.dtype) if ref.is_floating_point() else ref.clone()
    fresh = build(name)
    fresh.load_state_dict(ckpt, strict=True)
    assert torch.equal(next(iter(fresh.state_dict().values())), next(iter(ckpt.values())))


def test_safnet_s_matches_upstream_listing():
    """SAFNet-S (no adapter of its own; docs/recipes/safnet.md wraps it with a declarative one)."""
    from _replicas import replica_module

    got = [(k, tuple(v.shape)) for k, v in replica_module("safnet").SAFNet_S().state_dict().items()]
    assert got == expected_listing("safnet_s")


def test_parameter_counts(models):
    # upstream numbers, from the same dumps: a cheap second check of the listings themselves
    counts = {"ahdr": 1_515_139, "hdr_transformer": 1_222_113, "sctnet": 994_555, "safnet": 1_120_849,
              "tmrnet": 13_285_704}
    for name, n in counts.items():
        if name == "ahdr" and not AHDR_MODEL.exists():
            continue
        assert sum(p.numel() for p in models(name).parameters()) == n, name


@pytest.mark.parametrize("name", ["ahdr", "hdr_transformer", "sctnet"])
def test_sigmoid_models_forward(models, name):
    model = models(name)
    with torch.no_grad():
        out = model(*_frames(1, 6, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 32, 32)
    assert 0.0 < out.min() and out.max() < 1.0


def test_sctnet_keeps_padded_size(models):
    """Upstream crops to [:H*upscale] with upscale=2 and no upsampling: a 30×38 input comes back 32×40."""
    with torch.no_grad():
        out = models("sctnet")(*_frames(1, 6, 30, 38))
    assert out.shape == (1, 3, 32, 40)


def test_safnet_forward_tuple(models):
    model = models("safnet")
    frames = _frames(1, 6, 64, 64)
    with torch.no_grad():
        merged, refined = model(*frames)
        only = model(*frames, refine=False)
    assert merged.shape == refined.shape == (1, 3, 64, 64)
    assert 0.0 <= refined.min() and refined.max() <= 1.0
    assert isinstance(only, torch.Tensor) and torch.allclose(only, merged)
    # the merge is a convex combination of the linear frames (channels 0:3), so it stays within their range
    lin = torch.stack([f[:, 0:3] for f in frames])
    assert merged.min() >= lin.min() - 1e-5 and merged.max() <= lin.max() + 1e-5


def test_safnet_any_size(models):
    with torch.no_grad():
        merged, refined = models("safnet")(*_frames(1, 6, 40, 56))
    assert refined.shape == (1, 3, 40, 56)


def test_tmrnet_forward_raw(models):
    model = models("tmrnet")
    g = torch.Generator().manual_seed(0)
    lqs = torch.rand(1, 5, 4, 16, 16, generator=g) * (4.0 ** (2 - torch.arange(5.0))).view(1, 5, 1, 1, 1)
    with torch.no_grad():
        out = model(lqs)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4, 16, 16)
    assert torch.isfinite(out).all()


def test_tmrnet_output_has_no_activation(models):
    """conv_last is the last op: the output is exactly conv_last of what reaches it (negative values allowed)."""
    model = models("tmrnet")
    seen = {}
    handle = model.conv_last.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    try:
        with torch.no_grad():
            out = model(torch.rand(1, 5, 4, 16, 16))
    finally:
        handle.remove()
    assert torch.equal(out, model.conv_last(seen["x"]))


def test_in_place_activations_kept(models):
    """The in-place activations upstream has after convs are in the replicas too (hooks must clone)."""
    tmr = models("tmrnet")
    assert tmr.lrelu.inplace and tmr.feat_extract.main[1].inplace
    assert tmr.feat_extract.main[2][0].relu.inplace
    assert tmr.dcn_alignment.conv_offset[1].inplace
    hdrt = models("hdr_transformer")
    assert hdrt.layers[0].residual_group.blocks[0].lce.conv[3].inplace
    # behaviour: a reference to conv_hr's output (no clone) is overwritten by the LeakyReLU that follows
    kept = {}

    def keep(m, args, out):
        kept["ref"], kept["copy"] = out, out.clone()

    handle = tmr.conv_hr.register_forward_hook(keep)
    try:
        with torch.no_grad():
            tmr(torch.rand(1, 5, 4, 16, 16) - 0.5)
    finally:
        handle.remove()
    assert not torch.equal(kept["ref"], kept["copy"])
    assert torch.equal(kept["ref"], nn.functional.leaky_relu(kept["copy"], 0.1))


def test_tmrnet_needs_no_weight_file():
    from argparse import Namespace

    from _replicas import replica_module

    model = replica_module("tmrnet").TMRNet(Namespace(isTrain=True))  # upstream would read ./ckpt/spynet/...
    assert isinstance(model.spynet, nn.Module)
