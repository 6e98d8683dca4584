"""A wrapped model behaves like any other model: copies and pickles of it are plain models, validation passes and
failed forwards leave the next ``loss()`` exactly as it would have been, and nn.DataParallel over several GPUs is
refused with the fix while one device works."""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from conftest import NO_SKB as CHEAP
from conftest import TINY_ADAPTER, Boom, FlakyHDR, TinyHDR
from torch import nn

from semkt_plugin import wrap
from semkt_plugin.feature_hooks import DATA_PARALLEL

SETTINGS = {"skt": CHEAP, "smhdr": dict(ramp_start=0, ramp_peak=0, ramp_end=1000, mask_points=None),
            "smarthdr": dict(warmup=2, total_steps=6, ema=0.0)}


def _semkt_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _batches(n: int, size: int = 16) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [([torch.rand(2, 6, size, size, generator=g) for _ in range(3)], torch.rand(2, 3, size, size, generator=g))
            for _ in range(n)]


def _ids(size: int = 16) -> torch.Tensor:
    ids = torch.zeros(2, size, size, dtype=torch.long)
    ids[:, size // 2:] = 1
    return ids


def _train(strategy: str, between=None, steps: int = 6) -> list[dict[str, float]]:
    """Six steps of the tiny model under ``strategy``; ``between(model, skt, frames)`` runs after step 2."""
    torch.manual_seed(0)
    model = FlakyHDR(4)
    skt = wrap(model, TINY_ADAPTER, strategy=strategy, **SETTINGS[strategy])
    opt = torch.optim.SGD([*model.parameters(), *skt.parameters()], 0.1)
    records = []
    for step, (frames, gt) in enumerate(_batches(steps)):
        if strategy == "smhdr":
            skt.regions(_ids())
        out = model(*frames)
        loss = F.l1_loss(out, gt) + skt.loss(out, gt)
        if strategy == "smarthdr":
            loss = loss + skt.unlabelled_loss([f.flip(-1) for f in frames])
        opt.zero_grad()
        loss.backward()
        opt.step()
        records.append({"loss": loss.item(), **skt.last_losses})
        if step == 2 and between is not None:
            between(model, skt, frames)
    skt.unwrap()
    assert _semkt_hooks(model) == 0 and "__getstate__" not in model.__dict__
    return records


# --- copies and pickles ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", SETTINGS)
def test_a_deep_copy_and_a_pickle_are_plain_models(strategy):
    model = TinyHDR(4)
    plain = copy.deepcopy(model)
    skt = wrap(model, TINY_ADAPTER, strategy=strategy, **SETTINGS[strategy])
    assert _semkt_hooks(model) > 0
    buffer = io.BytesIO()
    torch.save(model, buffer)  # failed on the plugin's hook closures before
    copies = {"deepcopy": copy.deepcopy(model), "pickle": pickle.loads(pickle.dumps(model)),
              "torch.save": torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)}
    frames = [torch.rand(1, 6, 8, 8) for _ in range(3)]
    for how, twin in copies.items():
        assert _semkt_hooks(twin) == 0, how
        assert "__getstate__" not in twin.__dict__, how
        assert twin.state_dict().keys() == plain.state_dict().keys(), how
        for a, b in zip(twin.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b), how
        twin(*frames).sum().backward()  # a copy's forward feeds nothing of the original plugin
    if strategy == "skt":
        assert skt.hooks.captured == {}
    assert skt.unwrap() is model
    assert _semkt_hooks(model) == 0 and "__getstate__" not in model.__dict__
    assert all(_semkt_hooks(twin) == 0 for twin in copies.values())


def test_a_copy_keeps_the_users_own_hooks():
    model = TinyHDR(4)
    calls = []
    model.body.register_forward_hook(lambda *args: calls.append(1))
    skt = wrap(model, TINY_ADAPTER, **CHEAP)
    twin = copy.deepcopy(model)
    assert len(twin.body._forward_hooks) == 1
    twin(*[torch.rand(1, 6, 8, 8) for _ in range(3)])
    assert calls == [1]
    skt.unwrap()
    assert len(model.body._forward_hooks) == 1  # unwrap removes semkt's hooks only


