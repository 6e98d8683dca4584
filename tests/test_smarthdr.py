"""SmartHDR (strategy="smarthdr"): the EMA teacher, the uncertainty loss, the bi-level masks, the strong augmentation
and its inverse, the warm-up, unwrap, resume, AMP, and a few steps of AHDR and HDR-Transformer replicas."""
from __future__ import annotations

import copy
import itertools
import math
import warnings
from argparse import Namespace

import pytest
import torch
import torch.nn.functional as F
from _replicas import replica_module
from conftest import TINY_ADAPTER, TinyHDR
from torch import nn

from semkt_plugin import Adapter, HookPoint, wrap
from semkt_plugin.strategies.smarthdr import (
    Augmentation,
    SmartHDRConfig,
    ema_update,
    patch_mask,
    pixel_mask,
    shuffle_channels,
    uncertainty_loss,
)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _frames(g: torch.Generator, b: int = 2, size: int = 32) -> list[torch.Tensor]:
    return [torch.rand(b, 6, size, size, generator=g) for _ in range(3)]


def _step(model, skt, opt, g, size=32, b=2) -> dict[str, float]:
    """One semi-supervised step: the user's L1 on a labelled batch, SmartHDR's two terms."""
    frames, gt, unlabelled = _frames(g, b, size), torch.rand(b, 3, size, size, generator=g), _frames(g, b, size)
    out = model(*frames)
    loss = F.l1_loss(out, gt) + skt.loss(out, gt) + skt.unlabelled_loss(unlabelled)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"loss": loss.item(), **skt.last_losses}


def _tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy="smarthdr", **{"warmup": 1, "patch": 16, **overrides})
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)
    return model, skt, opt


class BNNet(nn.Module):
    """A model with buffers: conv, BatchNorm, head; reads the reference frame."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x1, x2, x3):
        return torch.sigmoid(self.head(torch.relu(self.bn(self.conv(x2)))))


class Echo(nn.Module):
    """Returns the reference frame's first RGB triplet: equivariant to every :class:`Augmentation`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, 4, 3, padding=1)

    def forward(self, x1, x2, x3):
        return x2[:, :3] + 0 * self.conv(x2)[:, :3]


# --- settings ---------------------------------------------------------------------------------------------------

def test_config_validation_names_the_field():
    for field, value in [("ema", 1.5), ("warmup", 2.0), ("warmup", -1), ("patch", 0), ("patch_threshold", 1.2),
                         ("lambda_u", -1.0), ("sigma_min", 0.0), ("beta", 1.5), ("judge_point", -1),
                         ("total_steps", 0)]:
        with pytest.raises(ValueError, match=field):
            SmartHDRConfig(**{field: value})
    assert SmartHDRConfig(warmup=0.15, total_steps=200).warmup_steps == 30
    assert SmartHDRConfig(warmup=7).warmup_steps == 7
    with pytest.raises(ValueError, match="total_steps"):
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr")  # the default warm-up is a fraction
    with pytest.raises(ValueError, match="judge_point"):
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr", warmup=0, judge_point=2)


# --- the EMA teacher ----------------------------------------------------------------------------------------------

def test_ema_update_by_hand():
    torch.manual_seed(0)
    mean, live = BNNet(), BNNet()
    live.bn.running_mean.fill_(0.5)
    live.bn.num_batches_tracked.fill_(3)
    before = copy.deepcopy(mean.state_dict())
    ema_update(mean, live, 0.9)
    for name, p in live.named_parameters():
        assert torch.allclose(dict(mean.named_parameters())[name], 0.9 * before[name] + 0.1 * p, atol=1e-7)
    for name, b in live.named_buffers():
        assert torch.equal(dict(mean.named_buffers())[name], b)
    ema_update(mean, live, 0.0)
    assert all(torch.equal(mean.state_dict()[k], v) for k, v in live.state_dict().items())


