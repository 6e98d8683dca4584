import copy
import math

import pytest
import torch
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR, train_steps

from semkt_plugin import Adapter, HookPoint, SKTConfig
from semkt_plugin.wrapping import wrap

FAST = dict(perceptual="skb", **FROM_STEP_0)


def _train(model, skt, batch, steps=2):
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)
    return train_steps(model, skt, opt, [batch] * steps)[-1]["loss"]


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_train_then_unwrap_leaves_the_model_as_is(skb, batch):
    torch.manual_seed(0)
    model = TinyHDR()
    keys = list(TinyHDR().state_dict())
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    assert not set(dict(skt.named_parameters())) & {f"model.{k}" for k in keys}
    loss = _train(model, skt, batch)
    assert math.isfinite(loss)
    assert set(skt.last_losses) == {"spg", "content", "color", "feat", "orm", "total"}
    before = copy.deepcopy(model.state_dict())
    assert skt.unwrap() is model
    assert _hook_count(model) == 0
    after = model.state_dict()
    assert list(after) == keys
    assert all(torch.equal(before[k], after[k]) for k in keys)


def test_outputs_bit_identical_while_wrapped_and_after(skb, batch):
    frames, _ = batch
    model = TinyHDR()
    twin = copy.deepcopy(model)
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    assert torch.equal(model(*frames), twin(*frames))
    with torch.no_grad():
        assert torch.equal(model(*frames), twin(*frames))
    skt.unwrap()
    assert torch.equal(model(*frames), twin(*frames))


def _grads(params):
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]


@pytest.mark.parametrize("term", ["spg", "content", "color", "feat"])
def test_gradient_routing(skb, batch, term):
    frames, gt = batch
    model = TinyHDR()
    weights = {"lambda_spg": 0.0, "lambda_content": 0.0, "lambda_color": 0.0, "lambda_feat": 0.0}
    weights[f"lambda_{term}"] = 1.0
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST, **weights)
    if term != "spg":  # the teacher must differ from the student for content/color to have a gradient
        with torch.no_grad():
            skt.teacher.tail.weight.normal_(0, 0.1)
    skt.loss(model(*frames), gt).backward()
    orm, teacher, skam = _grads(model.parameters()), _grads(skt.teacher.parameters()), _grads(skt.skam.parameters())
    if term == "spg":
        assert any(teacher) and not any(orm) and not any(skam)
    else:
        assert any(orm) and not any(teacher)
        assert any(skam) == (term == "feat")
    skt.unwrap()


def test_teacher_moves_orm_when_configured(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST, lambda_content=0.0, lambda_color=0.0, lambda_feat=0.0,
               teacher_moves_orm=True)
    skt.loss(model(*frames), gt).backward()
    assert any(_grads(model.parameters()))
    skt.unwrap()