def test_a_users_instance_getstate_is_kept():
    model = TinyHDR(4)
    model.__dict__["__getstate__"] = lambda: {**nn.Module.__getstate__(model), "marker": 1}
    skt = wrap(model, TINY_ADAPTER, **CHEAP)
    assert copy.deepcopy(model).marker == 1
    skt.unwrap()
    assert model.__dict__["__getstate__"]()["marker"] == 1


# --- the next loss() is what it would have been ----------------------------------------------------------------------

def _ema_copy(model, skt, frames):
    ema = copy.deepcopy(model)  # timm's ModelEmaV2
    ema(*frames).sum().backward()


def _whole_model_checkpoint(model, skt, frames):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)(*frames)


def _validation(model, skt, frames):
    model.eval()
    with torch.no_grad():
        model(*frames)
    model.train()


def _validation_with_gradients(model, skt, frames):
    model.eval()  # some repositories validate without torch.no_grad()
    model(*frames).sum()
    model.train()


def _failing_forward(model, skt, frames):
    if skt.name == "smhdr":
        skt.regions(_ids())
    model.fail = True
    with pytest.raises(Boom):
        model(*frames)
    model.fail = False


@pytest.mark.parametrize("strategy", SETTINGS)
@pytest.mark.parametrize("event", [_ema_copy, _whole_model_checkpoint, _validation, _validation_with_gradients,
                                   _failing_forward])
def test_the_next_losses_are_exactly_what_they_would_have_been(strategy, event):
    assert _train(strategy, event) == _train(strategy)


# --- nn.DataParallel -------------------------------------------------------------------------------------------------

def _replica(model: nn.Module) -> nn.Module:
    """What ``torch.nn.parallel.replicate`` builds for one device, without CUDA: a replica of every module that
    shares the original's hook dicts and parameters (torch marks each ``_is_replica``)."""
    replicas = {m: m._replicate_for_data_parallel() for m in model.modules()}
    for module, replica in replicas.items():
        replica._modules = {name: replicas[child] for name, child in module._modules.items()}
        replica._parameters = dict(module._parameters)
    return replicas[model]


@pytest.mark.parametrize("strategy", SETTINGS)
def test_a_data_parallel_replica_that_trains_is_refused_with_the_fix(strategy):
    model = TinyHDR(4)
    skt = wrap(nn.DataParallel(model), TINY_ADAPTER, strategy=strategy, **SETTINGS[strategy])
    replica = _replica(model)
    frames = [torch.rand(2, 6, 8, 8) for _ in range(3)]
    with pytest.raises(RuntimeError, match="DistributedDataParallel") as error:
        replica(*frames)
    assert "nn.DataParallel" in str(error.value) and "docs/recipes" in str(error.value)
    with torch.no_grad():  # a validation pass under DataParallel captures nothing, so it may run
        replica(*frames)
    skt.unwrap()
    replica(*frames)  # unwrapped: an ordinary replica again
    assert DATA_PARALLEL in str(error.value)


def test_data_parallel_on_one_device_trains_as_the_bare_model():
    def run(container: bool) -> list[float]:
        torch.manual_seed(0)
        model = TinyHDR(4)
        runner = nn.DataParallel(model) if container else model  # no GPU: DataParallel calls the module itself
        skt = wrap(runner, TINY_ADAPTER, **CHEAP)
        opt = torch.optim.SGD([*model.parameters(), *skt.parameters()], 0.1)
        losses = []
        for frames, gt in _batches(3):
            out = runner(*frames)
            loss = F.l1_loss(out, gt) + skt.loss(out, gt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        skt.unwrap()
        return losses

    assert run(container=True) == run(container=False)
