"""The built-in adapters against the replicas of their models, with plain torch hooks.

For every hook point: the path is a module, a hook of the declared kind fires the expected number of times
in one forward, the kept call (``call``, ``select``, ``frames``/``frame``, ``layout``) is a 4-D
``(B, C, H, W)`` map at the model output's resolution, and nothing later in the forward writes into it.
"""
from __future__ import annotations

import importlib
import math

import pytest
import torch
from _replicas import AHDR_MODEL, NAMES, build
from torch import nn

from semkt_plugin.adapter import Adapter, HookPoint

# per adapter: input maker, then per hook point (calls per forward, channels)
EXPECTED = {
    "ahdr": {"conv2": (1, 64), "RDB2": (1, 64), "conv_up": (1, 64)},
    "hdr_transformer": {"conv_first": (1, 60), "layers.1.dilated_conv": (1, 60), "conv_last": (1, 60)},
    "sctnet": {"layers.0.conv": (1, 60), "layers.2.conv": (1, 60), "upsample": (1, 60)},
    "safnet": {"refinenet.resblock1": (1, 80), "refinenet.resblock3": (1, 80), "refinenet.resblock5": (1, 80)},
    "tmrnet": {"feat_extract": (1, 64), "backbone.backward": (5, 64), "conv_last": (1, 64)},
}
OUT_CHANNELS = {"srgb": 3, "raw": 4}


