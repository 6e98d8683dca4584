"""One rank of the DDP check of the SMHDR and SmartHDR strategies in ``test_ddp.py`` (gloo, CPU):
``torchrun --nproc_per_node=2 ddp_strategies_worker.py OUT``.

As ``ddp_worker.py`` does for the default strategy: each rank starts from its own random model (and judge) and sees
its own data, so equal weights afterwards can only come from DDP. The loops are the README's: SMHDR gives each
batch's region maps before the forward and needs no ``DDP`` of its own (it trains no parameters); SmartHDR's
plugin is in ``DDP(skt)`` for its judge, and its unlabelled loss runs the model a second time.
"""
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import TINY_ADAPTER, TinyHDR
from torch.nn.parallel import DistributedDataParallel as DDP

from semkt_plugin import wrap

STEPS = 3
SETTINGS = {"smhdr": {"ramp_start": 0, "ramp_peak": 1, "ramp_end": 100, "refresh": 2},
            "smarthdr": {"warmup": 1, "patch": 8}}


def run(strategy: str, rank: int) -> dict:
    torch.manual_seed(1 + rank)
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, strategy=strategy, seed=rank, **SETTINGS[strategy])
    ddp = DDP(model)
    plugin = DDP(skt) if any(p.requires_grad for p in skt.parameters()) else skt
    opt = torch.optim.Adam([*ddp.parameters(), *skt.parameters()], 1e-3)
    g = torch.Generator().manual_seed(100 + rank)
    losses = []
    for _ in range(STEPS):
        frames, gt = [torch.rand(2, 6, 32, 32, generator=g) for _ in range(3)], torch.rand(2, 3, 32, 32, generator=g)
        if strategy == "smhdr":
            skt.regions(torch.randint(0, 4, (2, 32, 32), generator=g) + 65536 * rank)
        out = ddp(*frames)
        loss = F.l1_loss(out, gt) + plugin(out, gt)
        if strategy == "smarthdr":
            loss = loss + skt.unlabelled_loss([torch.rand(2, 6, 32, 32, generator=g) for _ in range(3)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(skt.last_losses)
    trained = {k: v for k, v in skt.state_dict().items() if k.startswith("judge.")}
    result = {"orm": model.state_dict(), "trained_plugin": trained, "losses": losses}
    if strategy == "smhdr":
        tables = skt.get_extra_state()
        result["tables"] = {"ids": tables["ids"], "psnr": tables["psnr"]}
    skt.unwrap()
    result["hooks_left"] = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return result


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = {strategy: run(strategy, rank) for strategy in SETTINGS}
    torch.save(results, Path(sys.argv[1]) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
