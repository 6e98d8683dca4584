"""`semkt probe` for any model: each built-in adapter's replica probed with that model's own inputs and loss
(TMRNet on packed Bayer RAW), `semkt probe` with a user's `--batches` and `--loss`, and the device plumbing.

Narrow replicas, 32² crops (64² for SAFNet, 16² packed RAW), four steps, the stand-in SKB and a narrow teacher:
seconds each.
"""
from __future__ import annotations

import json
import math
from argparse import Namespace
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from _replicas import NAMES, replica_module
from conftest import train_alone

from semkt_plugin import cli
from semkt_plugin.diagnostics.batches import split, to_device
from semkt_plugin.diagnostics.probe import run_probe
from semkt_plugin.diagnostics.runtime import describe_device, resolve_device
from semkt_plugin.strategies.skt import SKTConfig

MU = 5000.0
STEPS = 4
CONFIG = SKTConfig(skb_weights="standin", perceptual="skb", teacher_dim=8, teacher_heads=1, seed=0)


def mu_law(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(MU * x) / math.log1p(MU)


def hdr(g: torch.Generator, channels: int = 3, size: int = 32) -> torch.Tensor:
    """A smooth random linear HDR image ``(1, channels, size, size)`` in ``[0, 1]``."""
    return F.interpolate(torch.rand(1, channels, 4, 4, generator=g) ** 2, size=(size, size), mode="bilinear",
                         align_corners=False)


def kalantari_frames(gt: torch.Tensor, linear_first: bool) -> list[torch.Tensor]:
    """Three exposures (t = 1, 4, 16) of ``gt`` as 6-channel frames: ``[LDR, LDR^2.2/t]`` (AHDR) or
    ``[LDR^2.2/t, LDR]`` (HDR-Transformer, SCTNet, SAFNet)."""
    frames = []
    for t in (1.0, 4.0, 16.0):
        ldr = (gt * t).clamp(0, 1) ** (1 / 2.2)
        lin = ldr**2.2 / t
        frames.append(torch.cat([lin, ldr] if linear_first else [ldr, lin], 1))
    return frames


def bracket_raw(gt: torch.Tensor) -> torch.Tensor:
    """TMRNet's input from a packed RGGB ground truth ``(1, 4, h, w)`` at 16× scale: five 10-bit frames, frame ``t``
    four times longer than frame ``t - 1``, then multiplied by ``4**(2 - t)`` as ``SynModel.set_input`` does."""
    frames = [torch.round((gt / 16 * 4.0**t).clamp(0, 1) * 1023) / 1023 * 4.0 ** (2 - t) for t in range(5)]
    return torch.stack(frames, 1)


def ahdr_style_loss(output, target):
    """L1 of the μ-law tone maps: AHDR's loss, and the reconstruction part of HDR-Transformer's and SCTNet's
    (their VGG16 perceptual part needs ImageNet weights)."""
    return F.l1_loss(mu_law(output), mu_law(target))


def safnet_loss(output, target):
    """On the refined output, ``output[1]`` (docs/recipes/safnet.md)."""
    return F.l1_loss(mu_law(output[1]), mu_law(target))


def tmrnet_loss(output, target):
    """BracketIRE's ``SynModel.backward``: L1 of μ-law(clamp(x / 16)) (docs/recipes/tmrnet.md)."""
    return F.l1_loss(mu_law((output / 16).clamp(min=0)), mu_law((target / 16).clamp(0, 1)))


def narrow(name: str) -> torch.nn.Module:
    """The replica, narrow (the adapters' hook paths still exist) and without drop-path (a deterministic step)."""
    module = replica_module(name)
    if name == "ahdr":
        return module.AHDR(Namespace(nChannel=6, nDenselayer=1, nFeat=8, growthRate=4))
    if name == "hdr_transformer":
        return module.HDRTransformer(img_size=32, embed_dim=8, depths=[1, 1], num_heads=[1, 1], mlp_ratio=1,
                                     in_chans=6, drop_path_rate=0.0)
    if name == "sctnet":
        return module.SCTNet(upscale=2, img_size=(32, 32), in_chans=18, window_size=8, depths=[1, 1, 1],
                             embed_dim=12, num_heads=[1, 1, 1], mlp_ratio=1, drop_path_rate=0.0)
    if name == "safnet":
        return module.SAFNet()  # takes no width arguments
    return module.TMRNet(mid_channels=8)  # deform_groups=8 needs a multiple of 8


def batches(name: str, n: int = STEPS) -> list[tuple[torch.Tensor, ...]]:
    """``n`` batches ``(*inputs, target)`` in the model's own input order and domain."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        if name == "tmrnet":
            gt = hdr(g, channels=4, size=16) * 16
            out.append((bracket_raw(gt), gt))
        else:  # SAFNet's flow pyramid runs at half size down to 1/16: a 32² crop leaves a 1-pixel level
            gt = hdr(g, size=64 if name == "safnet" else 32)
            out.append((*kalantari_frames(gt, linear_first=name != "ahdr"), gt))
    return out


LOSSES = {"ahdr": ahdr_style_loss, "hdr_transformer": ahdr_style_loss, "sctnet": ahdr_style_loss,
          "safnet": safnet_loss, "tmrnet": tmrnet_loss}


@pytest.fixture(scope="module")
def standin():
    from semkt_plugin.skb import load_skb

    return load_skb("standin", num_regions=CONFIG.num_regions)


@pytest.mark.parametrize("name", NAMES)
def test_probe_runs_each_builtin_adapter_on_its_models_own_inputs_and_loss(name, standin):
    data, loss = batches(name), LOSSES[name]
    torch.manual_seed(0)
    alone = narrow(name).train()
    train_alone(alone, data, loss)

    torch.manual_seed(0)
    probed = narrow(name).train()
    report = run_probe(probed, name, data, loss, steps=STEPS, windows=2, config=CONFIG, lr=1e-3, skb=standin,
                       progress=False)
    # the model trained on its own loss alone: the teachers read its output and never moved it
    for a, b in zip(alone.parameters(), probed.parameters()):
        assert torch.equal(a, b)
    assert set(report.spg) == {"no priors", "priors from the output"} and len(report.orm) == STEPS
    assert all(math.isfinite(v) and v > 0 for v in [*report.orm, *report.spg["no priors"],
                                                    *report.spg["priors from the output"]])
    table = report.table()
    assert f"device: {describe_device('cpu')}" in table and "SKB: given (SemanticKnowledgeBank)" in table
    assert f"model: {type(probed).__name__}, " in table


def test_batches_are_moved_through_tuples_lists_and_dicts():
    Pair = namedtuple("Pair", "a b")
    batch = (torch.zeros(1), [torch.ones(2), {"x": torch.ones(3), "k": 3}], Pair(torch.ones(1), "s"), torch.ones(1))
    inputs, target = split(batch, "meta")  # a device every machine has
    assert target.device.type == "meta" and inputs[0].device.type == "meta"
    assert inputs[1][0].device.type == inputs[1][1]["x"].device.type == "meta" and inputs[1][1]["k"] == 3
    assert isinstance(inputs[2], Pair) and inputs[2].a.device.type == "meta" and inputs[2].b == "s"
    assert to_device("text", "meta") == "text"
    with pytest.raises(TypeError, match=r"tuple or list \(\*inputs, target\).*got Tensor"):
        split(torch.zeros(2, 3), "cpu")
    with pytest.raises(TypeError, match="got tuple of length 1"):
        split((torch.zeros(1),), "cpu")


def test_device_names_are_checked():
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name torch knows"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here.*use --device cpu"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_says_to_use_the_cpu_when_cuda_is_missing(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["probe", "--device", "cuda"])
    assert exit_.value.code == 2
    assert "CUDA is not available here" in capsys.readouterr().err


MODULE = '''
"""A model unlike AHDR: one stacked input and a dict of exposures, a batches function and a loss of its own."""
from pathlib import Path

import torch
from torch import nn

LOG = Path(__file__).with_name("calls.txt")


class Stacked(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.head = nn.Conv2d(9, width, 3, padding=1)
        self.body = nn.Conv2d(width, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, frames, meta):  # frames (B, 3, 3, H, W) LDRs, meta {"t": (B, 3)} exposure times
        lin = frames ** 2.2 / meta["t"][:, :, None, None, None]
        x = torch.relu(self.head(lin.flatten(1, 2)))
        return torch.sigmoid(self.tail(torch.relu(self.body(x))))


def make(seed, device):
    with LOG.open("a") as log:
        log.write(f"batches seed={seed} device={device}\\n")
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):  # fewer than the steps: cycled
        gt = torch.rand(1, 3, 32, 32, generator=g)
        t = torch.tensor([[1.0, 4.0, 16.0]])
        frames = (gt[:, None] * t[:, :, None, None, None]).clamp(0, 1) ** (1 / 2.2)
        out.append((frames, {"t": t}, gt))
    return out


def l1(output, target):
    with LOG.open("a") as log:
        log.write(f"loss {output.device}\\n")
    return (output - target).abs().mean()
'''


def users_model(tmp_path) -> list[str]:
    """The options that name a user's model, adapter, batches and loss (written to ``tmp_path``), small teachers."""
    (tmp_path / "mine.py").write_text(MODULE)
    adapter = tmp_path / "stacked.yaml"
    adapter.write_text("name: stacked\nhooks: [head, body]\n")
    return ["--model", f"{tmp_path / 'mine.py'}:Stacked", "--adapter", str(adapter),
            "--batches", f"{tmp_path / 'mine.py'}:make", "--loss", f"{tmp_path / 'mine.py'}:l1",
            "--config", json.dumps({"teacher_dim": 8, "teacher_heads": 1}), "--device", "cpu"]


def test_cli_probe_takes_a_users_batches_and_loss(tmp_path, capsys):
    out = tmp_path / "probe"
    assert cli.main(["probe", *users_model(tmp_path), "--steps", "4", "--windows", "2", "--seed", "3",
                     "--out", str(out)]) == 0
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert calls == ["batches seed=3 device=cpu"] + ["loss cpu"] * 4
    printed = capsys.readouterr().out
    assert f"device  {describe_device('cpu')}" in printed and "SKB     standin" in printed
    assert "model   Stacked (" in printed and "mine.py:Stacked), " in printed
    result = json.loads((out / "probe.json").read_text())
    assert result["setup"]["device"] == describe_device("cpu") and result["setup"]["SKB"].startswith("standin")
    assert result["settings"]["device"] == "cpu" and result["settings"]["data"] is None
    assert len(result["orm"]) == 4 and not (out / "data").exists()  # the default data were never built

    with pytest.raises(SystemExit, match="drop --data"):
        cli.main(["probe", "--batches", f"{tmp_path / 'mine.py'}:make", "--data", str(tmp_path)])
    with pytest.raises(SystemExit, match="has no 'missing'"):
        cli.main(["probe", "--batches", f"{tmp_path / 'mine.py'}:missing", "--out", str(out)])


def test_cli_balance_takes_a_users_batches_and_loss(tmp_path, capsys):
    out = tmp_path / "balance"
    assert cli.main(["balance", *users_model(tmp_path), "--steps", "2", "--out", str(out)]) == 0
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["batches seed=0 device=cpu"] + ["loss cpu"] * 2
    printed = capsys.readouterr().out
    assert f"device  {describe_device('cpu')}" in printed and "SKB     standin" in printed
    result = json.loads((out / "balance.json").read_text())
    assert len(result["records"]) == 2 and result["summary"]["feat"]["ratio_median"] > 0  # SKAM pulls on `body`
