"""Resume and checkpoint hygiene: plugin state saves and restores; the ORM's checkpoints stay the ORM's own."""
import pytest
import torch
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR, train_steps

from semkt_plugin.plugin import wrap
from semkt_plugin.skb import load_skb

FAST = dict(perceptual="skb", **FROM_STEP_0)


def _data(steps: int) -> list:
    g = torch.Generator().manual_seed(7)
    return [([torch.rand(1, 6, 32, 32, generator=g) for _ in range(3)], torch.rand(1, 3, 32, 32, generator=g))
            for _ in range(steps)]


def _fresh(skb, seed: int):
    torch.manual_seed(seed)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb=skb, **FAST)
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)
    return model, skt, opt


def _interrupted(skb, data, path, keep_mask_rng: bool = True) -> list[dict[str, float]]:
    model, skt, opt = _fresh(skb, seed=0)
    train_steps(model, skt, opt, data[:2])
    torch.save({"model": model.state_dict(), "semkt": skt.state_dict(), "optim": opt.state_dict()}, path)
    skt.unwrap()
    # a new process would start from other random weights and another global RNG state: so do we
    model, skt, opt = _fresh(skb, seed=123)
    ckpt = torch.load(path, weights_only=True)
    model.load_state_dict(ckpt["model"])
    if not keep_mask_rng:
        del ckpt["semkt"]["skam._extra_state"]
    skt.load_state_dict(ckpt["semkt"], strict=keep_mask_rng)
    opt.load_state_dict(ckpt["optim"])
    losses = train_steps(model, skt, opt, data[2:])
    skt.unwrap()
    return losses


def test_resumed_run_matches_the_uninterrupted_one(skb, tmp_path):
    data = _data(4)
    model, skt, opt = _fresh(skb, seed=0)
    straight = train_steps(model, skt, opt, data)
    skt.unwrap()
    resumed = _interrupted(skb, data, tmp_path / "ckpt.pt")
    for a, b in zip(straight[2:], resumed):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-7)


def test_without_the_mask_rng_the_resumed_masks_differ(skb, tmp_path):
    """The SKAM generator is what makes the test above pass for L_feat: drop it and L_feat changes."""
    data = _data(4)
    model, skt, opt = _fresh(skb, seed=0)
    straight = train_steps(model, skt, opt, data)
    skt.unwrap()
    resumed = _interrupted(skb, data, tmp_path / "ckpt.pt", keep_mask_rng=False)
    assert resumed[0]["spg"] == pytest.approx(straight[2]["spg"], rel=1e-5)
    assert resumed[0]["feat"] != pytest.approx(straight[2]["feat"], rel=1e-5)


def test_orm_checkpoint_has_exactly_the_original_keys(skb, batch, tmp_path):
    frames, gt = batch
    model, skt, opt = _fresh(skb, seed=0)
    keys = list(TinyHDR().state_dict())
    train_steps(model, skt, opt, [batch])
    assert list(model.state_dict()) == keys  # still wrapped: the hooks add nothing to the state
    torch.save(model.state_dict(), tmp_path / "orm.pt")
    TinyHDR().load_state_dict(torch.load(tmp_path / "orm.pt", weights_only=True), strict=True)
    plugin_keys = set(skt.state_dict())
    assert plugin_keys and not plugin_keys & set(keys)
    assert all(k.startswith(("teacher.", "skam.")) or k == "steps" for k in plugin_keys), sorted(plugin_keys)[:5]
    skt.unwrap()


def test_skb_state_dict_files_load_with_weights_only(skb, tmp_path, monkeypatch):
    path = tmp_path / "skb_state.pt"
    torch.save({f"model.{k.removeprefix('layers.')}": v for k, v in skb.state_dict().items()}, path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_skb(path, arch="yolov8n-seg.yaml", num_regions=4)
    assert calls == [True]
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), skb.state_dict().values()))
