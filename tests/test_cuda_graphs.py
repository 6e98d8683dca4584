"""CUDA graphs over the plugin's parts (``cuda_graphs=True``): the same training as eager, and eager where a
graph cannot serve.

Each test runs on ``cuda`` where there is a GPU (``scripts/device_check.sh`` runs them there) and on ``cpu``
through :class:`Rerun`, a stand-in for the graphs that replays by running the call again: all that surrounds a
graph (inputs copied in, outputs and gradients handed out, a backward still pending, new shapes, moved memory) is
tested on every machine, the capture itself only on a GPU.
"""
import contextlib
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR

from semkt_plugin.cuda_graphs import CudaGraphed, _Graph
from semkt_plugin.wrapping import wrap

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


class Rerun(_Graph):
    """A CUDA graph's stand-in on the CPU: a replay runs the recorded function again and copies what it computes
    into the tensors the capture returned, as a graph's kernels rewrite them in place."""

    @contextlib.contextmanager
    def _session(self, device):
        yield

    def _record(self, fn):
        result, grad = fn(), torch.is_grad_enabled()

        def replay():
            with torch.set_grad_enabled(grad):  # a Function's forward runs without grad; a graph does not care
                fresh = fn()
            for static, new in zip(result, fresh):
                if static is not None:
                    static.detach().copy_(new)
            if fn.__name__ == "forward":
                self.live = fresh  # the backward differentiates the last forward, as a graph's reads its memory

        return result, replay


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=cuda)])
def device(request, monkeypatch):
    if request.param == "cpu":
        monkeypatch.setattr(CudaGraphed, "graph_class", Rerun)
        monkeypatch.setattr(CudaGraphed, "_graphable", staticmethod(
            lambda flat: bool(flat) and all(isinstance(x, torch.Tensor) for x in flat)
            and not torch.is_inference_mode_enabled()))
    return request.param


SETTINGS = dict(perceptual="skb", **FROM_STEP_0)  # every part from the first step: teacher, SKB, both losses, SKAM


def _data(size: int = 64, batch: int = 2, steps: int = 4, seed: int = 0, device: str = "cuda"):
    g = torch.Generator().manual_seed(seed)
    return [([torch.rand(batch, 6, size, size, generator=g).to(device) for _ in range(3)],
             torch.rand(batch, 3, size, size, generator=g).to(device)) for _ in range(steps)]


def _arms(skb, device: str, **settings):
    """The same model and plugin twice on ``device``, eager and with CUDA graphs: ``{graphs: (model, skt, opt)}``."""
    torch.manual_seed(0)
    model = TinyHDR(16)
    arms = {}
    for graphs in (False, True):
        m = copy.deepcopy(model).to(device)
        skt = wrap(m, TINY_ADAPTER, skb=copy.deepcopy(skb), cuda_graphs=graphs, **{**SETTINGS, **settings})
        arms[graphs] = (m, skt, torch.optim.Adam([*m.parameters(), *skt.parameters()], 1e-3))
    return arms


def _graphed(skt) -> list[CudaGraphed]:
    return [g for g in skt.graphed.values() if g is not None] + skt.skam.graphed


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-6)


