"""Each built-in adapter, looked up by name through its entry point, on the replica of its upstream model at the
default configuration: wrap, train two steps with a finite loss, unwrap to the model's own state_dict."""
from __future__ import annotations

import copy

import pytest
import torch
from _replicas import NAMES, build, expected_listing
from conftest import FROM_STEP_0

from semkt_plugin import wrap
from semkt_plugin.domain import mu_law
from semkt_plugin.strategies.base import select_output


def _batch(name: str, g: torch.Generator):
    if name == "tmrnet":  # packed RGGB, 5 frames, frame t pre-multiplied by 4**(2 - t); target at the x16 scale
        expo = (4.0 ** (2 - torch.arange(5.0))).view(1, 5, 1, 1, 1)
        return [torch.rand(1, 5, 4, 16, 16, generator=g) * expo], 16 * torch.rand(1, 4, 16, 16, generator=g)
    size = 64 if name == "safnet" else 32  # SAFNet's backward gives NaN at 32x32 (its 1/32 level is 1x1)
    return [torch.rand(1, 6, size, size, generator=g) for _ in range(3)], torch.rand(1, 3, size, size, generator=g)


@pytest.mark.parametrize("name", NAMES)
def test_wrap_train_two_steps_unwrap(name, skb):
    torch.manual_seed(0)
    model = build(name)
    initial = copy.deepcopy(model.state_dict())
    skt = wrap(model, name, skb=skb, perceptual="skb", **FROM_STEP_0)
    assert skt.adapter.source == "semkt:builtin"
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-4)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        inputs, target = _batch(name, g)
        out = model(*inputs)
        h = select_output(out, skt.adapter.output) / skt.adapter.scale
        own = (mu_law(h.clamp_min(0)) - mu_law(target / skt.adapter.scale)).abs().mean()  # each repo's μ-law L1
        loss = own + skt.loss(out, target)
        assert torch.isfinite(loss), skt.last_losses
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(skt.last_losses) == {"spg", "content", "color", "feat", "orm", "total"}
    assert skt.last_losses["feat"] > 0
    trained = copy.deepcopy(model.state_dict())
    assert skt.unwrap() is model
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
    after = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in after.items()] == expected_listing(name)
    assert all(torch.equal(after[k], trained[k]) for k in after)
    assert any(not torch.equal(after[k], initial[k]) for k in after)  # it did train