def test_teacher_is_copied_after_the_warmup_then_follows_by_ema():
    torch.manual_seed(0)
    model = BNNet()
    skt = wrap(model, Adapter("bn", [HookPoint("conv")]), strategy="smarthdr", warmup=2, ema=0.9, patch=16)
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-2)
    g = torch.Generator().manual_seed(0)
    initial = copy.deepcopy(skt.teacher.state_dict())
    for _ in range(2):  # warm-up: the teacher does not move
        _step(model, skt, opt, g)
        assert all(torch.equal(skt.teacher.state_dict()[k], v) for k, v in initial.items())
    frames, gt = _frames(g), torch.rand(2, 3, 32, 32, generator=g)
    skt.loss(model(*frames), gt)  # the first step after the warm-up: a copy of the student, buffers included
    assert all(torch.equal(skt.teacher.state_dict()[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(skt.judge_ema.parameters(), skt.judge.parameters()))
    assert skt.semi_supervised
    teacher = copy.deepcopy(skt.teacher.state_dict())
    judge = copy.deepcopy(skt.judge_ema.state_dict())
    for p in [*model.parameters(), *skt.judge.parameters()]:
        p.data.add_(0.01)  # a stand-in for an optimiser step
    model(*frames)  # a training forward moves the BatchNorm statistics
    skt.loss(model(*frames), gt)
    params = dict(model.named_parameters())
    for name, value in skt.teacher.state_dict().items():
        want = 0.9 * teacher[name] + 0.1 * params[name] if name in params else model.state_dict()[name]
        assert torch.allclose(value, want, atol=1e-7), name
    for name, p in skt.judge.named_parameters():
        assert torch.allclose(skt.judge_ema.state_dict()[name], 0.9 * judge[name] + 0.1 * p, atol=1e-7)
    assert skt.teacher.training is False
    skt.train()
    assert skt.teacher.training is False and skt.judge.training
    skt.unwrap()


# --- the uncertainty loss -----------------------------------------------------------------------------------------

def test_uncertainty_loss_by_hand():
    pred = torch.tensor([0.2, 0.5, 0.9, 0.1]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    target = torch.tensor([0.3, 0.5, 0.5, 0.0]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    sigma = torch.tensor([0.1, 0.5, 1e-4, 0.2]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    by_hand = [0.1 ** 2 / (2 * 0.1 ** 2) + math.log(0.1),
               0.0 + math.log(0.5),
               0.4 ** 2 / (2 * 1e-3 ** 2) + math.log(1e-3),  # σ below sigma_min counts as sigma_min
               0.1 ** 2 / (2 * 0.2 ** 2) + math.log(0.2)]
    assert uncertainty_loss(pred, target, sigma).item() == pytest.approx(sum(by_hand) / 4, rel=1e-5)
    mask = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    assert uncertainty_loss(pred, target, sigma, mask).item() == pytest.approx((by_hand[0] + by_hand[3]) / 2, rel=1e-5)
    assert uncertainty_loss(pred, target, sigma, torch.zeros_like(mask)).item() == 0.0


@pytest.mark.parametrize("error", [0.3, 0.02, 1e-5])
def test_uncertainty_loss_is_smallest_at_sigma_equal_to_the_error(error):
    sigma_min = 1e-3
    sigmas = torch.logspace(-4, 0, 4001)
    pred, target = torch.full((1, 3, 1, 1), 0.5 + error), torch.full((1, 3, 1, 1), 0.5)
    losses = torch.stack([uncertainty_loss(pred, target, s.expand(1, 3, 1, 1), sigma_min=sigma_min) for s in sigmas])
    best = sigmas[losses == losses.min()]
    if error > sigma_min:
        assert best.min().item() == pytest.approx(error, rel=5e-3)
        assert best.max().item() == pytest.approx(error, rel=5e-3)
        sigma = torch.full((1, 3, 1, 1), error, requires_grad=True)
        uncertainty_loss(pred, target, sigma, sigma_min=sigma_min).backward()
        assert sigma.grad.abs().max() < 1e-3
    else:  # below the clamp every σ ≤ sigma_min is the clamped σ: the minimum is flat there and ends at sigma_min
        assert best.min().item() == sigmas[0].item() and best.max().item() == pytest.approx(sigma_min, rel=5e-3)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_beta_nll_gradients_by_hand(beta):
    error, sig = torch.tensor([0.3, -0.02, 0.1, 0.05]), torch.tensor([0.2, 0.02, 0.1, 0.4])
    target = torch.full((1, 1, 2, 2), 0.5).expand(1, 3, 2, 2)
    pred = (target + error.view(1, 1, 2, 2)).clone().requires_grad_(True)
    sigma = sig.view(1, 1, 2, 2).expand(1, 3, 2, 2).clone().requires_grad_(True)
    uncertainty_loss(pred, target, sigma, beta=beta).backward()
    n = 12
    grad_pred = sig ** (2 * beta) * error / sig ** 2 / n  # β = 1: a squared error's gradient, whatever σ is
    grad_sigma = sig ** (2 * beta) * (1 / sig - error ** 2 / sig ** 3) / n
    assert torch.allclose(pred.grad, grad_pred.view(1, 1, 2, 2).expand(1, 3, 2, 2), rtol=1e-4)
    assert torch.allclose(sigma.grad, grad_sigma.view(1, 1, 2, 2).expand(1, 3, 2, 2), rtol=1e-4, atol=1e-5)
    assert sigma.grad[0, :, 0, 1].abs().max() < 1e-4 and sigma.grad[0, :, 1, 0].abs().max() < 1e-4  # σ = |error|


def test_gradient_reaches_the_judge_and_the_output_not_the_teacher():
    model, skt, _ = _tiny(warmup=0)
    g = torch.Generator().manual_seed(0)
    frames, gt = _frames(g), torch.rand(2, 3, 32, 32, generator=g)
    out = model(*frames)
    out.retain_grad()
    skt.loss(out, gt).backward()
    assert out.grad.abs().sum() > 0 and all(p.grad.abs().sum() > 0 for p in skt.judge.parameters())
    assert all(p.grad is None for p in [*skt.teacher.parameters(), *skt.judge_ema.parameters()])
    with pytest.raises(RuntimeError, match="right after the forward"):
        skt.loss(out.detach(), gt)  # the capture of that forward was used and dropped
    skt.unwrap()


# --- the bi-level masks -------------------------------------------------------------------------------------------

def test_patch_mask_drops_the_patches_above_the_threshold():
    scores = torch.tensor([[[0.1, 0.9], [0.5, 0.4]], [[0.1, 0.1], [0.2, 0.45]]])  # (B, rows, cols) of 64² patches
    sigma = scores.repeat_interleave(64, 1).repeat_interleave(64, 2).unsqueeze(1).repeat(1, 3, 1, 1)
    # normalised over the batch: (s − 0.1) / 0.8 → 0.9: 1, 0.5: 0.5, 0.45: 0.4375 dropped; 0.4: 0.375, 0.2 kept
    keep = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]])
    mask = patch_mask(sigma, 64, 0.4)
    assert mask.shape == (2, 1, 128, 128)
    assert torch.equal(mask, keep.repeat_interleave(64, 1).repeat_interleave(64, 2).unsqueeze(1))


def test_patch_mask_averages_border_patches_over_their_pixels():
    sigma = torch.zeros(1, 3, 96, 64)
    sigma[:, :, 64:] = 0.3  # the cut patch below the first: its 32 real rows all 0.3, so its mean is 0.3, not 0.15
    sigma[:, 0, :64] = 0.3  # the first patch: mean over channels 0.1
    mask = patch_mask(sigma, 64, 0.4)
    assert torch.equal(mask[0, 0, :64], torch.ones(64, 64)) and torch.equal(mask[0, 0, 64:], torch.zeros(32, 64))
    assert torch.equal(patch_mask(torch.full((2, 3, 32, 32), 0.7), 64, 0.4), torch.ones(2, 1, 32, 32))  # all equal


def test_pixel_mask_drops_the_pixels_above_the_threshold():
    means = torch.tensor([[0.0, 0.2, 0.38, 0.5], [0.6, 1.0, 0.42, 0.39]])  # channel means, min 0, max 1
    sigma = torch.stack([means - 0.05, means, means + 0.05]).unsqueeze(0)  # (1, 3, 2, 4)
    keep = (means <= 0.4).float()
    assert torch.equal(pixel_mask(sigma, 0.4)[0, 0], keep)
    assert torch.equal(pixel_mask(sigma * 0.5 + 0.1, 0.4)[0, 0], keep)  # normalised: scale and offset do not matter


# --- the strong augmentation --------------------------------------------------------------------------------------

ALL = [Augmentation(perm, flip, rot) for perm in itertools.permutations(range(3)) for flip in (False, True)
       for rot in range(4)]


def test_invert_undoes_apply_for_every_augmentation():
    g = torch.Generator().manual_seed(0)
    x, video, mask = torch.rand(2, 6, 5, 7, generator=g), torch.rand(1, 2, 3, 5, 7, generator=g), torch.rand(2, 1, 5, 7)
    for aug in ALL:
        assert torch.equal(aug.invert(aug.apply(x)), x)
        assert torch.equal(aug.invert(aug.apply(video)), video)
        assert torch.equal(aug.invert(aug.apply(mask, channels=False), channels=False), mask)
        assert aug.apply(x).shape[-2:] == ((7, 5) if aug.rot % 2 else (5, 7))
    with pytest.raises(ValueError, match="triplets"):
        shuffle_channels(torch.rand(1, 4, 2, 2), (1, 0, 2))


def test_an_equivariant_model_commutes_with_every_augmentation():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 6, 8, generator=g)
    x = torch.cat([rgb, rgb ** 2.2 / 4], 1)  # AHDR's [LDR, LDR^γ / t]
    echo = Echo()
    for aug in ALL:
        y = aug.apply(x)
        # both triplets shuffled alike (pow rounds by memory layout on some CPUs: equal to a float32 ulp)
        torch.testing.assert_close(y[:, 3:], y[:, :3] ** 2.2 / 4, rtol=1e-6, atol=0)
        assert torch.equal(aug.apply(echo(x, x, x)), echo(y, y, y))


def test_draws_cover_every_part_and_follow_the_generator():
    g = torch.Generator().manual_seed(0)
    draws = [Augmentation.draw(g) for _ in range(200)]
    assert {d.perm for d in draws} == set(itertools.permutations(range(3)))
    assert {d.flip for d in draws} == {False, True} and {d.rot for d in draws} == {0, 1, 2, 3}
    assert {Augmentation.draw(g, channel_shuffle=False).perm for _ in range(20)} == {(0, 1, 2)}
    again = torch.Generator().manual_seed(0)
    assert [Augmentation.draw(again) for _ in range(5)] == draws[:5]


def test_pseudo_label_is_transformed_like_the_student_view():
    """With an equivariant model and the teacher a copy of it, the student's view matches its pseudo-label exactly
    whatever the augmentation: L_u^r is 0 only if the pseudo-label went through the same transform."""
    torch.manual_seed(0)
    model = Echo()
    skt = wrap(model, Adapter("echo", [HookPoint("conv")]), strategy="smarthdr", warmup=0, patch=8)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(12):
        frames = _frames(g, size=16)
        skt.loss(model(*frames), torch.rand(2, 3, 16, 16, generator=g))
        state = skt.generator.get_state()
        skt.unlabelled_loss(_frames(g, size=16))
        seen.add(Augmentation.draw(torch.Generator().set_state(state)))
        assert skt.last_losses["u_l1"] == 0.0 and skt.last_losses["kept"] > 0
    assert any(a.rot % 2 for a in seen) and any(a.flip for a in seen) and any(a.perm != (0, 1, 2) for a in seen)
    skt.unwrap()


# --- the plugin ---------------------------------------------------------------------------------------------------

def test_warmup_returns_zero_and_runs_no_teacher():
    model, skt, opt = _tiny(warmup=2)
    calls = {"teacher": 0, "model": 0}
    skt.teacher.register_forward_hook(lambda *a: calls.__setitem__("teacher", calls["teacher"] + 1))
    model.register_forward_hook(lambda *a: calls.__setitem__("model", calls["model"] + 1))
    g = torch.Generator().manual_seed(0)
    for step in range(2):
        frames, gt = _frames(g), torch.rand(2, 3, 32, 32, generator=g)
        out = model(*frames)
        term = skt.loss(out, gt)
        zero = skt.unlabelled_loss(_frames(g))
        assert zero.item() == 0.0 and zero.device == out.device and not zero.requires_grad
        assert calls == {"teacher": 0, "model": step + 1}
        assert skt.last_losses["total"] == pytest.approx(term.item())
        (F.l1_loss(out, gt) + term + zero).backward()
    _step(model, skt, opt, g)
    assert calls == {"teacher": 1, "model": 4}
    assert set(skt.last_losses) == {"k_s", "u_l1", "k_u", "kept", "total"}
    skt.unwrap()


def test_only_the_judge_trains_and_unwrap_leaves_the_model_as_is():
    torch.manual_seed(0)
    keys = list(TinyHDR().state_dict())
    model, skt, opt = _tiny()
    assert skt.hooked() == [("conv1", "read by the judge")]
    trainable = {n for n, p in skt.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in skt.judge.named_parameters(prefix="judge")}
    assert not any(k.startswith("model.") for k in skt.state_dict())
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert math.isfinite(_step(model, skt, opt, g)["total"])
    assert all(p.grad is None for p in skt.teacher.parameters())
    before = copy.deepcopy(model.state_dict())
    assert skt.unwrap() is model
    assert _hook_count(model) == 0
    assert list(model.state_dict()) == keys
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    skt.to(torch.float64)  # .to() reaches the teacher and both judges
    assert {p.dtype for p in skt.parameters()} == {torch.float64}


def test_resumed_run_continues_identically(tmp_path):
    def run(model, skt, opt, g, steps):
        return [_step(model, skt, opt, g) for _ in range(steps)]

    model, skt, opt = _tiny(warmup=1)
    g = torch.Generator().manual_seed(3)
    run(model, skt, opt, g, 2)
    torch.save({"model": model.state_dict(), "semkt": skt.state_dict(), "optim": opt.state_dict(),
                "data": g.get_state()}, tmp_path / "ckpt.pt")
    straight = run(model, skt, opt, g, 2)
    skt.unwrap()

    model, skt, opt = _tiny(seed=123, warmup=1)  # a new process: other weights, another global RNG state
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model.load_state_dict(ckpt["model"])
    skt.load_state_dict(ckpt["semkt"])
    opt.load_state_dict(ckpt["optim"])
    assert int(skt.steps) == 2 and skt.semi_supervised
    resumed = run(model, skt, opt, torch.Generator().set_state(ckpt["data"]), 2)
    skt.unwrap()
    for a, b in zip(straight, resumed):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-7)


