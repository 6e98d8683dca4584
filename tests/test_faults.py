"""Faults in the user's training loop: exceptions in forward or loss leave no hooks, captures or graphs behind."""
import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from conftest import NO_SKB as CHEAP
from conftest import TINY_ADAPTER, Boom, FlakyHDR, TinyHDR
from torch import nn

from semkt_plugin.wrapping import wrap


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _live_tensors() -> int:
    gc.collect()
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())  # type(): no deprecated-proxy warnings


@pytest.fixture
def one_thread():
    # intra-op threads only add contention on 8x8 images
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_failing_step_every_ten_leaves_nothing_behind(one_thread):
    torch.manual_seed(0)
    model = FlakyHDR(4)
    keys = list(model.state_dict())
    skt = wrap(model, TINY_ADAPTER, **CHEAP)
    hooks_when_wrapped = _hook_count(model)
    opt = torch.optim.SGD([*model.parameters(), *skt.parameters()], 1e-3)
    frames, gt = [torch.rand(1, 6, 8, 8) for _ in range(3)], torch.rand(1, 3, 8, 8)
    bad_gt = gt.clone()
    bad_gt[0, 0, 0, 0] = float("nan")
    stale: list[weakref.ref] = []
    counts = {}
    failures = {"forward": 0, "user loss": 0, "plugin loss": 0}
    for step in range(1, 1001):
        kind = {0: "forward", 10: "user loss", 20: "plugin loss"}.get(step % 30) if step % 10 == 0 else None
        model.fail = kind == "forward"
        try:
            out = model(*frames)
            if kind == "user loss":
                stale = [weakref.ref(t) for t in skt.hooks.captured.values()]
                raise Boom("user loss")
            loss = F.l1_loss(out, gt) + skt.loss(out, bad_gt if kind == "plugin loss" else gt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        except (Boom, ValueError) as err:
            failures[kind] += 1
            assert kind == "plugin loss" or isinstance(err, Boom)
            if kind == "user loss":  # the plugin cannot see this one; the next forward drops the captures
                assert len(skt.hooks.captured) == 2
            else:  # the plugin's own forward hook (forward) or its finally (loss) dropped them already
                assert skt.hooks.captured == {}
        else:
            assert kind is None
            assert not any(ref() is not None for ref in stale), "captures of a failed step outlived the next one"
            assert skt.hooks.captured == {} and torch.isfinite(loss)
        assert _hook_count(model) == hooks_when_wrapped
        if step in (100, 1000):
            counts[step] = _live_tensors()
    assert sum(failures.values()) == 100 and min(failures.values()) == 33
    assert counts[1000] <= counts[100], f"live tensors grew from {counts[100]} to {counts[1000]}"
    assert skt.unwrap() is model and _hook_count(model) == 0
    assert list(model.state_dict()) == keys


def test_no_grad_forward_captures_nothing_and_keeps_no_graph():
    model = TinyHDR(4)
    skt = wrap(model, TINY_ADAPTER, **CHEAP)
    with torch.no_grad():
        model(*[torch.rand(1, 6, 8, 8) for _ in range(3)])
    assert skt.hooks.captured == {}
    skt.unwrap()


def test_wrapping_twice_is_refused_through_containers():
    model = TinyHDR(4)
    skt = wrap(model, TINY_ADAPTER, **CHEAP)
    for container in (nn.DataParallel(model), torch.compile(model)):
        with pytest.raises(RuntimeError, match=r"already wrapped by semkt; call \.unwrap\(\)"):
            wrap(container, TINY_ADAPTER, **CHEAP)
    assert _hook_count(model) == 4  # the refused calls added nothing: pre + always-called root hooks, two points
    skt.unwrap()
    wrap(nn.DataParallel(model), TINY_ADAPTER, **CHEAP).unwrap()
    assert _hook_count(model) == 0


def test_a_compiled_forward_that_raises_drops_its_captures():
    torch._dynamo.reset()
    model = FlakyHDR(4)
    compiled = torch.compile(model, backend="aot_eager")
    skt = wrap(compiled, TINY_ADAPTER, **CHEAP)
    frames = [torch.rand(1, 6, 8, 8) for _ in range(3)]
    compiled(*frames)
    assert len(skt.hooks.captured) == 2  # the hooks were traced into the graph
    model.fail = True
    with pytest.raises(Boom):
        compiled(*frames)
    assert skt.hooks.captured == {}
    skt.unwrap()
    torch._dynamo.reset()
