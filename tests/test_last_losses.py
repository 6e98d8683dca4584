"""``last_losses``: the same keys at every step from the first, for every strategy; computing the losses reads no
value back to the host, and reading them is one transfer.

On a GPU a host read of a tensor's value (``.item()``, ``float()``, ``bool()``, ``.tolist()``) waits for the device.
The CPU cannot show that wait, so the tests count the reads themselves, with a torch function mode that records
which semkt function made each one.
"""
from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ADAPTER, TinyHDR
from torch.overrides import TorchFunctionMode

from semkt_plugin import wrap

HOST_READS = {"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy"}
# skt without the SKB: SKAM, L_content and L_spg, the distillation from step 2, ramped over 2 steps
SMALL_SKT = dict(use_priors=False, lambda_color=0.0, perceptual="none", teacher_dim=8, teacher_heads=1, skam_latent=4,
                 distill_start=2, distill_warmup=2)
STRATEGIES = {  # name: (settings, the keys of last_losses, the keys that are 0 before their start)
    "skt": (SMALL_SKT, ["spg", "content", "feat", "orm", "total"], ["content", "feat"]),
    "smhdr": (dict(ramp_start=2, ramp_peak=3, ramp_end=6, refresh=2, mask_points=None), ["region", "ratio", "total"],
              ["ratio"]),
    "smarthdr": (dict(warmup=2, patch=16), ["k_s", "u_l1", "k_u", "kept", "total"], ["u_l1", "k_u", "kept"]),
}


class HostReads(TorchFunctionMode):
    """Counts host reads of tensor values by the semkt function that made them: ``(read, "SMHDR.loss")``."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[tuple[str, str]] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", None)
        if name in HOST_READS:
            frame = sys._getframe(1)
            while frame is not None and "semkt_plugin" not in frame.f_code.co_filename:
                frame = frame.f_back
            where = "outside semkt" if frame is None else frame.f_code.co_qualname.split(".<locals>")[0]
            self.sites[name, where] += 1
        return func(*args, **(kwargs or {}))


def _steps(strategy: str, settings: dict, steps: int, skb=None):
    """Train ``steps`` steps by the loop contract; yield after each ``loss()`` and again after each ``after_loss()``,
    with the reads each made."""
    torch.manual_seed(0)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy=strategy, skb=skb, **settings)
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-3)
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(2, 32, 32, dtype=torch.long)
    ids[:, 16:] += 1
    ids[:, :, 16:] += 2
    for step in range(steps):
        frames, unlabelled = ([torch.rand(2, 6, 32, 32, generator=g) for _ in range(3)] for _ in range(2))
        gt = torch.rand(2, 3, 32, 32, generator=g)
        skt.before_forward(regions=ids)
        out = model(*frames)
        with HostReads() as reads:
            loss = skt.loss(out, gt)
        yield step, skt, reads.sites
        with HostReads() as reads:
            loss = loss + skt.after_loss(regions=ids, unlabelled=unlabelled)
        yield step, skt, reads.sites
        opt.zero_grad()
        (F.l1_loss(out, gt) + loss).backward()
        opt.step()
    skt.unwrap()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_keys_are_the_same_at_every_step_from_the_first(strategy):
    settings, keys, late = STRATEGIES[strategy]
    started = []
    for step, skt, _ in _steps(strategy, settings, 5):
        values = skt.last_losses
        assert list(values) == keys, step
        started.append(all(values[k] != 0 for k in late))
        if step < 2:
            assert all(values[k] == 0.0 for k in late), (step, values)
    assert started[-1]  # the terms did start


def test_skts_keys_with_the_skb_through_the_ramp(skb):
    """Every term of skt, L_color too: 0 before the distillation starts, listed all the same."""
    keys = ["spg", "content", "color", "feat", "orm", "total"]
    for step, skt, _ in _steps("skt", dict(perceptual="skb", distill_start=2, distill_warmup=2), 4, skb):
        values = skt.last_losses
        assert list(values) == keys
        assert (values["content"] == values["color"] == values["feat"] == 0.0) == (step < 2)


def test_a_term_switched_off_is_not_listed():
    skt = wrap(TinyHDR(), TINY_ADAPTER, **{**SMALL_SKT, "lambda_content": 0.0, "use_skam": False})
    out = skt.model(*[torch.rand(1, 6, 8, 8) for _ in range(3)])
    skt.loss(out, torch.rand_like(out))
    assert list(skt.last_losses) == ["spg", "orm", "total"]
    skt.unwrap()


# what a step reads back besides the input check (one read of each tensor T maps: docs/training.md, Bad input)
KEPT = {
    "skt": set(),
    # SMHDR's tables are dicts keyed by region ID on the host: the IDs and each region's error sums are read back
    "smhdr": {"SMHDR.loss", "SMHDR._accumulate", "SMHDR._draw_keep", "SMHDR._begin", "SMHDR._update_tables"},
    # the strong augmentation is drawn from a generator on the CPU: host tensors, no device to wait for
    "smarthdr": {"Augmentation.draw"},
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_computing_the_losses_reads_no_loss_back_and_a_read_is_one_transfer(strategy):
    settings, keys, _ = STRATEGIES[strategy]
    for step, skt, sites in _steps(strategy, settings, 5):
        assert {where for _, where in sites} <= {"check_hdr"} | KEPT[strategy], (step, sites)
        assert all(read == "__bool__" for read, where in sites if where == "check_hdr"), sites
        with HostReads() as reads:
            values = skt.last_losses
        assert reads.sites == {("tolist", "to_host"): 1} and list(values) == keys


def test_skt_reads_only_to_check_its_two_inputs():
    """skt's step reads exactly one value of each of H_in and the target, before and after the start."""
    for _, _, sites in _steps("skt", SMALL_SKT, 4):
        assert sites in (Counter({("__bool__", "check_hdr"): 2}), Counter()), sites  # after_loss() reads nothing
