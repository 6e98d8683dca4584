"""A change to semkt's code against the code at an earlier revision, in one process, step by step.

Runs after one another (``bench_step.py`` before and after a change) differ by several per cent on a shared
machine, more than a rewrite of one part saves. Here one model and plugin train, and before each step the named
functions or methods are set to either side: the working tree's, or those the module had at ``--rev`` (read with
``git show``, run in the module's package so its relative imports resolve). The sides alternate, so load, the
allocator's state and the data hit both alike. Each step is timed as a whole and, in the next step of the same
side, operator by operator (a ``TorchDispatchMode`` times every operator the step dispatches, forward, backward and
update): the time in operators that are not convolutions is the work a rewrite of the non-convolution parts can
change, with the convolutions' noise left out. Printed per side: fastest and median of each, and the operators
whose fastest total moved most. Only what is named is swapped: its module's other names stay the working tree's.

    python benchmarks/ab_step.py --rev 52b05a9 \\
        --swap semkt_plugin/strategies/skt/teacher.py:LayerNorm2d.forward,PriorFusionBlock.forward
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import time
import types
from collections import defaultdict

import torch
from bench_step import ROOT, build, data, step, the_skb
from torch.utils._python_dispatch import TorchDispatchMode


class OperatorTimes(TorchDispatchMode):
    """Seconds spent in each operator dispatched inside it (the host's: on the CPU, the work itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[func.overloadpacket.__name__] += time.perf_counter() - start
        return out


def old_module(path: str, rev: str) -> types.ModuleType:
    """The module at ``path`` (a file in the repository) as it was at ``rev``, in its package."""
    name = path.removesuffix(".py").replace("/", ".")
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    module = types.ModuleType(f"{name}_at_{rev}")
    module.__package__ = name.rpartition(".")[0]
    exec(compile(source, f"{path}@{rev}", "exec"), module.__dict__)
    return module


def sides(swaps: list[str], rev: str) -> dict[str, list[tuple[object, str, object]]]:
    """``{"before": [(owner, attribute, value)], "after": [...]}`` for each ``path:Name.attr,...`` in ``swaps``."""
    out: dict[str, list] = {"before": [], "after": []}
    for swap in swaps:
        path, names = swap.split(":")
        new, old = importlib.import_module(path.removesuffix(".py").replace("/", ".")), old_module(path, rev)
        for dotted in names.split(","):
            *owner, attribute = dotted.split(".")
            holders = [new, old]
            for part in owner:
                holders = [getattr(h, part) for h in holders]
            out["after"].append((holders[0], attribute, holders[0].__dict__[attribute]))
            out["before"].append((holders[0], attribute, holders[1].__dict__[attribute]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", required=True, help="the revision whose code is 'before'")
    parser.add_argument("--swap", action="append", required=True,
                        help="path/to/module.py:Name.attr,Other — what is set to either side's")
    parser.add_argument("--setup", default="16:128:2", help="nFeat:size:batch")
    parser.add_argument("--steps", type=int, default=16, help="timed and counted steps per side")
    parser.add_argument("--rows", type=int, default=12, help="operators listed")
    args = parser.parse_args()
    feat, size, batch = (int(v) for v in args.setup.split(":"))
    device = torch.device("cpu")
    model, skt, opt = build("+ SKAM", feat, the_skb(device), {}, device)
    frames, gt = data(batch, size, device)
    versions = sides(args.swap, args.rev)
    wall: dict[str, list[float]] = {side: [] for side in versions}
    other: dict[str, list[float]] = {side: [] for side in versions}
    fastest: dict[str, dict[str, float]] = {side: {} for side in versions}
    for i in range(args.steps + 1):
        for side, values in versions.items():
            for owner, attribute, value in values:
                setattr(owner, attribute, value)
            seconds = step(model, opt, frames, gt, skt)
            if not i:
                continue  # warm-up
            wall[side].append(seconds)
            with OperatorTimes() as timed:
                step(model, opt, frames, gt, skt)
            other[side].append(sum(s for op, s in timed.seconds.items() if "convolution" not in op))
            for op, s in timed.seconds.items():
                fastest[side][op] = min(fastest[side].get(op, float("inf")), s)
    print(f"AHDR nFeat={feat}, batch {batch}, {size}x{size}, CPU, {torch.get_num_threads()} threads, {args.steps} "
          f"steps a side, alternating; before: {args.rev}, after: the working tree ({'; '.join(args.swap)})")
    for side in versions:
        ms = [1000 * s for s in wall[side]], [1000 * s for s in other[side]]
        print(f"  {side:<6}  step {min(ms[0]):6.1f} ms fastest, {statistics.median(ms[0]):6.1f} median;  operators "
              f"that are not convolutions {min(ms[1]):6.1f} fastest, {statistics.median(ms[1]):6.1f} median")
    ops = sorted(set(fastest["before"]) | set(fastest["after"]),
                 key=lambda op: -abs(fastest["after"].get(op, 0) - fastest["before"].get(op, 0)))
    print("  operators whose fastest total per step moved most (ms, before → after):")
    for op in ops[:args.rows]:
        print(f"    {op:<32} {1000 * fastest['before'].get(op, 0):7.2f} → {1000 * fastest['after'].get(op, 0):7.2f}")


if __name__ == "__main__":
    main()
