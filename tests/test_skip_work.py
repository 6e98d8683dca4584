"""No repeated or wasted work per step: one SKB trunk pass for priors and the student's perceptual features, nothing
computed for a term whose weight is 0, no feature captures while SKAM will not read them."""
import pytest
import torch
import torch.nn.functional as F
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR

from semkt_plugin import wrap
from semkt_plugin.strategies.skt.losses import content_loss


@pytest.fixture
def counted(skb, monkeypatch):
    """Count the SKB's trunk passes (with and without a graph), region decodes and SKAM calls."""
    counts = {"trunk": 0, "trunk_with_grad": 0, "regions": 0, "skam": 0}
    trunk, regions = type(skb)._trunk, type(skb)._regions

    def counting_trunk(self, x):
        counts["trunk"] += 1
        counts["trunk_with_grad"] += torch.is_grad_enabled() and x.requires_grad
        return trunk(self, x)

    def counting_regions(self, feats):
        counts["regions"] += 1
        return regions(self, feats)

    monkeypatch.setattr(type(skb), "_trunk", counting_trunk)
    monkeypatch.setattr(type(skb), "_regions", counting_regions)
    return counts


def _one_step(skt, model, batch):
    frames, gt = batch
    skt.loss(model(*frames), gt).backward()


@pytest.mark.parametrize("perceptual, trunk, with_grad", [
    ("skb", 2, 1),  # the student's pass (with a graph: perceptual term; detached: priors) and the teacher target's
    ("none", 1, 0),  # the priors' pass alone, without a graph
])
def test_one_trunk_pass_serves_priors_and_the_students_perceptual_features(skb, batch, counted, perceptual, trunk,
                                                                           with_grad):
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual=perceptual, **FROM_STEP_0)
    _one_step(skt, model, batch)
    assert counted["trunk"] == trunk and counted["trunk_with_grad"] == with_grad and counted["regions"] == 1
    skt.unwrap()


@pytest.mark.parametrize("off", [{"lambda_color": 0.0}, {"use_priors": False, "lambda_color": 0.0}])
def test_no_region_maps_without_the_color_loss(skb, batch, counted, off):
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="none", **off, **FROM_STEP_0)
    _one_step(skt, model, batch)
    assert counted["regions"] == 0 and "color" not in skt.last_losses
    skt.unwrap()


def test_zero_weighted_perceptual_network_is_not_built(skb):
    model = TinyHDR()
    # VGG19 weights are not on this machine: building it would raise
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="vgg19", lambda_perceptual=0.0, **FROM_STEP_0)
    assert skt.perceptual is None
    skt.unwrap()


def test_nothing_distils_before_the_start_and_the_model_captures_nothing(skb, batch, counted, monkeypatch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="skb", distill_start=2, distill_warmup=0)
    calls = []
    monkeypatch.setattr(skt.skam, "forward", lambda *a: calls.append(1) or torch.zeros(()))
    for step in range(3):
        out = model(*frames)
        assert bool(skt.hooks.captured) == (step == 2)  # the forward before step 2's loss() captures
        skt.loss(out, gt).backward()
        if step < 2:  # SKAM skipped, its parameters get a zero gradient (what DDP needs); no graph through the SKB
            assert not calls and skt.last_losses.keys() == {"spg", "content", "color", "feat", "orm", "total"}
            assert skt.last_losses["content"] == skt.last_losses["color"] == skt.last_losses["feat"] == 0.0
            assert all(p.grad is not None and not p.grad.any() for p in skt.skam.parameters())
            assert counted["trunk_with_grad"] == 0 and counted["regions"] == 0
    assert calls == [1] and counted["regions"] == 1
    skt.unwrap()


def test_loaded_step_count_rearms_the_hooks(skb, batch):
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="none", distill_start=1, distill_warmup=0)
    assert not skt.hooks.active
    state = skt.state_dict()
    state["steps"] = torch.tensor(5)
    skt.load_state_dict(state)
    assert skt.hooks.active
    model(*frames)
    assert skt.hooks.captured
    skt.unwrap()


def test_precomputed_student_features_give_the_same_content_loss(skb):
    g = torch.Generator().manual_seed(0)
    student = torch.rand(2, 3, 32, 32, generator=g, requires_grad=True)
    teacher = torch.rand(2, 3, 32, 32, generator=g)
    separate = content_loss(student, teacher, skb.features, 0.5)
    (grad_separate,) = torch.autograd.grad(separate, student)
    shared = content_loss(student, teacher, skb.features, 0.5, student_features=skb.features(student))
    (grad_shared,) = torch.autograd.grad(shared, student)
    assert torch.equal(separate, shared) and torch.equal(grad_separate, grad_shared)
    assert separate > F.l1_loss(student, teacher)  # the perceptual part is there
