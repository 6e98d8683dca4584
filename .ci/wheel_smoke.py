"""Run by .ci/check_wheel with the new virtual environment's Python, outside the checkout: the installed package
imports, carries its data, and trains the example AHDR a few steps under each strategy."""
from __future__ import annotations

import importlib.metadata
import sys
from argparse import Namespace
from pathlib import Path

import torch

import semkt_plugin
from semkt_plugin import wrap
from semkt_plugin.example_ahdr.model import AHDR

here = Path(semkt_plugin.__file__).resolve().parent
if Path(sys.prefix).resolve() not in here.parents:
    sys.exit(f"semkt_plugin was imported from {here}, not from the virtual environment {sys.prefix}")
if importlib.metadata.version("semkt") != semkt_plugin.__version__:
    sys.exit(f"the wheel's version {importlib.metadata.version('semkt')} is not semkt_plugin.__version__ "
             f"{semkt_plugin.__version__}")
for data in ("py.typed", "assets/skb_standin.pt", "assets/real/README.md"):
    if not (here / data).is_file():
        sys.exit(f"the wheel lacks semkt_plugin/{data}")


def batch(seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 6, 32, 32, generator=g) for _ in range(3)], torch.rand(2, 3, 32, 32, generator=g)


SETTINGS = {
    "skt": dict(skb_weights="standin", perceptual="skb", distill_start=0.5),
    "smhdr": dict(ramp_start=0, ramp_peak=1, ramp_end=2),
    "smarthdr": dict(warmup=1, ema=0.0),
}
for strategy, settings in SETTINGS.items():
    torch.manual_seed(0)
    model = AHDR(Namespace(nChannel=6, nDenselayer=1, nFeat=8, growthRate=4))
    skt = wrap(model, "ahdr", strategy=strategy, total_steps=2, **settings)
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-4)
    for step in range(2):
        frames, gt = batch(step)
        if strategy == "smhdr":
            skt.regions(torch.randint(0, 4, (2, 32, 32)))
        out = model(*frames)
        loss = torch.nn.functional.l1_loss(out, gt) + skt.loss(out, gt)
        if strategy == "smarthdr":
            loss = loss + skt.unlabelled_loss(batch(10 + step)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"{strategy}: 2 steps, last losses " + ", ".join(f"{k} {v:.4g}" for k, v in skt.last_losses.items()))
    assert skt.unwrap() is model and not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
print(f"semkt {semkt_plugin.__version__} from {here}: imports, data files and three strategies ok")