def test_training_with_graphs_follows_eager(skb, device):
    arms = _arms(skb, device)
    records = {}
    for graphs, (model, skt, opt) in arms.items():
        records[graphs] = []
        for frames, gt in _data(device=device):
            out = model(*frames)
            loss = F.l1_loss(out, gt) + skt.loss(out, gt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            records[graphs].append(skt.last_losses)
    for eager, graphed in zip(records[False], records[True]):
        assert eager.keys() == graphed.keys()
        for name in eager:
            assert _close(eager[name], graphed[name]), (name, eager[name], graphed[name])
    for a, b in zip(arms[False][0].parameters(), arms[True][0].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(arms[False][1].parameters(), arms[True][1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    graphed = _graphed(arms[True][1])
    assert all(g.eager_calls == 0 for g in graphed)  # every part replayed its graph at every step
    assert sum(g.replays for g in graphed) >= 4 * 5  # teacher, 2 SKB passes, 2 SKAM stages per step
    assert all(g.replays == 0 for g in _graphed(arms[False][1]))


def test_two_losses_before_one_backward_run_the_second_eagerly(skb, device):
    """Gradient accumulation over summed losses: the second call of a part must not overwrite the activations the
    first call's backward still needs."""
    (frames, gt), (frames2, gt2) = _data(steps=2, device=device)
    grads = {}
    for graphs, (model, skt, _) in _arms(skb, device).items():
        first = skt.loss(model(*frames), gt)  # each forward's hooked features go to its own loss call
        (first + skt.loss(model(*frames2), gt2)).backward()
        grads[graphs] = [p.grad.clone() for p in (*model.parameters(), *skt.parameters()) if p.grad is not None]
        if graphs:
            assert skt.graphed["teacher"].replays == 1 and skt.graphed["teacher"].eager_calls == 1
    assert len(grads[False]) == len(grads[True])
    for a, b in zip(grads[False], grads[True]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_no_grad_calls_and_a_new_shape(skb, device):
    arms = _arms(skb, device)
    for size in (64, 96):
        (frames, gt), = _data(size=size, steps=1, device=device)
        values = {}
        for graphs, (model, skt, _) in arms.items():
            out = model(*frames)  # SKAM's hooks capture in a forward with grad
            with torch.no_grad():
                skt.loss(out, gt)
                values[graphs] = skt.last_losses
        for name in values[False]:
            assert _close(values[False][name], values[True][name]), name
    assert arms[True][1].graphed["teacher"].replays == 2  # one graph per shape


def test_new_memory_is_captured_again(skb, device):
    """Parameters that now live elsewhere (``.to()``, ``.cuda()``, a replaced tensor) get new graphs: the old
    ones would read freed memory."""
    model, skt, _ = _arms(skb, device)[True]
    (frames, gt), = _data(steps=1, device=device)
    skt.loss(model(*frames), gt).backward()
    with torch.no_grad():
        for p in skt.teacher.parameters():
            p.data = p.data.clone()
    skt.loss(model(*frames), gt).backward()
    assert skt.graphed["teacher"].replays == 2 and len(skt.graphed["teacher"]._graphs) == 1


@cuda
def test_a_copy_and_a_moved_plugin_train_on_their_own_graphs(skb):
    (model, skt, opt) = _arms(skb, "cuda")[True]
    data = _data(steps=2)
    for frames, gt in data:
        out = model(*frames)
        (F.l1_loss(out, gt) + skt.loss(out, gt)).backward()
    twin = copy.deepcopy(skt)
    assert twin.graphed["teacher"].module is twin.teacher and twin.graphed["teacher"].replays == 0
    skt.cpu()
    model.cpu()
    frames, gt = data[0]
    out = model(*(f.cpu() for f in frames))
    skt.loss(out, gt.cpu()).backward()  # on the CPU: eagerly
    assert skt.graphed["teacher"].eager_calls == 1
    skt.cuda()
    model.cuda()
    out = model(*frames)
    before = skt.graphed["teacher"].replays
    skt.loss(out, gt).backward()  # new memory: captured again, not replayed on the old
    assert skt.graphed["teacher"].replays == before + 1 and torch.isfinite(skt.teacher.head.weight.grad).all()


def test_copies_keep_the_networks_and_drop_the_graphs(skb):
    """On any device: a deep copy of the plugin graphs its own copies of the networks; pickling drops graphs."""
    torch.manual_seed(0)
    skt = wrap(TinyHDR(8), TINY_ADAPTER, skb=skb, **SETTINGS)
    twin = copy.deepcopy(skt)
    assert twin.graphed["teacher"].module is twin.teacher
    assert twin.graphed["skb"].module is twin.skb and twin.graphed["perceptual"] is twin.graphed["skb features"]
    assert [g.module for g in twin.skam.graphed] == list(twin.skam.stages)
    graphed = CudaGraphed(torch.nn.Linear(2, 2))
    graphed(torch.ones(1, 2))
    again = pickle.loads(pickle.dumps(graphed))
    assert again.eager_calls == 1 and again._graphs == {}


def test_on_the_cpu_the_module_runs_as_it_is():
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 4, 3)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    graphed = CudaGraphed(layer)
    assert torch.equal(graphed(x), layer(x)) and graphed.eager_calls == 1 and graphed.replays == 0


def test_what_a_call_returns_is_the_callers(device):
    """Outputs and input gradients are the caller's tensors: the next replay leaves them as they were."""
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 4, 3).to(device)
    graphed = CudaGraphed(layer)
    x, y = (torch.rand(1, 3, 8, 8, device=device, requires_grad=True) for _ in range(2))
    with torch.no_grad():
        first = graphed(x)
        graphed(y)
    kept = []
    x.register_hook(kept.append)  # a hook may keep the gradient it is handed
    out = graphed(x)
    out.pow(2).sum().backward()
    grad = kept[0].clone()
    graphed(y).pow(2).sum().backward()
    with torch.no_grad():
        assert torch.allclose(first, layer(x), atol=1e-6) and torch.allclose(out, first)
    assert torch.equal(kept[0], grad) and graphed.replays == 4
