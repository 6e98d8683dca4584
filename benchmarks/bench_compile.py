"""semkt's parts under ``torch.compile`` against eager, in one process, step by step.

One model and plugin train; before each step the named parts are set to their compiled or their eager form, and
the two sides alternate, so load and the allocator's state hit both alike (runs of ``bench_step.py`` one after
another differ by several per cent on a shared machine). Parts: ``teacher`` (the SPGRM module the step calls) and
``histogram`` (L_color's ``histogram_loss``). The compile warm-up (the first two steps of the compiled side) is
printed apart and not timed with the steps, and so are the graph breaks dynamo met (each reason once, with its
count; its own warnings are silenced). Same set-up as ``bench_step.py``'s full rung.

    python benchmarks/bench_compile.py --part teacher --part histogram
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from bench_step import build, data, step, the_skb
from torch._dynamo.utils import counters

import semkt_plugin.strategies.skt.strategy as skt_strategy

#: the parts that can be compiled, each as where the step looks it up: the plugin's table of callables for the
#: teacher, the strategy module's namespace for the loss (it calls ``histogram_loss`` by that name)
PARTS = {"teacher": lambda skt: (skt.graphed, "teacher"),
         "histogram": lambda skt: (vars(skt_strategy), "histogram_loss")}


def setters(skt, parts: list[str]) -> dict[str, Callable[[], None]]:
    """``{side: set_parts}``: each sets every named part to that side's form, eager or compiled."""
    homes = {part: PARTS[part](skt) for part in parts}
    eager = {part: table[name] for part, (table, name) in homes.items()}
    compiled = {part: torch.compile(form) for part, form in eager.items()}

    def assign(forms: dict) -> None:
        for part, (table, name) in homes.items():
            table[name] = forms[part]

    return {"eager": lambda: assign(eager), "compiled": lambda: assign(compiled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", choices=list(PARTS), required=True,
                        help="a part to compile (repeatable: all named parts are compiled together)")
    parser.add_argument("--setup", default="16:128:2", help="nFeat:size:batch")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per side")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch._logging.set_logs(dynamo=logging.ERROR)
    warnings.filterwarnings("ignore", module=r"torch\._dynamo")
    feat, size, batch = (int(v) for v in args.setup.split(":"))
    device = torch.device(args.device)
    model, skt, opt = build("+ SKAM", feat, the_skb(device), {}, device)
    frames, gt = data(batch, size, device)
    sides = setters(skt, args.part)
    warm_up = {}
    for side, use in sides.items():
        use()
        start = time.perf_counter()
        step(model, opt, frames, gt, skt)
        step(model, opt, frames, gt, skt)
        warm_up[side] = time.perf_counter() - start
    times: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.steps):
        for side, use in sides.items():
            use()
            times[side].append(step(model, opt, frames, gt, skt))
    sides["eager"]()
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"AHDR nFeat={feat}, batch {batch}, {size}x{size}, {where}, {args.steps} steps a side, alternating; "
          f"compiled: {', '.join(args.part)} (torch.compile, default mode)")
    for side, seconds in times.items():
        ms = [1000 * s for s in seconds]
        print(f"  {side:<9} step {min(ms):7.1f} ms fastest, {statistics.median(ms):7.1f} median"
              f"   (first two steps {warm_up[side]:.1f} s)")
    print(f"  compiled / eager: {min(times['compiled']) / min(times['eager']):.2f}x fastest, "
          f"{statistics.median(times['compiled']) / statistics.median(times['eager']):.2f}x median")
    breaks = counters["graph_break"]
    print(f"  graph breaks: {sum(breaks.values())}" + "".join(
        f"\n    {n} x {' '.join(reason.split())[:110]}" for reason, n in breaks.items()))


if __name__ == "__main__":
    main()
