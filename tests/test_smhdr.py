"""SMHDR (strategy="smhdr"): the curriculum, the per-region tables against hand-computed values, the region-map
cache and the dataset's region IDs, the masking hooks (layouts, when they act, unwrap), the loss weighting,
resuming, AMP, and a few steps on the example AHDR and on HDR-Transformer."""
from __future__ import annotations

import copy
import json
import math
from argparse import Namespace

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from _replicas import replica_module
from conftest import TINY_ADAPTER, TinyHDR
from torch import nn

from semkt_plugin import wrap
from semkt_plugin.adapter import Adapter, HookPoint
from semkt_plugin.domain import mu_law
from semkt_plugin.feature_hooks import FeatureMasks
from semkt_plugin.reproduction import kalantari
from semkt_plugin.reproduction.regions import RegionCacheError, build_region_maps, load_region_map
from semkt_plugin.skb import SKBOutput
from semkt_plugin.strategies.smhdr import SMHDRConfig, curriculum_ratio, region_ratios, region_weights

MASKING = dict(ramp_start=0, ramp_peak=0, ramp_end=1000, mask_points=None)  # ratio 0.9 from the first step, every point


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _quadrants(b: int, h: int, w: int, scene: int = 0) -> torch.Tensor:
    """``(b, h, w)`` IDs: 4 quadrants per image, global IDs of scene ``scene``."""
    ids = torch.zeros(b, h, w, dtype=torch.long)
    ids[:, : h // 2, w // 2 :] = 1
    ids[:, h // 2 :, : w // 2] = 2
    ids[:, h // 2 :, w // 2 :] = 3
    return ids + scene * 65536


def _batch(b=2, size=(32, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 6, *size, generator=g) for _ in range(3)], torch.rand(b, 3, *size, generator=g)


# --- the curriculum -------------------------------------------------------------------------------------------------

def test_curriculum_values():
    assert [curriculum_ratio(s, 300, 350, 400, 0.9) for s in (0, 299, 300)] == [0.0, 0.0, 0.0]
    assert curriculum_ratio(325, 300, 350, 400, 0.9) == pytest.approx(0.45)
    assert curriculum_ratio(350, 300, 350, 400, 0.9) == pytest.approx(0.9)
    assert curriculum_ratio(390, 300, 350, 400, 0.9) == pytest.approx(0.18)
    assert curriculum_ratio(400, 300, 350, 400, 0.9) == 0.0 and curriculum_ratio(401, 300, 350, 400, 0.9) == 0.0
    assert curriculum_ratio(5, 5, 5, 9, 0.5) == 0.5  # start == peak: at the peak at once


def test_fractions_and_step_counts():
    assert SMHDRConfig(total_steps=400).schedule() == (300, 350, 400)
    assert SMHDRConfig(ramp_start=300, ramp_peak=350, ramp_end=400).schedule() == (300, 350, 400)
    assert SMHDRConfig(ramp_start=0.5, ramp_peak=250, total_steps=400).schedule() == (200, 250, 400)
    with pytest.raises(ValueError, match="total_steps"):
        SMHDRConfig().schedule()
    with pytest.raises(ValueError, match="total_steps"):
        wrap(TinyHDR(), TINY_ADAPTER, strategy="smhdr")
    with pytest.raises(ValueError, match="ramp_start <= ramp_peak <= ramp_end"):
        SMHDRConfig(ramp_start=10, ramp_peak=5, ramp_end=20)
    with pytest.raises(ValueError, match="ramp_start <= ramp_peak <= ramp_end"):
        SMHDRConfig(ramp_start=0.9, ramp_peak=0.5, total_steps=100)
    with pytest.raises(ValueError, match="fraction"):
        SMHDRConfig(ramp_end=1.5, total_steps=100)
    with pytest.raises(ValueError, match="mask_unit"):
        SMHDRConfig(mask_unit="patch")


def test_mask_ratio_follows_the_steps():
    skt = wrap(TinyHDR(), TINY_ADAPTER, strategy="smhdr", total_steps=8)  # ramp (6, 7, 8)
    frames, gt = _batch()
    ids = _quadrants(2, 32, 32)
    ratios = []
    for _ in range(9):
        ratios.append(skt.mask_ratio)
        skt.regions(ids)
        skt.loss(skt.model(*frames), gt).backward()
        assert skt.last_losses["ratio"] == ratios[-1]
    assert ratios == [0, 0, 0, 0, 0, 0, 0, 0.9, 0]


# --- the tables, by hand ---------------------------------------------------------------------------------------------

def test_region_ratios_and_weights_by_hand():
    psnr = torch.tensor([30.0, 35.0, 40.0], dtype=torch.float64)
    e = [math.exp(-0.1 * p) for p in (30, 35, 40)]
    assert region_weights(psnr, -0.1).tolist() == pytest.approx([3 * v / sum(e) for v in e])
    e = [math.exp(0.05 * p) for p in (30, 35, 40)]
    assert region_ratios(psnr, 0.5, 0.05).tolist() == pytest.approx([0.5 * 3 * v / sum(e) for v in e])
    # an easy region's share can exceed 1/ratio: its ratio is clipped to 1
    e = [math.exp(0.05 * 10), math.exp(0.05 * 50)]
    ratios = region_ratios(torch.tensor([10.0, 50.0]), 0.9, 0.05).tolist()
    assert ratios == pytest.approx([0.9 * 2 * e[0] / sum(e), 1.0])


class Echo(nn.Module):
    """Outputs its reference frame's LDR through a 1×1 identity conv (a hook point that changes nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.body.weight.copy_(torch.eye(3)[..., None, None])
            self.body.bias.zero_()

    def forward(self, x1, x2, x3):
        return self.body(x2[:, :3])


def test_loss_weights_follow_the_measured_psnr():
    skt = wrap(Echo(), Adapter("echo", [HookPoint("body")]), strategy="smhdr", peak_ratio=0.0, refresh=1,
               ramp_start=0, ramp_peak=0, ramp_end=0)
    frames, gt = _batch()
    frames[1][:, :3, 16:] *= 0.2  # the lower half is further from the target: harder
    ids = _quadrants(2, 32, 32, scene=3)
    skt.regions(ids)
    out = skt.model(*frames)
    diff = mu_law(out.detach()) - mu_law(gt)
    assert skt.loss(out, gt).item() == pytest.approx(diff.abs().mean().item(), rel=1e-5)  # no table yet: w = 1
    psnr = [-10 * math.log10(diff.square().mean(1)[ids == 3 * 65536 + m].mean().item()) for m in range(4)]
    e = [math.exp(-0.1 * p) for p in psnr]
    w = torch.tensor([4 * v / sum(e) for v in e])
    assert w[2] > w[0] and w[3] > w[1]  # the harder lower half weighs more
    skt.regions(ids)
    want = (w[ids - 3 * 65536][:, None] * diff.abs()).mean()
    assert skt.loss(skt.model(*frames), gt).item() == pytest.approx(want.item(), rel=1e-5)
    with torch.no_grad():  # evaluation: no statistics, no step
        skt.regions(ids)
        skt.loss(skt.model(*frames), gt)
    assert int(skt.steps) == 2


def test_weights_are_normalised_per_scene():
    skt = wrap(Echo(), Adapter("echo", [HookPoint("body")]), strategy="smhdr", peak_ratio=0.0, refresh=1,
               ramp_start=0, ramp_peak=0, ramp_end=0)
    frames, gt = _batch()
    ids = torch.cat([_quadrants(1, 32, 32, scene=0), _quadrants(1, 32, 32, scene=1)])
    skt.regions(ids)
    skt.loss(skt.model(*frames), gt).backward()
    table = skt.get_extra_state()
    assert table["ids"].tolist() == [0, 1, 2, 3, 65536, 65537, 65538, 65539]
    weights = [skt._weight[k] for k in table["ids"].tolist()]
    assert sum(weights[:4]) == pytest.approx(4) and sum(weights[4:]) == pytest.approx(4)


# --- the region-map cache and the dataset ----------------------------------------------------------------------------

class RedSKB(nn.Module):
    """A stand-in SKB with one region, where the red channel exceeds 0.5 (so a dataset item shows its IDs)."""

    name, num_regions = "red", 1

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return SKBOutput([], (x[:, :1] > 0.5).float())


class NestedSKB(nn.Module):
    """Three regions: the left half, a box inside it, and one no pixel belongs to."""

    name, num_regions = "nested", 3

    def forward(self, x):
        regions = torch.zeros(x.shape[0], 3, *x.shape[-2:])
        regions[:, 0, :, : x.shape[-1] // 2] = 0.9
        regions[:, 1, 2:6, 2:6] = 0.8
        return SKBOutput([], regions)


def _dataset(root, n=2, h=12, w=16):
    rng = np.random.default_rng(0)
    for i in range(n):
        ldrs = [rng.uniform(0, 1, (h, w, 3)).astype(np.float32) for _ in range(3)]
        hdr = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        kalantari.write_scene(root / "Training" / f"{i:03d}", ldrs, [0, 2, 4], hdr)
    return root


def test_region_ids_paint_larger_regions_first(tmp_path):
    root = _dataset(tmp_path, n=1)
    [path] = build_region_maps(root, skb=NestedSKB(), progress=False)
    ids = np.load(path)
    assert ids.dtype == np.uint16 and ids.shape == (12, 16)
    want = np.zeros((12, 16), np.uint16)
    want[:, :8] = 1
    want[2:6, 2:6] = 2  # the smaller region overwrites the larger
    np.testing.assert_array_equal(ids, want)
    meta = json.loads((path.parent / "masks.json").read_text())
    assert meta["skb"] == "nested" and meta["num_regions"] == 3 and meta["shape"] == [12, 16]
    np.testing.assert_array_equal(load_region_map(path.parent), want)


def test_cache_is_reused_and_checked(tmp_path):
    root = _dataset(tmp_path)
    skb = RedSKB()
    paths = build_region_maps(root, skb=skb, progress=False)
    assert skb.calls == 2
    build_region_maps(root, skb=skb, progress=False)
    assert skb.calls == 2  # cached
    build_region_maps(root, skb=skb, rebuild=True, progress=False)
    assert skb.calls == 4

    scene = paths[0].parent
    ref = sorted(scene.glob("*.tif"))[1]
    tifffile.imwrite(ref, (tifffile.imread(ref) // 2).astype(np.uint16))  # the reference LDR changed
    with pytest.raises(RegionCacheError, match=r"another reference LDR.*rebuild=True"):
        load_region_map(scene)
    with pytest.raises(RegionCacheError, match="reference LDR"):
        kalantari.KalantariDataset(root, regions=True)
    build_region_maps(root, skb=skb, progress=False)
    assert skb.calls == 5  # only the changed scene
    load_region_map(scene)

    np.save(paths[1], np.zeros((4, 4), np.uint16))
    with pytest.raises(RegionCacheError, match=r"shape \(4, 4\).*rebuild=True"):
        load_region_map(paths[1].parent)
    paths[1].unlink()
    with pytest.raises(RegionCacheError, match=r"missing.*build_region_maps"):
        load_region_map(paths[1].parent)


def test_dataset_region_ids_follow_crops_and_flips(tmp_path):
    root = _dataset(tmp_path)
    build_region_maps(root, skb=RedSKB(), progress=False)
    plain = kalantari.KalantariDataset(root, crop=8, augment=True, seed=3)
    with_ids = kalantari.KalantariDataset(root, crop=8, augment=True, seed=3, regions=True)
    for _ in range(6):
        for index in range(2):
            item, (*same, ids) = plain[index], with_ids[index]
            assert len(item) == 4 and all(torch.equal(a, b) for a, b in zip(item, same))  # items unchanged
            assert ids.dtype == torch.int64 and ids.shape == (8, 8)
            red = item[1][0]  # the reference LDR's red channel, cropped and flipped
            torch.testing.assert_close(ids, (red > 0.5).long() + index * 65536, rtol=0, atol=0)


# --- the masking hooks ----------------------------------------------------------------------------------------------

class Split(nn.Module):
    def forward(self, x):
        return x, x + 1


class Pair(nn.Module):
    def forward(self, a, b):
        return torch.stack([a, b])


class Layouts(nn.Module):
    """Folded frames, a tuple output, a second positional input, tokens and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.frames, self.tokens, self.twice = nn.Identity(), nn.Identity(), nn.Identity()
        self.split, self.pair = Split(), Pair()

    def forward(self, x):  # x: (B, 3, C, H, W)
        b, f, c, h, w = x.shape
        folded = self.frames(x.reshape(b * f, c, h, w))
        _, plus = self.split(x[:, 0])
        pair = self.pair(x[:, 0], x[:, 1])
        tokens = self.tokens(x[:, 2].flatten(2).transpose(1, 2))  # (B, H·W, C), row by row
        return {"frames": folded, "split": plus, "pair": pair, "tokens": tokens,
                "twice": torch.stack([self.twice(x[:, 0]), self.twice(x[:, 1])])}


LAYOUT_POINTS = [HookPoint("frames", frames=3), HookPoint("split", select=1), HookPoint("pair", kind="pre", select=1),
                 HookPoint("tokens", layout="tokens"), HookPoint("twice", call=1)]


def test_feature_masks_layouts():
    torch.manual_seed(0)
    b, c, h, w = 2, 3, 4, 6  # not square: tokens are laid out with the aspect
    model, x = Layouts(), torch.rand(2, 3, c, h, w) + 0.5
    keep = (torch.rand(b, 1, 1, h, w) > 0.5).float()
    seen, on = [], [True]
    masks = FeatureMasks(model, LAYOUT_POINTS, lambda i, x: seen.append((i, tuple(x.shape))) or keep, lambda: on[0])
    masks.aspect = h / w
    out = model(x)
    assert sorted(seen) == [(0, (b, 3, c, h, w)), (1, (b, 1, c, h, w)), (2, (b, 1, c, h, w)), (3, (b, 1, c, h, w)),
                            (4, (b, 1, c, h, w))]
    k = keep[:, 0]
    torch.testing.assert_close(out["frames"], (x * keep).reshape(b * 3, c, h, w))  # the same mask on every frame
    torch.testing.assert_close(out["split"], (x[:, 0] + 1) * k)
    torch.testing.assert_close(out["pair"], torch.stack([x[:, 0], x[:, 1] * k]))
    torch.testing.assert_close(out["tokens"], (x[:, 2] * k).flatten(2).transpose(1, 2))
    torch.testing.assert_close(out["twice"], torch.stack([x[:, 0], x[:, 1] * k]))  # only call 1
    on[0] = False
    out = model(x)
    assert torch.equal(out["split"], x[:, 0] + 1) and torch.equal(out["tokens"], x[:, 2].flatten(2).transpose(1, 2))
    torch.testing.assert_close(model.split(x[:, 0])[1], x[:, 0] + 1)  # outside the root's forward: never masked
    masks.remove()
    assert _hooks_left(model) == 0


def _capture(module: nn.Module, store: list) -> None:
    module.register_forward_hook(lambda m, a, out: store.append(out.detach().clone()))


def test_masking_acts_only_in_training_with_a_ratio():
    torch.manual_seed(0)
    model = TinyHDR()
    frames, _ = _batch()
    ids = _quadrants(2, 32, 32)
    state = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        plain = model(*frames)
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", **MASKING)
    skt.regions(ids)
    masked = model(*frames)
    assert not torch.allclose(masked, plain)
    with pytest.raises(RuntimeError, match=r"skt\.regions\(ids\)"):
        model(*frames)  # masked forward without regions()
    with torch.no_grad():
        assert torch.equal(model(*frames), plain)  # no gradient: no masking, no regions needed
    model.eval()
    assert torch.equal(model(*frames), plain)
    model.train()
    assert skt.unwrap() is model and _hooks_left(model) == 0
    assert list(model.state_dict()) == list(state)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(*frames), plain)

    off = wrap(model, TINY_ADAPTER, strategy="smhdr", total_steps=100)  # ratio 0 until step 75
    assert off.mask_ratio == 0 and torch.equal(model(*frames), plain)
    off.unwrap()


@pytest.mark.parametrize("unit", ["region", "pixel"])
def test_masked_feature_drops_whole_regions_or_their_share_of_pixels(unit):
    torch.manual_seed(0)
    model = TinyHDR()
    before, after = [], []
    _capture(model.body, before)
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", region_prob=1.0, peak_ratio=0.5, mask_unit=unit, **MASKING)
    _capture(model.body, after)
    ids = _quadrants(4, 16, 16)
    frames, _ = _batch(4, (16, 16))
    skt.regions(ids)
    model(*frames)
    dropped = (after[0] == 0).all(1)  # (B, H, W): a masked pixel is 0 in every channel
    assert not (before[0] == 0).all(1).any()
    kept = ~dropped
    torch.testing.assert_close(after[0] * kept[:, None], before[0] * kept[:, None])  # kept pixels unchanged
    per_region = torch.stack([dropped[ids == m].view(4, -1).float().mean(1) for m in range(4)], 1)  # (B, 4)
    if unit == "region":
        assert set(per_region.flatten().tolist()) == {0.0, 1.0}  # each region of each sample whole
    else:
        assert torch.equal(per_region, torch.full((4, 4), 0.5))  # round(0.5 · 64) of each region's 64 pixels


def test_regions_and_loss_errors():
    skt = wrap(TinyHDR(), TINY_ADAPTER, strategy="smhdr", total_steps=100)
    frames, gt = _batch()
    with pytest.raises(TypeError, match="integer region IDs"):
        skt.regions(torch.rand(2, 32, 32))
    out = skt.model(*frames)
    with pytest.raises(RuntimeError, match=r"skt\.regions\(ids\)"):
        skt.loss(out, gt)
    skt.regions(_quadrants(2, 32, 32)[:1])
    with pytest.raises(ValueError, match="2"):
        skt.loss(skt.model(*frames), gt)


# --- training -------------------------------------------------------------------------------------------------------

def _steps(model, skt, opt, n, seed):
    losses = []
    for i in range(n):
        frames, gt = _batch(seed=seed + i)
        skt.regions(_quadrants(2, 32, 32, scene=i % 2))
        out = model(*frames)
        loss = F.l1_loss(out, gt) + skt.loss(out, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_state_round_trip_continues_identically():
    config = dict(refresh=2, mask_unit="pixel", **MASKING)
    torch.manual_seed(0)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", **config)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    _steps(model, skt, opt, 3, seed=0)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), skt.state_dict()))
    assert set(saved[2]) == {"steps", "_extra_state"} and saved[2]["_extra_state"]["ids"].numel() == 8
    first = _steps(model, skt, opt, 3, seed=10)

    fresh = TinyHDR()
    fresh.load_state_dict(saved[0])
    skt2 = wrap(fresh, TINY_ADAPTER, strategy="smhdr", **config)
    skt2.load_state_dict(saved[2])
    opt2 = torch.optim.Adam(fresh.parameters(), 1e-3)
    opt2.load_state_dict(saved[1])
    assert _steps(fresh, skt2, opt2, 3, seed=10) == first


def test_autocast_bfloat16_step():
    torch.manual_seed(0)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", region_prob=0.5, **MASKING)
    frames, gt = _batch()
    skt.regions(_quadrants(2, 32, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*frames)
        loss = skt.loss(out, gt)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())


def _train_replica(model, adapter, size):
    skt = wrap(model, adapter, strategy="smhdr", refresh=1, **MASKING)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    for step in range(2):
        frames, gt = _batch(1, size, seed=step)
        skt.regions(_quadrants(1, *size))
        out = model(*frames)
        assert skt.masks.calls == [1] * len(skt.masks.points)  # every hook point fired, and was masked
        loss = skt.loss(out, gt)
        assert torch.isfinite(loss) and skt.last_losses["ratio"] == pytest.approx(0.9, abs=0.01)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert skt.hooked() == [(p.path, "masked in training") for p in skt.adapter.hooks]
    skt.unwrap()
    assert _hooks_left(model) == 0


def test_example_ahdr_trains_masked():
    torch.manual_seed(0)
    model = replica_module("ahdr").AHDR(Namespace(nChannel=6, nDenselayer=2, nFeat=8, growthRate=4))
    _train_replica(model, "ahdr", (32, 32))


def test_hdr_transformer_trains_masked_tokens_too():
    torch.manual_seed(0)
    model = replica_module("hdr_transformer").HDRTransformer(img_size=32, embed_dim=12, depths=[1, 1, 1],
                                                             num_heads=[2, 2, 2], mlp_ratio=2, in_chans=6)
    adapter = Adapter("hdr_transformer_tokens", [HookPoint("conv_first"), HookPoint("layers.0", layout="tokens"),
                                                 HookPoint("conv_last", kind="pre")])
    _train_replica(model, adapter, (16, 32))


def test_end_to_end_with_the_standin_skb(tmp_path):
    """Synthetic scenes → region maps from the offline stand-in SKB → the dataset's IDs → masked steps."""
    from torch.utils.data import DataLoader

    from semkt_plugin.reproduction.synth import generate_dataset

    root = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(48, 64), seed=0)
    paths = build_region_maps(root, progress=False)
    assert json.loads((paths[0].parent / "masks.json").read_text())["skb"] == "standin"
    assert all(len(np.unique(np.load(p))) > 1 for p in paths)  # the stand-in finds regions
    data = DataLoader(kalantari.KalantariDataset(root, crop=32, augment=True, seed=0, regions=True), batch_size=2)
    torch.manual_seed(0)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", refresh=1, **MASKING)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(2):
        for x1, x2, x3, gt, ids in data:
            skt.regions(ids)
            loss = skt.loss(model(x1, x2, x3), gt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
    assert (skt.get_extra_state()["ids"] // 65536).unique().tolist() == [0, 1]  # both scenes measured


def test_mask_points_pick_hook_points_by_index_and_name_the_choices():
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", total_steps=10)
    assert [p.path for p in skt.masks.points] == [TINY_ADAPTER.hooks[0].path]  # the shallowest only, by default
    skt.unwrap()
    skt = wrap(model, TINY_ADAPTER, strategy="smhdr", total_steps=10, mask_points=None)
    assert [p.path for p in skt.masks.points] == [p.path for p in TINY_ADAPTER.hooks]
    skt.unwrap()
    with pytest.raises(ValueError, match=r"mask_points \[5\] are not hook points .* \['conv1', 'body'\]"):
        wrap(model, TINY_ADAPTER, strategy="smhdr", total_steps=10, mask_points=(5,))
    with pytest.raises(ValueError, match="non-empty tuple"):
        wrap(model, TINY_ADAPTER, strategy="smhdr", total_steps=10, mask_points=())