def test_one_step_under_bfloat16_autocast():
    model, skt, opt = _tiny(warmup=0)
    g = torch.Generator().manual_seed(0)
    frames, gt, unlabelled = _frames(g), torch.rand(2, 3, 32, 32, generator=g), _frames(g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*frames)
        loss = F.l1_loss(out.float(), gt) + skt.loss(out, gt) + skt.unlabelled_loss(unlabelled)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in skt.judge.parameters())
    opt.step()
    skt.unwrap()


def _small(name: str) -> nn.Module:
    module = replica_module(name)
    if name == "ahdr":
        return module.AHDR(Namespace(nChannel=6, nDenselayer=2, nFeat=8, growthRate=4))
    return module.HDRTransformer(img_size=32, embed_dim=12, depths=[1, 1, 1], num_heads=[2, 2, 2], mlp_ratio=2,
                                 in_chans=6)


@pytest.mark.parametrize("name", ["ahdr", "hdr_transformer"])
def test_replica_trains_semi_supervised(name):
    torch.manual_seed(0)
    model = _small(name)
    skt = wrap(model, name, strategy="smarthdr", warmup=1, ema=0.9, patch=16)
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)
    g = torch.Generator().manual_seed(0)
    _step(model, skt, opt, g)
    _step(model, skt, opt, g)  # the first semi-supervised step: the teacher starts as the student
    teacher = copy.deepcopy(skt.teacher.state_dict())
    student = {k: v.detach().clone() for k, v in model.named_parameters()}  # what the next EMA step reads
    record = _step(model, skt, opt, g)
    assert all(math.isfinite(v) for v in record.values()), record
    assert 0 < record["kept"] <= 1
    moved = skt.teacher.state_dict()
    for k, v in student.items():
        assert torch.allclose(moved[k], 0.9 * teacher[k] + 0.1 * v, atol=1e-6), k
    assert any(not torch.equal(moved[k], teacher[k]) for k in student)
    skt.unwrap()
    assert _hook_count(model) == 0


def test_a_teacher_that_averages_over_much_of_the_run_is_warned_of():
    with pytest.warns(UserWarning, match=r"averages over about 1/\(1 - ema\) = 1000 steps, but the semi-supervised "
                                         r"phase has 510.*ema <= 0.961") as record:
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr", total_steps=600)
    assert record[0].filename == __file__  # points at the user's wrap call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr", total_steps=600, ema=0.9)
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr", warmup=10)  # run length unknown: nothing to compare
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr", total_steps=200_000)  # the paper's scale
    with pytest.warns(UserWarning, match="warm-up .* lasts the whole run"):
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smarthdr", total_steps=10, warmup=10)
