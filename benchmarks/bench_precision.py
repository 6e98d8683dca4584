"""Training-step time of the wrapped ORM (ORM + semkt) in bf16 autocast and with ``torch.compile``, against fp32 eager.

Three set-ups train side by side in one run, each with its own copy of the example AHDR and its own plugin (the
SKB is shared: it is frozen): fp32 eager, bf16 autocast (ORM, teacher and SKB under ``torch.autocast``; the μ-law
and histograms stay float32), and the ORM compiled with ``torch.compile`` (the plugin stays eager). Steps
alternate between the set-ups so that load on the machine hits all alike; compilation happens in the warm-up steps,
which are not timed. Also prints the graph breaks dynamo finds in the wrapped ORM.

    python benchmarks/bench_precision.py                        # 64x64, batch 2, nFeat 16
    python benchmarks/bench_precision.py --size 128 --backend aot_eager
"""
from __future__ import annotations

import argparse
import statistics

import torch
from bench_step import load_ahdr, step, the_skb

from semkt_plugin import wrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--feat", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation happens here)")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    args = parser.parse_args()

    torch.manual_seed(0)
    frames = [torch.rand(args.batch, 6, args.size, args.size) for _ in range(3)]
    gt = torch.rand(args.batch, 3, args.size, args.size)
    skb = the_skb(torch.device("cpu"))
    setups = {}
    for name in ("fp32 eager", "bf16 autocast", f"compile ({args.backend})"):
        torch.manual_seed(0)
        model = load_ahdr(args.feat)
        call = torch.compile(model, backend=args.backend) if name.startswith("compile") else model
        skt = wrap(call, "ahdr", skb=skb, perceptual="skb", distill_start=0, distill_warmup=0)
        opt = torch.optim.Adam([*model.parameters(), *skt.parameters()], 1e-4)
        setups[name] = (call, skt, opt, torch.bfloat16 if name.startswith("bf16") else None)

    times: dict[str, list[float]] = {name: [] for name in setups}
    compile_time = 0.0
    for i in range(args.warmup + args.steps):
        for name, (call, skt, opt, dtype) in setups.items():
            t = step(call, opt, frames, gt, skt, dtype)
            if i >= args.warmup:
                times[name].append(t)
            elif name.startswith("compile"):
                compile_time += t

    explain_model = load_ahdr(args.feat)
    explain_skt = wrap(explain_model, "ahdr", skb=skb, perceptual="skb", distill_start=0, distill_warmup=0)
    explained = torch._dynamo.explain(explain_model)(*frames)
    explain_skt.unwrap()

    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["fp32 eager"]
    print(f"training step of AHDR nFeat={args.feat} + semkt, batch {args.batch}, {args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} after {args.warmup} warm-up steps")
    for name, t in med.items():
        print(f"  {name:<22} {t * 1000:8.0f} ms   speed vs fp32 eager: {base / t:.2f}x")
    print(f"  warm-up of the compiled set-up (includes compilation): {compile_time:.1f} s")
    print(f"  dynamo on the wrapped ORM: {explained.graph_count} graph(s), {explained.graph_break_count} graph break(s)"
          + "".join(f"\n    break: {r.reason}" for r in explained.break_reasons))


if __name__ == "__main__":
    main()
