"""Resume and checkpoint hygiene: plugin state saves and restores; the ORM's checkpoints stay the ORM's own."""
import pytest
import torch
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR, train_steps
from torch import nn

from semkt_plugin.skb import fold_batch_norms, load_skb, ultralytics_sandbox
from semkt_plugin.wrapping import wrap

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
    assert all(k.startswith(("teacher.", "skam.")) or k in ("steps", "_extra_state") for k in plugin_keys), \
        sorted(plugin_keys)[:5]
    skt.unwrap()


def test_skb_state_dict_files_load_with_weights_only(tmp_path, monkeypatch):
    with ultralytics_sandbox():
        from ultralytics.nn.tasks import SegmentationModel

        net = SegmentationModel("yolov8n-seg.yaml", nc=1, verbose=False)
    path = tmp_path / "skb_state.pt"
    torch.save(net.state_dict(), path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_skb(path, arch="yolov8n-seg.yaml", num_regions=4)
    assert calls == [True]
    fold_batch_norms(net.eval())  # as the SKB keeps its weights
    assert all(torch.equal(a, b) for a, b in zip(loaded.layers.state_dict().values(), net.model.state_dict().values()))


# --- the run's settings travel with the checkpoint ------------------------------------------------------------------

SMALL = dict(use_priors=False, lambda_color=0.0, lambda_content=0.0, teacher_dim=8, teacher_heads=1, skam_latent=4)
RUNS = {  # strategy: its settings, with its schedule given as fractions of total_steps
    "skt": SMALL,
    "smhdr": dict(ramp_start=0.5, ramp_peak=0.75),
    "smarthdr": dict(warmup=0.25, ema=0.0),
}


def _plugin(strategy: str = "skt", **settings):
    return wrap(TinyHDR(), TINY_ADAPTER, strategy=strategy, **{**RUNS[strategy], **settings})


def _saved(skt, path) -> dict:
    """``skt.state_dict()`` through ``torch.save`` and ``torch.load(weights_only=True)``; ``skt`` is unwrapped."""
    torch.save(skt.state_dict(), path)
    skt.unwrap()
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("strategy", RUNS)
def test_the_settings_survive_a_weights_only_round_trip(strategy, tmp_path):
    skt = _plugin(strategy, total_steps=40)
    settings = skt.run_settings()
    assert settings["strategy"] == strategy and settings["total_steps"] == 40
    assert _saved(skt, tmp_path / "ckpt.pt")["_extra_state"]["settings"] == settings
    skt = _plugin(strategy, total_steps=40)
    skt.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))  # the same run: loads
    skt.unwrap()


def test_skts_settings_are_the_schedule_as_given_and_in_steps():
    skt = _plugin(total_steps=60, distill_start=0.5, distill_warmup=6)
    assert skt.run_settings() == {"strategy": "skt", "total_steps": 60,
                                  "schedule": {"distill_start": 0.5, "distill_warmup": 6},
                                  "steps": {"distill_start": 30, "distill_warmup": 6}}
    skt.unwrap()


@pytest.mark.parametrize("strategy, point, steps", [("skt", "distill_start", (50, 100)),
                                                    ("smhdr", "ramp_start", (50, 100)),
                                                    ("smarthdr", "warmup", (25, 50))])
def test_another_total_steps_is_refused_naming_both(strategy, point, steps, tmp_path):
    state = _saved(_plugin(strategy, total_steps=100), tmp_path / "ckpt.pt")
    skt = _plugin(strategy, total_steps=200)
    before = {k: v.clone() for k, v in skt.state_dict().items() if isinstance(v, torch.Tensor)}
    with pytest.raises(ValueError) as err:
        skt.load_state_dict(state)
    message = str(err.value)
    assert f"{point} is step {steps[0]} in the checkpoint's run ({point}=" in message
    assert f"but step {steps[1]} in this plugin's ({point}=" in message
    assert "of total_steps=100" in message and "of total_steps=200" in message
    assert "total_steps=100" in message.split("Wrap with the checkpoint's settings")[1]  # the fix
    assert "strict_settings=False" in message
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in skt.state_dict().items() if isinstance(v, torch.Tensor))
    skt.unwrap()


def test_the_override_loads_into_this_plugins_schedule(skb, tmp_path):
    model, skt, opt = _fresh(skb, seed=0)
    train_steps(model, skt, opt, _data(2))
    state = _saved(skt, tmp_path / "ckpt.pt")
    twin = wrap(TinyHDR(), TINY_ADAPTER, skb=skb, **{**FAST, "distill_start": 5})
    with pytest.raises(ValueError, match="distill_start is step 0 in the checkpoint's run"):
        twin.load_state_dict(state)
    twin.load_state_dict(state, strict_settings=False)
    assert int(twin.steps) == 2 and twin.weights(2)["feat"] == 0.0  # the checkpoint's state, this plugin's schedule
    assert all(torch.equal(state[k], v) for k, v in twin.state_dict().items() if isinstance(v, torch.Tensor))
    with pytest.raises(ValueError, match="distill_start"):  # the check is back on for the next load
        twin.load_state_dict(state)
    twin.unwrap()


def test_the_same_schedule_in_other_words_loads(tmp_path):
    """What is compared is the schedule in steps: step counts as ints, or another total_steps that moves no point."""
    state = _saved(_plugin(total_steps=100, distill_start=0.5, distill_warmup=10), tmp_path / "ckpt.pt")
    for settings in (dict(total_steps=100, distill_start=50, distill_warmup=0.1),
                     dict(total_steps=200, distill_start=50, distill_warmup=10)):
        skt = _plugin(**settings)
        skt.load_state_dict(state)
        skt.unwrap()


def test_another_strategys_checkpoint_is_refused(tmp_path):
    state = _saved(_plugin("smhdr", total_steps=100), tmp_path / "ckpt.pt")
    skt = _plugin(total_steps=100)
    with pytest.raises(ValueError, match="the checkpoint is of a 'smhdr' plugin, this plugin is 'skt'"):
        skt.load_state_dict(state)
    skt.unwrap()


@pytest.mark.parametrize("strategy", RUNS)
def test_a_checkpoint_without_the_settings_loads_unchecked(strategy, tmp_path):
    state = _saved(_plugin(strategy, total_steps=100), tmp_path / "ckpt.pt")
    del state["_extra_state"]["settings"]
    if strategy == "skt":  # skt kept no extra state of its own before
        assert state.pop("_extra_state") == {}
    skt = _plugin(strategy, total_steps=200)
    skt.load_state_dict(state)
    # as a part of a larger module too (its keys prefixed), and by torch's positional signature
    nn.ModuleDict({"plugin": skt}).load_state_dict({f"plugin.{k}": v for k, v in state.items()}, True, False)
    skt.unwrap()


def test_a_checkpoint_in_a_larger_module_is_checked(tmp_path):
    state = _saved(_plugin(total_steps=100), tmp_path / "ckpt.pt")
    skt = _plugin(total_steps=200)
    with pytest.raises(ValueError, match="distill_start is step 50 in the checkpoint's run"):
        nn.ModuleDict({"plugin": skt}).load_state_dict({f"plugin.{k}": v for k, v in state.items()})
    skt.unwrap()
