"""One rank of ``test_recipes.py::test_training_ddp``: ``torchrun --nproc_per_node=2 recipes_ddp_worker.py OUT``.

Runs the DDP example of docs/training.md as written, on CPUs (Gloo), with the narrow AHDR replica as its
``from model import AHDR`` (examples/ahdr/model.py) and the offline ``wrap``. Each rank seeds its own initial
model weights (saved as ``init``), so equal weights afterwards can only come from DDP. The example saves into the
working directory, which is ``OUT/rank<r>``; what the test compares goes to ``OUT/rank<r>.pt``.
"""
import os
import sys
from pathlib import Path

import torch
from _recipes import AHDR_ARGS, ROOT, TRAINING, TRAINING_BLOCKS, ahdr_pairs, mu_l1, offline_wrap, run, runnable, tiny

import semkt_plugin


def main() -> None:
    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    work = out / f"rank{rank}"
    work.mkdir()
    os.chdir(work)
    sys.path.insert(0, str(ROOT / "examples" / "ahdr"))  # AHDRNet's model.py
    calls: list[dict] = []
    semkt_plugin.wrap = offline_wrap(calls)
    torch.manual_seed(rank)
    init = tiny("ahdr").state_dict()
    torch.manual_seed(rank)  # the example's AHDR(args) draws the same weights: each rank starts elsewhere
    block = runnable(TRAINING, *TRAINING_BLOCKS)["ddp"]
    ns = run(block, {"__name__": "__main__"}, args=AHDR_ARGS, dataset=ahdr_pairs(8, 32), batch_size=2, epochs=2,
             lr=1e-3, their_loss=mu_l1)
    skt = ns["skt"]
    torch.save({"init": init, "model": ns["model"].module.state_dict(), "plugin": skt.state_dict(),
                "last_losses": skt.last_losses, "steps": int(skt.steps), "calls": calls}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
