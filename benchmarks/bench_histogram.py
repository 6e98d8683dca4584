"""Histogram loss (forward + backward): semkt's banded series version against the naive per-region loop.

Each measurement runs in a fresh subprocess, so its peak resident memory (ru_maxrss) minus the peak it had
reached before the measurement is that method's extra peak memory (the inputs are built without transient
copies, so that earlier peak is just the inputs). One invocation compares both methods on the same inputs at the
comparison batch (time ratio, loss difference), then measures semkt's extra peak memory at each memory batch.

    python benchmarks/bench_histogram.py                  # B=4 both methods; semkt's memory at B=4 and B=16
    python benchmarks/bench_histogram.py --only fast --memory-batches 16 32
    python benchmarks/bench_histogram.py --threads 1     # on a shared machine whose other cores are busy
    python benchmarks/bench_histogram.py --chunks 4096 8192 16384 32768 --batch 2 --size 128 --regions 17
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def inputs(batch: int, size: int, regions: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.rand(batch, 3, size, size, generator=g, requires_grad=True)
    teacher = torch.rand(batch, 3, size, size, generator=g)
    labels = torch.randint(0, regions, (batch, 1, size, size), generator=g)  # a hard partition, as SKF's argmax
    masks = torch.zeros(batch, regions, size, size).scatter_(1, labels, 1.0)
    return student, teacher, masks


def naive(student, teacher, masks, bins=256, slope=400.0):
    """SKF-style: loop over images, regions and channels; gather the region's pixels with nonzero()."""
    from semkt_plugin.strategies.skt.losses import bin_centers

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


def measure(method: str, batch: int, size: int, regions: int, repeat: int) -> dict:
    from semkt_plugin.strategies.skt.losses import histogram_loss

    student, teacher, masks = inputs(batch, size, regions)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeat):
        student.grad = None
        start = time.perf_counter()
        loss = histogram_loss(student, teacher, masks) if method == "fast" else naive(student, teacher, masks)
        loss.backward()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "batch": batch, "seconds": statistics.median(times), "first": times[0],
            "extra_peak_mb": (peak - base) / 1024, "loss": float(loss),
            "grad_abs_sum": float(student.grad.abs().sum())}


def chunks(args: argparse.Namespace) -> None:
    """semkt's loss at each chunk of ``args.chunks`` and at the default, on the same inputs, calls alternating."""
    from semkt_plugin.strategies.skt.losses import histogram_loss

    student, teacher, masks = inputs(args.batch, args.size, args.regions)
    settings = [None, *args.chunks]
    times: dict[int | None, list[float]] = {c: [] for c in settings}
    for i in range(args.repeat + 1):  # the first round warms up
        for chunk in settings:
            student.grad = None
            start = time.perf_counter()
            histogram_loss(student, teacher, masks, chunk=chunk).backward()
            if i:
                times[chunk].append(time.perf_counter() - start)
    print(f"histogram loss, forward+backward, B={args.batch}, {args.size}x{args.size}, {args.regions} hard regions, "
          f"{torch.get_num_threads()} threads: median of {args.repeat} calls per chunk (pixels per image)")
    for chunk in settings:
        name = "default" if chunk is None else str(chunk)
        print(f"  chunk {name:>8}: {statistics.median(times[chunk]) * 1000:7.1f} ms")


def child(method: str, batch: int, args: argparse.Namespace) -> dict:
    repeat = args.repeat if method == "fast" else 1  # one naive call lasts seconds: timer noise is negligible
    out = subprocess.run([sys.executable, __file__, "--child", method, "--batch", str(batch), "--size",
                          str(args.size), "--regions", str(args.regions), "--repeat", str(repeat),
                          "--threads", str(args.threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="batch of the comparison with the naive loop")
    parser.add_argument("--memory-batches", type=int, nargs="*", default=[4, 16],
                        help="batches at which semkt's extra peak memory is measured")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--regions", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5, help="semkt's calls per measurement (median time)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads (default: torch's); 1 where other jobs hold the other cores")
    parser.add_argument("--only", choices=["fast"], help="skip the naive loop")
    parser.add_argument("--chunks", type=int, nargs="+",
                        help="only time semkt's loss at these chunks (pixels per image) beside the default")
    parser.add_argument("--child", choices=["fast", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.size, args.regions, args.repeat)))
        return
    if args.chunks:
        chunks(args)
        return
    print(f"histogram loss, forward+backward, {args.size}x{args.size}, {args.regions} hard regions, 256 bins, "
          f"{torch.get_num_threads()} threads; semkt: median of {args.repeat} calls (first call in brackets)")
    fast = child("fast", args.batch, args)
    rows = [fast] if args.only else [fast, child("naive", args.batch, args)]
    for r in rows:
        first = f" ({r['first']:.3f} s)" if r["method"] == "fast" else ""
        print(f"  B={r['batch']:<3} {r['method']:6} {r['seconds']:8.3f} s{first:12} extra peak memory "
              f"{r['extra_peak_mb']:7.0f} MB   loss {r['loss']:.8g}   |grad| sum {r['grad_abs_sum']:.6g}")
    if not args.only:
        slow = rows[1]
        print(f"  naive/semkt at B={args.batch}: time x{slow['seconds'] / fast['seconds']:.1f}, "
              f"memory x{slow['extra_peak_mb'] / max(fast['extra_peak_mb'], 1):.1f}; loss difference "
              f"{abs(slow['loss'] - fast['loss']):.2e} (relative {abs(slow['loss'] / fast['loss'] - 1):.1e}), "
              f"|grad| sum relative difference {abs(slow['grad_abs_sum'] / fast['grad_abs_sum'] - 1):.1e}")
    for batch in args.memory_batches:
        r = fast if batch == args.batch else child("fast", batch, args)
        print(f"  semkt extra peak memory at B={batch}: {r['extra_peak_mb']:.0f} MB "
              f"(time {r['seconds']:.3f} s, first call {r['first']:.3f} s)")


if __name__ == "__main__":
    main()
