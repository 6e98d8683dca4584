"""Mixed precision (bf16 autocast, fp16 autocast + GradScaler) and torch.compile of the wrapped model."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR, train_steps

from semkt_plugin.domain import domain_transfer
from semkt_plugin.strategies.skt.losses import histogram_loss
from semkt_plugin.wrapping import wrap

FAST = dict(perceptual="skb", **FROM_STEP_0)
# compile concerns the ORM; skip the SKB
CHEAP = dict(lambda_color=0.0, use_priors=False, lambda_content=0.0, **FROM_STEP_0)


def _fp16_on_cpu() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return torch.nn.functional.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)).dtype == torch.float16
    except RuntimeError:
        return False


def _amp_steps(model, skt, batch, dtype, scaler, steps):
    frames, gt = batch
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=dtype):
            out = model(*frames)
            loss = F.l1_loss(out, gt) + skt.loss(out, gt)
        assert out.dtype == dtype  # autocast really ran the ORM in reduced precision
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(skt.last_losses)
    return losses


def test_bf16_autocast_gives_finite_losses_and_grads(skb, batch):
    torch.manual_seed(0)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    losses = _amp_steps(model, skt, batch, torch.bfloat16, torch.amp.GradScaler("cpu", enabled=False), steps=2)
    assert set(losses[-1]) == {"spg", "content", "color", "feat", "orm", "total"}
    assert all(math.isfinite(v) for step in losses for v in step.values())
    assert all(torch.isfinite(p.grad).all() for p in [*model.parameters(), *skt.parameters()] if p.grad is not None)
    skt.unwrap()


@pytest.mark.skipif(not _fp16_on_cpu(), reason="this torch build has no float16 autocast on CPU")
def test_fp16_autocast_with_grad_scaler_trains(skb, batch):
    torch.manual_seed(0)
    model = TinyHDR()
    start = copy.deepcopy(model.state_dict())
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    scaler = torch.amp.GradScaler("cpu")
    # λ_color = 100 makes the scaled loss overflow fp16 gradients at the initial scale 2^16: the scaler backs off
    # and skips those steps, as it should; some of the steps must still go through
    frames, gt = batch  # one image: CPU float16 convolutions have no fast kernels
    losses = _amp_steps(model, skt, ([f[:1] for f in frames], gt[:1]), torch.float16, scaler, steps=3)
    assert all(math.isfinite(v) for step in losses for v in step.values())
    assert 0 < scaler.get_scale() <= 2.0 ** 16
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items()), "no step was taken"
    skt.unwrap()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mu_law_and_histograms_stay_float32_under_autocast(dtype):
    g = torch.Generator().manual_seed(0)
    h = (torch.rand(2, 3, 16, 16, generator=g) ** 4).to(dtype)  # mostly dark tones, where half precision hurts
    other = torch.rand(2, 3, 16, 16, generator=g)
    regions = (torch.rand(2, 4, 16, 16, generator=g) > 0.5).float()
    with torch.autocast("cpu", dtype=dtype):
        tone = domain_transfer(h)
        hist = histogram_loss(tone, other, regions, bins=64)
    assert tone.dtype == torch.float32 and hist.dtype == torch.float32
    reference = domain_transfer(h.float())
    assert torch.equal(tone, reference)
    assert torch.equal(hist, histogram_loss(reference, other, regions, bins=64))


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_hooks_add_no_graph_breaks(fresh_dynamo, batch):
    frames, _ = batch
    model = TinyHDR()
    plain = torch._dynamo.explain(model)(*frames)
    skt = wrap(model, TINY_ADAPTER, **CHEAP)
    wrapped = torch._dynamo.explain(model)(*frames)
    skt.unwrap()
    assert wrapped.graph_break_count == plain.graph_break_count == 0, wrapped.break_reasons
    assert wrapped.graph_count == plain.graph_count


def _compiled_vs_eager(batch, backend, order, steps=2):
    frames, gt = batch
    torch.manual_seed(0)
    eager = TinyHDR()
    model = copy.deepcopy(eager)
    runs = {}
    for name, net in (("eager", eager), ("compiled", model)):
        torch.manual_seed(1)  # same plugin weights for both
        if name == "eager":
            call = wrapped = net
            skt = wrap(net, TINY_ADAPTER, **CHEAP)
        elif order == "compile-then-wrap":
            call = wrapped = torch.compile(net, backend=backend)
            skt = wrap(call, TINY_ADAPTER, **CHEAP)
        else:
            wrapped = net
            skt = wrap(net, TINY_ADAPTER, **CHEAP)
            call = torch.compile(net, backend=backend)
        opt = torch.optim.Adam([*net.parameters(), *skt.parameters()], 1e-3)
        runs[name] = train_steps(call, skt, opt, [(frames, gt)] * steps)
        assert skt.unwrap() is wrapped
    return runs


@pytest.mark.parametrize("order", ["compile-then-wrap", "wrap-then-compile"])
def test_compiled_model_trains_like_eager(fresh_dynamo, batch, order):
    runs = _compiled_vs_eager(batch, "aot_eager", order)
    for eager, compiled in zip(runs["eager"], runs["compiled"]):
        assert compiled == pytest.approx(eager, rel=1e-5, abs=1e-7)


@pytest.mark.slow
def test_inductor_compiled_model_trains_like_eager(fresh_dynamo, batch):
    runs = _compiled_vs_eager(batch, "inductor", "compile-then-wrap")
    for eager, compiled in zip(runs["eager"], runs["compiled"]):
        assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-6)


def test_wrapping_an_already_compiled_model_needs_a_dynamo_reset(fresh_dynamo, batch):
    frames, gt = batch
    model = TinyHDR()
    compiled = torch.compile(model, backend="aot_eager")
    compiled(*frames)  # dynamo has traced the model without hooks and will not look again on its own
    skt = wrap(compiled, TINY_ADAPTER, **CHEAP)
    with pytest.raises(RuntimeError, match=r"compiled and run before wrap\(\).*torch\._dynamo\.reset\(\)"):
        skt.loss(compiled(*frames), gt)
    torch._dynamo.reset()
    assert torch.isfinite(skt.loss(compiled(*frames), gt))
    skt.unwrap()


def test_frozen_networks_in_bfloat16_stay_near_float32(skb, batch, vgg19_file):
    """``frozen_dtype="bfloat16"``: the SKB and VGG19 compute in bfloat16, return float32, pass gradients on; the
    caller's SKB is left in float32. The first step's terms (same init) stay within bfloat16's rounding."""
    frames, gt = batch
    values = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model = TinyHDR()
        skt = wrap(model, TINY_ADAPTER, skb=skb, frozen_dtype=dtype, vgg19_weights=str(vgg19_file), **FROM_STEP_0)
        out = model(*frames)
        loss = skt.loss(out, gt)
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
        assert next(skt.skb.parameters()).dtype == getattr(torch, dtype)
        assert next(skt.perceptual.parameters()).dtype == getattr(torch, dtype)
        values[dtype] = skt.last_losses
    assert next(skb.parameters()).dtype == torch.float32
    for name, value in values["float32"].items():
        assert abs(values["bfloat16"][name] - value) <= 0.05 * abs(value) + 1e-6, name
