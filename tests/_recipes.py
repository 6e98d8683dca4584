"""The harness of ``test_recipes.py``: the code blocks of docs/recipes/*.md and docs/training.md, read from the
markdown, and what runs them as written (small replicas, small data, an offline ``wrap``).

A block runs in a namespace that stands for the module it is pasted into: :func:`run` adds the names the
surrounding script defines at that point (``args``, ``model``, ``output`` ...) and executes the block's text, so the
docs and the tests cannot drift apart. Tracebacks name the markdown file and line.
"""
from __future__ import annotations

import math
import re
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _replicas import ROOT, replica_module
from torch import nn

import semkt_plugin.wrapping

RECIPES = ROOT / "docs" / "recipes"
TRAINING = ROOT / "docs" / "training.md"
TRAINING_BLOCKS = ("schedule", "ddp", "amp", "logging", "save", "resume")  # docs/training.md's python blocks, in order
# the test that runs a marked fragment, written just before its fence
FRAGMENT = re.compile(r"<!-- fragment: covered by (\S+)::(\w+) -->")
FENCE = re.compile(r"^( *)```(\w*)\s*$")

# offline: semkt's bundled stand-in SKB in place of FastSAM-s, its features in place of VGG19
OFFLINE = {"skb_weights": "standin", "perceptual": "skb"}
MU = 5000.0


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its text (dedented to its fence) and, for a block marked as a
    fragment, the test that covers it (``tests/x.py::test_y``)."""

    doc: Path
    line: int  # of the block's first line of code
    lang: str
    code: str
    covered_by: str | None


def blocks(doc: Path) -> list[Block]:
    """Every fenced code block of ``doc``, in order."""
    lines = doc.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, lang = fence.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = lines[i + 1:end]
        assert all(not line.strip() or line.startswith(indent) for line in body), f"{doc}:{i + 1}: ragged block"
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        marker = FRAGMENT.search(before)
        found.append(Block(doc, i + 2, lang, "\n".join(line[len(indent):] for line in body) + "\n",
                           f"{marker[1]}::{marker[2]}" if marker else None))
        i = end + 1
    return found


def runnable(doc: Path, *names: str) -> dict[str, Block]:
    """The python blocks of ``doc`` that are not marked as fragments, by the names given in their order; a block
    more or fewer than ``names`` is an error, so a new block cannot go unrun."""
    found = [b for b in blocks(doc) if b.lang == "python" and b.covered_by is None]
    assert len(found) == len(names), f"{doc.name} has {len(found)} python blocks to run, the test names {names}"
    return dict(zip(names, found))


def run(block: Block, namespace: dict[str, Any], **names: Any) -> dict[str, Any]:
    """Execute ``block`` as written in ``namespace`` (the module it is pasted into), after adding ``names``."""
    namespace.update(names)
    code = "\n" * (block.line - 1) + block.code  # line numbers of the markdown in tracebacks
    exec(compile(code, str(block.doc), "exec"), namespace)
    return namespace


def offline_wrap(calls: list[dict[str, Any]]):
    """``semkt_plugin.wrap`` with :data:`OFFLINE` in force; appends the settings each call was given to ``calls``."""

    def wrap(model: nn.Module, adapter: Any, *args: Any, **settings: Any):
        calls.append(settings)
        return semkt_plugin.wrapping.wrap(model, adapter, *args, **{**settings, **OFFLINE})

    return wrap


class Writer:
    """What a TensorBoard ``SummaryWriter`` is given (its signatures; tensorboard is no dependency of semkt)."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int | None]] = []

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        assert isinstance(scalar_value, float) and math.isfinite(scalar_value), (tag, scalar_value)
        self.scalars.append((tag, scalar_value, global_step))

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict[str, float], global_step: int | None = None) -> None:
        for tag, value in tag_scalar_dict.items():
            self.add_scalar(f"{main_tag}/{tag}", value, global_step)


AHDR_ARGS = Namespace(nChannel=6, nDenselayer=2, nFeat=8, growthRate=4)


def tiny(name: str) -> nn.Module:
    """The replica of baseline ``name``, narrow and shallow (its module paths, forward and output as upstream)."""
    module = replica_module("safnet" if name == "safnet_s" else name)
    if name == "ahdr":
        return module.AHDR(AHDR_ARGS)
    if name == "hdr_transformer":
        return module.HDRTransformer(img_size=32, embed_dim=12, depths=[1, 1, 1], num_heads=[2, 2, 2], mlp_ratio=2,
                                     in_chans=6)
    if name == "sctnet":
        return module.SCTNet(upscale=2, img_size=(32, 32), in_chans=18, window_size=8, img_range=1.0,
                             depths=[1, 1, 1, 1], embed_dim=24, num_heads=[2, 2, 2, 2], mlp_ratio=2)
    if name == "safnet":
        return module.SAFNet()  # upstream has no width argument
    if name == "safnet_s":
        return module.SAFNet_S()
    if name == "tmrnet":
        return module.TMRNet(Namespace(isTrain=True), mid_channels=8)
    raise ValueError(name)


def mu_law(hdr: torch.Tensor) -> torch.Tensor:
    return torch.log(1 + MU * hdr) / math.log(1 + MU)


def mu_l1(out: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The baselines' own loss: L1 between the μ-law tone maps."""
    return nn.functional.l1_loss(mu_law(out), mu_law(gt))


def scene(g: torch.Generator, size: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """A random linear HDR scene in ``[0, 1]`` ``(3, size, size)`` and its three exposures (times 1, 4, 16) as
    ``(LDR, LDR**2.2 / t)`` pairs."""
    hdr = torch.rand(3, size, size, generator=g)
    frames = []
    for t in (1.0, 4.0, 16.0):
        ldr = (hdr * t).clamp(0, 1) ** (1 / 2.2)
        frames.append((ldr, ldr**2.2 / t))
    return frames, hdr


def ahdr_pairs(n: int, size: int, seed: int = 0) -> list[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
    """``n`` samples ``((x1, x2, x3), gt)``, each frame ``[LDR, LDR**2.2/t]`` as AHDRNet takes it."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        frames, hdr = scene(g, size)
        samples.append((tuple(torch.cat([ldr, lin]) for ldr, lin in frames), hdr))
    return samples
