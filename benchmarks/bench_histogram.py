"""Histogram loss (forward + backward): semkt's vectorised, chunked version against the naive per-region loop.

Each measurement runs in a fresh subprocess, so its peak resident memory (ru_maxrss) minus the memory it had
before the measurement is that method's extra peak memory. Both methods run in this one invocation, on the same
inputs, and the script prints their ratios.

    python benchmarks/bench_histogram.py                 # B=4, 256x256, 32 regions, 256 bins: both methods
    python benchmarks/bench_histogram.py --only fast --batch 16   # the issue's memory bound, ours only
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def inputs(batch: int, size: int, regions: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.rand(batch, 3, size, size, generator=g, requires_grad=True)
    teacher = torch.rand(batch, 3, size, size, generator=g)
    labels = torch.randint(0, regions, (batch, size, size), generator=g)  # a hard partition, as SKF's argmax
    masks = torch.nn.functional.one_hot(labels, regions).permute(0, 3, 1, 2).float()
    return student, teacher, masks


def naive(student, teacher, masks, bins=256, slope=400.0):
    """SKF-style: loop over images, regions and channels; gather the region's pixels with nonzero()."""
    from semkt_plugin.losses import bin_centers

    centers = bin_centers(bins)
    width = 1.0 / bins
    total = 0.0
    for b in range(student.shape[0]):
        per_region = []
        for n in range(masks.shape[1]):
            idx = masks[b, n].flatten().nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            loss = 0.0
            for c in range(student.shape[1]):
                hists = []
                for x in (student[b, c].flatten()[idx], teacher[b, c].flatten()[idx]):
                    d = x[:, None] - centers
                    k = torch.sigmoid(slope * (d + width / 2)) - torch.sigmoid(slope * (d - width / 2))
                    hists.append(k.sum(0) / idx.numel())
                loss = loss + (hists[0] - hists[1].detach()).pow(2).mean()
            per_region.append(loss / student.shape[1])
        total = total + sum(per_region) / len(per_region)
    return total / student.shape[0]


def measure(method: str, batch: int, size: int, regions: int) -> dict:
    from semkt_plugin.losses import histogram_loss

    student, teacher, masks = inputs(batch, size, regions)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loss = histogram_loss(student, teacher, masks) if method == "fast" else naive(student, teacher, masks)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "seconds": seconds, "extra_peak_mb": (peak - base) / 1024, "loss": float(loss),
            "grad_abs_sum": float(student.grad.abs().sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--regions", type=int, default=32)
    parser.add_argument("--only", choices=["fast", "naive"])
    parser.add_argument("--child", choices=["fast", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.size, args.regions)))
        return
    results = {}
    for method in [args.only] if args.only else ["fast", "naive"]:
        out = subprocess.run([sys.executable, __file__, "--child", method, "--batch", str(args.batch),
                              "--size", str(args.size), "--regions", str(args.regions)],
                             capture_output=True, text=True, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"histogram loss, forward+backward, B={args.batch}, {args.size}x{args.size}, {args.regions} regions, "
          f"256 bins, {torch.get_num_threads()} threads")
    for r in results.values():
        print(f"  {r['method']:6} {r['seconds']:8.2f} s   extra peak memory {r['extra_peak_mb']:8.0f} MB   "
              f"loss {r['loss']:.6g}")
    if len(results) == 2:
        fast, slow = results["fast"], results["naive"]
        print(f"  naive/fast: time x{slow['seconds'] / fast['seconds']:.1f}, "
              f"memory x{slow['extra_peak_mb'] / max(fast['extra_peak_mb'], 1):.1f}; "
              f"loss difference {abs(slow['loss'] - fast['loss']):.2e}")


if __name__ == "__main__":
    main()