def test_plugin_state_round_trip_gives_the_same_loss(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    _train(model, skt, batch, steps=1)
    state = copy.deepcopy(skt.state_dict())
    assert not any(k.startswith(("skb.", "model.")) for k in state)
    twin_model = copy.deepcopy(model)
    expected = skt.loss(model(*frames), gt).item()
    skt.unwrap()

    twin = wrap(twin_model, TINY_ADAPTER, skb=skb, **FAST)
    twin.load_state_dict(state)
    assert twin.loss(twin_model(*frames), gt).item() == pytest.approx(expected, rel=1e-6)
    twin.unwrap()


def test_ablation_switches_drop_terms(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, lambda_color=0.0, use_skam=False, lambda_content=0.0, use_priors=False,
               **FROM_STEP_0)
    assert skt.skb is None and skt.skam is None and _hook_count(model) == 0
    skt.loss(model(*frames), gt)
    assert set(skt.last_losses) == {"spg", "orm", "total"}
    skt.unwrap()


def test_unwrap_by_the_model(skb):
    from semkt_plugin import unwrap

    model = TinyHDR()
    hooks = _hook_count(model)
    wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    assert _hook_count(model) > hooks
    assert unwrap(model) is model and _hook_count(model) == hooks
    with pytest.raises(ValueError, match="not wrapped by semkt"):
        unwrap(model)
    wrap(model, TINY_ADAPTER, skb=skb, **FAST).unwrap()  # and it can be wrapped again


def test_wrapping_twice_is_refused(skb):
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    with pytest.raises(RuntimeError, match="already wrapped"):
        wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    skt.unwrap()
    wrap(model, TINY_ADAPTER, skb=skb, **FAST).unwrap()


def test_misspelled_hook_names_the_closest_modules(skb):
    with pytest.raises(KeyError, match="closest module names: conv1"):
        wrap(TinyHDR(), Adapter("bad", [HookPoint("conv_1")]), skb=skb, **FROM_STEP_0)


def test_bad_inputs_get_clear_errors(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    out = model(*frames)
    with pytest.raises(ValueError, match="target shape"):
        skt.loss(out, gt[:, :, :16])
    with pytest.raises(ValueError, match="NaN"):
        skt.loss(out * float("nan"), gt)
    with pytest.raises(TypeError, match="adapter's `output`"):
        skt.loss((out, out), gt)
    skt.unwrap()
    skt = wrap(model, Adapter("tiny", TINY_ADAPTER.hooks, output=2), skb=skb, **FAST)
    with pytest.raises(ValueError, match="fix the adapter's `output`"):
        skt.loss((out, out), gt)
    with pytest.raises(ValueError, match=r"pass the model's whole return value \(skt.loss\(out, gt\), not "
                                         r"skt.loss\(out\[2\], gt\)\)"):
        skt.loss(out, gt)  # the user indexed the output themselves
    skt.unwrap()


def test_hook_that_never_fires_is_explained(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    with torch.no_grad():
        out = model(*frames)
    with pytest.raises(RuntimeError, match="did not fire"):
        skt.loss(out, gt)
    skt.unwrap()


def test_config_rejects_unknown_fields(skb):
    with pytest.raises(ValueError, match="unknown SKTConfig fields"):
        SKTConfig().replace(lamda_color=1.0)
    with pytest.raises(ValueError, match="unknown SKTConfig fields"):
        wrap(TinyHDR(), TINY_ADAPTER, skb=skb, lamda_color=1.0)
    # an adapter's config may set any strategy's fields (SMHDR's here), but a misspelling is an error too
    smhdr_setting = Adapter("tiny", TINY_ADAPTER.hooks, config={"mask_temperature": 2.0})
    wrap(TinyHDR(), smhdr_setting, skb=skb, total_steps=10, perceptual="skb").unwrap()
    misspelled = Adapter("tiny", TINY_ADAPTER.hooks, config={"lamda_color": 1.0})
    with pytest.raises(ValueError, match="adapter 'tiny' sets 'lamda_color', which no strategy's settings have; "
                                         "did you mean lambda_color"):
        wrap(TinyHDR(), misspelled, skb=skb, total_steps=10)
    constant = Adapter("tiny", TINY_ADAPTER.hooks, config={"schedule_points": ()})  # a class constant, not a setting
    with pytest.raises(ValueError, match="adapter 'tiny' sets 'schedule_points', which no strategy's settings have"):
        wrap(TinyHDR(), constant, skb=skb, total_steps=10)


def test_wrap_leaves_the_global_rng_alone_and_inits_from_the_seed(skb):
    models = [TinyHDR() for _ in range(3)]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = wrap(models[0], TINY_ADAPTER, skb=skb, **FAST)
    b = wrap(models[1], TINY_ADAPTER, skb=skb, **FAST, seed=0)
    c = wrap(models[2], TINY_ADAPTER, skb=skb, **FAST, seed=1)
    assert torch.equal(torch.rand(3), expected)  # the user's random stream did not move
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))
    for skt in (a, b, c):
        skt.unwrap()


def test_distillation_warmup_ramps_the_weights_and_counts_training_steps(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **{**FAST, "distill_warmup": 4}, lambda_spg=0.0)
    totals = []
    for _ in range(2):
        loss = skt.loss(model(*frames), gt)
        parts = skt.last_losses
        totals.append((loss.item(), parts))
    assert int(skt.steps) == 2
    cfg = skt.config
    for i, (total, parts) in enumerate(totals):
        full = (cfg.lambda_content * parts["content"] + cfg.lambda_color * parts["color"]
                + cfg.lambda_feat * parts["feat"])
        assert total == pytest.approx((i + 1) / 4 * full, rel=1e-5)
    skt.unwrap()


def test_background_region_covers_what_no_region_covers():
    from semkt_plugin.strategies.skt.strategy import with_background

    regions = torch.zeros(1, 2, 2, 2)
    regions[0, 0, 0, 0] = 1.0
    regions[0, 1, 1, 1] = 0.25
    rest = with_background(regions)[0, -1]
    assert rest.tolist() == [[0.0, 1.0], [1.0, 0.75]]


def test_slim_teacher_trains_through_wrap(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST, teacher_stride=2)
    assert skt.teacher.stride == 2
    skt.loss(model(*frames), gt).backward()  # SKAM resizes the half-resolution teacher features to the hooks'
    assert set(skt.last_losses) == {"spg", "content", "color", "feat", "orm", "total"}
    assert all(p.grad is not None for p in skt.parameters())
    skt.unwrap()
    with pytest.raises(ValueError, match="teacher_stride"):  # refused by the settings, before anything is built
        wrap(TinyHDR(), TINY_ADAPTER, skb=skb, **FAST, teacher_stride=0)
