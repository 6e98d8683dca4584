"""One rank of the two-process DDP check in ``test_ddp.py``: ``torchrun --nproc_per_node=2 ddp_worker.py OUT``.

Trains TinyHDR + semkt for a few steps on gloo (CPU) in both supported orders, ``wrap(DDP(model))`` and
``DDP(model)`` after ``wrap(model)``, with the plugin itself in ``DDP(skt)``. Each rank starts from its own random
ORM and plugin weights and sees its own data, so equal weights afterwards can only come from DDP's broadcast and
gradient averaging. Writes what the test compares to ``OUT/rank{rank}.pt``.
"""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import TINY_ADAPTER, TinyHDR
from torch.nn.parallel import DistributedDataParallel as DDP

from semkt_plugin import wrap
from semkt_plugin.skb import load_skb

STEPS = 3


def run(order: str, rank: int, skb: torch.nn.Module) -> dict:
    torch.manual_seed(1 + rank)
    model = TinyHDR()
    keys = list(model.state_dict())
    if order == "ddp-then-wrap":
        ddp = DDP(model)
        # plugins start apart: DDP must sync them
        skt = wrap(ddp, TINY_ADAPTER, skb=skb, perceptual="skb", seed=rank, distill_start=1, distill_warmup=0)
    else:
        skt = wrap(model, TINY_ADAPTER, skb=skb, perceptual="skb", seed=rank, distill_start=1, distill_warmup=0)
        ddp = DDP(model)
    init = {k: v.clone() for k, v in skt.state_dict().items() if isinstance(v, torch.Tensor)}
    # find_unused_parameters stays False: every trainable plugin parameter gets a gradient, also in step 0, where
    # distill_start=1 skips SKAM (its parameters get a zero) and the output-level terms
    skt_ddp = DDP(skt)
    opt = torch.optim.Adam([*ddp.parameters(), *skt_ddp.parameters()], 1e-3)
    g = torch.Generator().manual_seed(100 + rank)
    losses = []
    for _ in range(STEPS):
        frames, gt = [torch.rand(1, 6, 32, 32, generator=g) for _ in range(3)], torch.rand(1, 3, 32, 32, generator=g)
        out = ddp(*frames)
        loss = F.l1_loss(out, gt) + skt_ddp(out, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(skt.last_losses)
    result = {
        "init": init,
        "plugin": skt.state_dict(),
        "orm": model.state_dict(),
        "losses": losses,
        "keys_kept": list(model.state_dict()) == keys,
        "hooked_inner": skt.hooks.model is model and all(m._forward_hooks for m in skt.hooks.modules),
        "wrapper_hooks": len(ddp._forward_hooks) + len(ddp._forward_pre_hooks),
    }
    skt.unwrap()
    return result


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # the SKB is frozen and outside DDP: every rank must load the same weights
    skb = load_skb(None, arch="yolov8n-seg.yaml", num_regions=4)
    skb.score_threshold = 0.0
    results = {order: run(order, rank, skb) for order in ("ddp-then-wrap", "wrap-then-ddp")}
    torch.save(results, Path(sys.argv[1]) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
