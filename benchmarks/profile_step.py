"""Where a semkt training step spends its time: ``torch.profiler`` over a few steps of the example AHDR + semkt.

Prints the operators with the most device time (CUDA time on a GPU, CPU time otherwise), the forward time of
each of semkt's parts (the SKB, the teacher, SKAM, the histogram loss, the SKB's region maps), marked with
``record_function`` from forward hooks, and the host's self time of each part's operators, forward and backward,
convolutions apart from the rest (a backward operator belongs to the part whose forward operator made its node;
the profiler's own cost inflates small operators). Same set-up as ``bench_step.py``'s full rung (every term from
the first step, the offline stand-in SKB, ``perceptual="skb"``).

    python benchmarks/profile_step.py --setup 64:256:8 --config '{"teacher_stride": 2}'
"""
from __future__ import annotations

import argparse
import json

import bench_step
import torch
import torch.nn.functional as F
from bench_step import OFFLINE, data, load_ahdr, the_skb
from torch.profiler import ProfilerActivity, profile, record_function

from semkt_plugin import wrap
from semkt_plugin.strategies.skt import losses

#: the names the step's parts are marked with (each part's ``record_function`` range starts with one)
MARKS = ("semkt.", "orm.", "backward")


def mark(module: torch.nn.Module, name: str) -> None:
    """Mark every forward of ``module`` as ``name`` in the profile."""
    frames: list = []
    module.register_forward_pre_hook(lambda m, a: frames.append(record_function(name).__enter__()) and None)
    module.register_forward_hook(lambda m, a, o: frames.pop().__exit__(None, None, None))


def marked(function, name: str):
    """``function``, marked as ``name`` in the profile."""
    def call(*args, **kwargs):
        with record_function(name):
            return function(*args, **kwargs)
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", default="64:256:8", help="nFeat:size:batch")
    parser.add_argument("--config", default="{}", help="semkt settings as JSON")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after 3 warm-up steps)")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true", help="inputs channels-last, as in bench_step")
    args = parser.parse_args()
    bench_step.CHANNELS_LAST = args.channels_last
    feat, size, batch = (int(v) for v in args.setup.split(":"))
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = load_ahdr(feat).to(device)
    skt = wrap(model, "ahdr", skb=the_skb(device), **{**OFFLINE, **json.loads(args.config)})
    opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-4)
    if skt.config.cuda_graphs and device.type == "cuda":  # replays skip the modules' hooks: mark the calls
        skt.graphed = {name: marked(g, f"semkt.{name}") if g is not None else None for name, g in skt.graphed.items()}
        if skt.skam is not None:
            mark(skt.skam, "semkt.skam")
    else:
        for name in ("teacher", "skam"):
            if getattr(skt, name) is not None:
                mark(getattr(skt, name), f"semkt.{name}")
        for method in ("_trunk", "_regions"):
            setattr(skt.skb, method, marked(getattr(skt.skb, method), f"semkt.skb{method}"))
    import semkt_plugin.strategies.skt.strategy as skt_module
    skt_module.histogram_loss = marked(losses.histogram_loss, "semkt.histogram")
    frames, gt = data(batch, size, device)


    def one_step() -> None:
        with record_function("orm.forward"):
            out = model(*frames)
        loss = F.l1_loss(out, gt) + skt.loss(out, gt)
        opt.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        opt.step()

    for _ in range(3):
        one_step()
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            one_step()
        if cuda:
            torch.cuda.synchronize()
    key = "cuda_time_total" if cuda else "cpu_time_total"
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"AHDR nFeat={feat}, batch {batch}, {size}x{size}, {where}, {args.steps} steps, config {args.config}")
    events = prof.key_averages()
    # on a GPU each mark is listed twice, as the host's range and as the GPU's annotation of it: one line each
    parts: dict[str, list[float]] = {}
    for e in events:
        if e.key.startswith(MARKS):
            device, host = parts.setdefault(e.key, [0.0, 0.0])
            parts[e.key] = [max(device, e.device_time_total if cuda else e.cpu_time_total),
                            max(host, e.cpu_time_total)]
    print("parts (time of each part's forward per step: on the device, and on the host launching it):")
    for name, (device, host) in parts.items():
        print(f"  {name:<18} {device / 1000 / args.steps:8.1f} ms  (host {host / 1000 / args.steps:.1f} ms)")
    print(events.table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    print("host self time per step by part (convolutions / the rest), forward and backward:")
    for part, (forward, backward) in self_time_by_part(prof.events()).items():
        print(f"  {part:<18} forward {forward[0] / 1000 / args.steps:6.1f} / {forward[1] / 1000 / args.steps:5.1f} ms"
              f"   backward {backward[0] / 1000 / args.steps:6.1f} / {backward[1] / 1000 / args.steps:5.1f} ms")


def self_time_by_part(events) -> dict[str, list[list[float]]]:
    """``{part: [[forward conv, forward other], [backward conv, backward other]]}``, self CPU µs, parts being the
    marks above; unmarked host work (the optimiser's update, the loss terms' own operators) is ``other``."""
    def mark(e) -> str:
        while e is not None and not e.name.startswith(MARKS):
            e = e.cpu_parent
        return "other" if e is None else e.name

    def node(e):  # the autograd node a backward operator runs in
        while e is not None and not e.name.startswith("autograd::engine::evaluate_function"):
            e = e.cpu_parent
        return e

    marks = [mark(e) for e in events]
    made = {}  # autograd sequence number → the part whose forward operator made the node
    for e, part in zip(events, marks):
        if e.sequence_nr >= 0 and part != "backward":
            made.setdefault(e.sequence_nr, part)
    times: dict[str, list[list[float]]] = {}
    for e, part in zip(events, marks):
        if e.name.startswith((*MARKS, "autograd::engine")):
            continue
        direction = 0
        if part == "backward":
            n = node(e)
            part, direction = (made.get(n.sequence_nr, "other") if n is not None else "other"), 1
        times.setdefault(part, [[0.0, 0.0], [0.0, 0.0]])[direction]["convolution" not in e.name] += (
            e.self_cpu_time_total)
    return dict(sorted(times.items()))


if __name__ == "__main__":
    main()
