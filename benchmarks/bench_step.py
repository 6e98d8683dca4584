"""Training-step time of ORM + semkt over the ORM alone, measured side by side in one run.

The ORM is the example AHDR (``examples/ahdr/model.py``) at a small width; the SKB is the offline stand-in if it is
shipped, else a random YOLOv8n-seg of the same cost. Steps alternate between the two set-ups so that load on the
machine hits both alike; the script prints the median step times and their ratio.

    python benchmarks/bench_step.py                      # 128x128, batch 2, nFeat 16
    python benchmarks/bench_step.py --size 256 --feat 64 # upstream AHDR width
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F

from semkt_plugin import wrap
from semkt_plugin.skb import STANDIN, load_skb

ROOT = Path(__file__).resolve().parents[1]


def load_ahdr(feat: int) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("semkt_bench_ahdr_model", ROOT / "examples" / "ahdr" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AHDR(Namespace(nChannel=6, nDenselayer=6, nFeat=feat, growthRate=feat // 2))


def step(model, opt, frames, gt, skt=None, dtype: torch.dtype | None = None) -> float:
    """Seconds of one training step; ``skt`` adds semkt's term, ``dtype`` runs the forward under autocast."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        out = model(*frames)
        loss = F.l1_loss(out, gt) + (skt.loss(out, gt) if skt is not None else 0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--feat", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--perceptual", default="skb", choices=["skb", "none"])
    args = parser.parse_args()

    torch.manual_seed(0)
    frames = [torch.rand(args.batch, 6, args.size, args.size) for _ in range(3)]
    gt = torch.rand(args.batch, 3, args.size, args.size)
    skb = load_skb("standin") if STANDIN.is_file() else load_skb(None, arch="yolov8n-seg.yaml")
    plain, boosted = load_ahdr(args.feat), load_ahdr(args.feat)
    skt = wrap(boosted, "ahdr", skb=skb, perceptual=args.perceptual)
    opt_plain = torch.optim.Adam(plain.parameters(), 1e-4)
    opt_boosted = torch.optim.Adam([*boosted.parameters(), *skt.parameters()], 1e-4)
    times = {"orm": [], "orm+semkt": []}
    for i in range(args.steps + 1):
        t_plain = step(plain, opt_plain, frames, gt)
        t_boosted = step(boosted, opt_boosted, frames, gt, skt)
        if i:  # the first step warms up allocators and thread pools
            times["orm"].append(t_plain)
            times["orm+semkt"].append(t_boosted)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_orm = sum(p.numel() for p in plain.parameters())
    n_plugin = sum(p.numel() for p in skt.parameters())
    print(f"training step, AHDR nFeat={args.feat} ({n_orm / 1e6:.2f} M params), batch {args.batch}, "
          f"{args.size}x{args.size}, {torch.get_num_threads()} threads, median of {args.steps}")
    print(f"  ORM alone      {med['orm'] * 1000:8.0f} ms")
    print(f"  ORM + semkt    {med['orm+semkt'] * 1000:8.0f} ms   (plugin trains {n_plugin / 1e6:.2f} M params, "
          f"SKB {sum(p.numel() for p in skb.parameters()) / 1e6:.2f} M frozen)")
    print(f"  ratio (ORM + semkt) / ORM: {med['orm+semkt'] / med['orm']:.2f}x; inference cost added: 0 "
          "(unwrap() leaves the ORM alone)")


if __name__ == "__main__":
    main()