def _inputs(name: str, b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if name == "tmrnet":
        expo = (4.0 ** (2 - torch.arange(5.0))).view(1, 5, 1, 1, 1)
        return [torch.rand(b, 5, 4, 16, 16, generator=g) * expo]
    return [torch.rand(b, 6, 32, 32, generator=g) for _ in range(3)]


def _builtin() -> dict[str, Adapter]:
    module = importlib.import_module("semkt_adapters")
    return {a.name: a for a in module.semkt_register_adapters()}


def _model(name):
    if name == "ahdr" and not AHDR_MODEL.exists():
        pytest.skip("examples/ahdr/model.py is not written yet")
    torch.manual_seed(0)
    return build(name).eval()


def _pick(value, select):
    return value[select] if isinstance(value, (tuple, list)) else value


def _to_map(x: torch.Tensor, point: HookPoint, aspect: float) -> torch.Tensor:
    """HookPoint's rules: tokens laid out row by row (h/w from the output's aspect), folded frames split."""
    if point.layout == "tokens":
        b, length, c = x.shape
        h = min((d for d in range(1, length + 1) if length % d == 0),
                key=lambda d: abs(math.log(d * d / length / aspect)))
        x = x.transpose(1, 2).reshape(b, c, h, length // h)
    if point.frames > 1:
        x = x.reshape(-1, point.frames, *x.shape[1:])[:, point.frame]
    return x


def _run_with_hooks(model: nn.Module, adapter: Adapter, inputs):
    """One forward with a plain hook per point; returns the output and, per point, every call's tensor
    as (reference, clone at hook time)."""
    modules = dict(model.named_modules())
    calls = {p.path: [] for p in adapter.hooks}
    handles = []
    for point in adapter.hooks:
        record = calls[point.path]
        if point.kind == "pre":
            def fn(m, args, p=point, r=record):
                return r.append((_pick(args, p.select), _pick(args, p.select).clone()))

            handles.append(modules[point.path].register_forward_pre_hook(fn))
        else:
            def fn(m, args, out, p=point, r=record):
                return r.append((_pick(out, p.select), _pick(out, p.select).clone()))

            handles.append(modules[point.path].register_forward_hook(fn))
    try:
        out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return out, calls


def test_registered_through_pluggy_hookimpl():
    adapters = _builtin()
    assert sorted(adapters) == sorted(NAMES)
    module = importlib.import_module("semkt_adapters")
    assert hasattr(module.semkt_register_adapters, "semkt_impl")  # marked with semkt's hookimpl
    for name in NAMES:
        sub = importlib.import_module(f"semkt_adapters.{name}")
        assert sub.ADAPTER is adapters[name] and len(sub.__doc__) > 400
        assert Adapter.from_dict(adapters[name].to_dict()) == adapters[name]


def test_entry_point_registry():
    registry = pytest.importorskip("semkt_plugin.registry")
    from importlib.metadata import entry_points

    if not any(ep.name == "builtin" for ep in entry_points(group="semkt.plugins")):
        pytest.skip("semkt is not installed (no semkt.plugins entry points)")
    registry.reset()
    found = registry.adapters()
    for name in NAMES:
        assert found[name].source == "semkt:builtin"
        assert found[name].hooks == _builtin()[name].hooks


def test_domains_and_scales():
    a = _builtin()
    for name in ("ahdr", "hdr_transformer", "sctnet", "safnet"):
        assert (a[name].domain, a[name].scale, a[name].negative) == ("srgb", 1.0, "error")
    assert (a["tmrnet"].domain, a["tmrnet"].scale, a["tmrnet"].negative, a["tmrnet"].bayer) == (
        "raw", 16.0, "clamp", "RGGB"
    )
    assert a["safnet"].output == 1 and all(a[n].output is None for n in NAMES if n != "safnet")


@pytest.mark.parametrize("name", NAMES)
def test_hook_points_fire_and_give_full_resolution_maps(name):
    adapter = _builtin()[name]
    model = _model(name)
    modules = dict(model.named_modules())
    assert [p.path for p in adapter.hooks] == list(EXPECTED[name])
    for point in adapter.hooks:
        assert point.path in modules, point.path
    inputs = _inputs(name)
    batch = inputs[0].shape[0]
    out, calls = _run_with_hooks(model, adapter, inputs)
    h_in = out if adapter.output is None else out[adapter.output]
    assert h_in.shape == (batch, OUT_CHANNELS[adapter.domain], *h_in.shape[-2:])
    aspect = h_in.shape[-2] / h_in.shape[-1]
    for point in adapter.hooks:
        fired, channels = EXPECTED[name][point.path]
        record = calls[point.path]
        assert len(record) == fired, f"{point.path} fired {len(record)}×, expected {fired}×"
        assert -fired <= point.call < fired
        ref, copy = record[point.call]
        # nothing later in the forward wrote into the captured tensor (no in-place op after the hook point)
        assert torch.equal(ref, copy), f"{point.path}: overwritten in place after the hook"
        fmap = _to_map(copy, point, aspect)
        assert fmap.ndim == 4 and fmap.shape == (batch, channels, *h_in.shape[-2:]), (point.path, fmap.shape)


def test_tmrnet_frames_fold_is_batch_major_and_keeps_the_reference():
    """Two samples with the same reference frame and different other frames: the kept feat_extract frame
    (frames=5, frame=0) is identical for both, and it is not for another frame."""
    adapter = _builtin()["tmrnet"]
    point = next(p for p in adapter.hooks if p.path == "feat_extract")
    model = _model("tmrnet")
    (lqs,) = _inputs("tmrnet", b=2)
    lqs[1, 0] = lqs[0, 0]
    with torch.no_grad():
        _, calls = _run_with_hooks(model, adapter, [lqs])
    fmap = _to_map(calls["feat_extract"][0][1], point, 1.0)
    assert torch.equal(fmap[0], fmap[1])
    other = _to_map(calls["feat_extract"][0][1], HookPoint("feat_extract", frames=5, frame=1), 1.0)
    assert not torch.allclose(other[0], other[1])


def test_sctnet_hooks_follow_the_padded_output():
    """Off a multiple of 8, SCTNet's output and its hooked maps are both at the padded size."""
    adapter = _builtin()["sctnet"]
    model = _model("sctnet")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out, calls = _run_with_hooks(model, adapter, [torch.rand(1, 6, 30, 38, generator=g) for _ in range(3)])
    assert out.shape[-2:] == (32, 40)
    for point in adapter.hooks:
        assert calls[point.path][-1][1].shape[-2:] == (32, 40)


@pytest.mark.parametrize("name", NAMES)
def test_hooked_maps_carry_gradient_to_the_model(name):
    """A loss on the kept maps reaches the model's parameters (what SKAM relies on)."""
    adapter = _builtin()[name]
    model = _model(name).train()
    inputs = _inputs(name, b=1)
    out, calls = _run_with_hooks(model, adapter, inputs)
    loss = sum(_to_map(calls[p.path][p.call][1], p, 1.0).square().mean() for p in adapter.hooks)
    loss.backward()
    shallow = {"ahdr": "conv1.weight", "hdr_transformer": "conv_f2.weight", "sctnet": "conv2.weight",
               "safnet": "refinenet.conv1.0.0.weight", "tmrnet": "feat_extract.main.0.weight"}[name]
    grad = dict(model.named_parameters())[shallow].grad
    assert grad is not None and grad.abs().sum() > 0
