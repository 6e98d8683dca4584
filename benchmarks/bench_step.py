"""Training-step time and peak memory of ORM + semkt over the ORM alone, and what each part of semkt adds.

The ORM is the example AHDR (``examples/ahdr/model.py``); the SKB is the offline stand-in if it is shipped, else a
random YOLOv8n-seg of the same cost; ``perceptual="skb"`` (VGG19 cannot be downloaded offline) and every
distillation term active from the first step (``distill_start=0``: the steady state of the second half of a
``semkt verdict`` run; before the distillation starts a step costs less, see docs/training.md).

Parts are measured as a ladder, each rung its own model copy and plugin, all trained side by side: the ORM alone;
+ the teacher (SPGRM without priors, L_spg only); + the SKB's priors; + L_content; + L_color; + SKAM (= semkt as
configured). A part's share is what its rung adds over the rung below, over what the whole of semkt adds. Steps
alternate between the rungs so that load on the machine hits all alike, and each rung's fastest step is
printed: other work on the machine only ever adds time (medians of a few steps swung by ±40 % on a shared 2-core
machine, minima by a few per cent).

The floor: every convolution semkt's step runs (teacher, SKAM, the frozen SKB's passes), recorded from one step of
the full rung (run eagerly) and replayed alone on inputs of the same shapes and layouts: forward, and backward
wherever the step's graph had one (weight gradients only for trainable weights), each part's fastest replay; on a
GPU each part's replay is one CUDA graph, so that the floor holds the GPU's time and no launch overhead. With the
convolution kernels PyTorch has on the machine, no rewrite that keeps semkt's computation makes its step cheaper
than the ORM's plus this floor; the line gives the ratio such a rewrite could at best reach.

``--variant`` measures other settings side by side, such as the CUDA graphs a GPU can replay the plugin's parts
from (``--variant 'graphs={"cuda_graphs": true}'``; off by default).

Operators: how many operators the forward and backward of one step of the ORM and of ORM + semkt dispatch, views
and allocations aside (a ``TorchDispatchMode`` that counts them; the optimiser's update is left out, its count
depends on the optimiser). Each launches at least one kernel from the host on a GPU, where a step that launches
many small ones is bound by the host, not by the GPU; the count has no noise, so it shows a change in launches on
any machine (CUDA graph replays launch their parts without dispatching them).

Page faults (CPU): the median of each rung's minor page faults a step. glibc's allocator gives the top of its heap
back to the system once enough of it is free, and the next step that grows the heap again has each page zeroed by
the system on first touch: time that is neither semkt's computation nor the ORM's, and that depends on the
allocator's settings (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, or another allocator preloaded).

Peak memory: on CUDA ``max_memory_allocated`` of a step above what was allocated before it; on CPU the ORM and
ORM + semkt each run a few steps in a fresh subprocess that samples its resident memory every millisecond and
reports the peak above what it held before the first step.

Strategies (``--strategies``): one step of each strategy against the ORM's, side by side as the rungs are:
SMHDR while its curriculum masks (region maps given), SmartHDR in its semi-supervised phase (a labelled batch and
an unlabelled batch of the same size per step: the teacher's forward, a second forward and backward of the model).

    python benchmarks/bench_step.py                                   # the README's two set-ups
    python benchmarks/bench_step.py --setup 16:128:2 --config '{"teacher_stride": 2}'
    python benchmarks/bench_step.py --strategies                      # the three strategies' step cost
    python benchmarks/bench_step.py --variant 'graphs={"cuda_graphs": true}' --variant 'slim={"teacher_stride": 2}'
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from semkt_plugin import wrap
from semkt_plugin.skb import STANDIN, load_skb

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"perceptual": "skb", "distill_start": 0, "distill_warmup": 0}
OFF = {"use_priors": False, "lambda_content": 0.0, "lambda_color": 0.0, "use_skam": False}
LADDER = {  # rung: SKTConfig changes on top of OFFLINE and --config; None is the ORM alone (λ's back to the defaults)
    "ORM": None,
    "+ teacher": OFF,
    "+ SKB priors": {**OFF, "use_priors": True},
    "+ L_content": {**OFF, "use_priors": True, "lambda_content": 0.1},
    "+ L_color": {**OFF, "use_priors": True, "lambda_content": 0.1, "lambda_color": 100.0},
    "+ SKAM": {},
}
SETUPS = ("16:128:2", "64:128:4")  # nFeat:size:batch, the two set-ups


def load_ahdr(feat: int) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("semkt_bench_ahdr_model", ROOT / "examples" / "ahdr" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AHDR(Namespace(nChannel=6, nDenselayer=6, nFeat=feat, growthRate=feat // 2))


def timed_step(opt, compute_loss, cuda: bool) -> float:
    """Seconds of one optimiser step on ``compute_loss()``, forward to update (synchronised on CUDA)."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = compute_loss()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def training_loss(model, frames, gt, skt=None) -> torch.Tensor:
    """The model's L1 on a batch, plus semkt's term if ``skt``."""
    out = model(*frames)
    return F.l1_loss(out, gt) + (skt.loss(out, gt) if skt is not None else 0)


def step(model, opt, frames, gt, skt=None, dtype: torch.dtype | None = None) -> float:
    """Seconds of one training step; ``skt`` adds semkt's term, ``dtype`` runs the forward under autocast."""
    def compute_loss():
        with torch.autocast(gt.device.type, dtype=dtype, enabled=dtype is not None):
            return training_loss(model, frames, gt, skt)

    return timed_step(opt, compute_loss, gt.is_cuda)


def build(rung: str, feat: int, skb, config: dict, device: torch.device):
    """A fresh AHDR (same init for every rung), its plugin for ``rung`` (``None`` for the ORM) and an optimiser."""
    torch.manual_seed(0)
    model = load_ahdr(feat).to(device)
    changes = LADDER[rung]
    skt = None if changes is None else wrap(model, "ahdr", skb=skb, **{**OFFLINE, **config, **changes})
    params = [*model.parameters(), *(skt.parameters() if skt is not None else [])]
    return model, skt, torch.optim.Adam(params, 1e-4)


STRATEGIES = {  # row: (strategy, settings) as measured; None is the ORM alone
    "ORM": None,
    "+ semkt (skt)": ("skt", OFFLINE),
    "+ SMHDR": ("smhdr", {"ramp_start": 0, "ramp_peak": 1, "ramp_end": 10**9}),  # masking at its peak ratio
    "+ SmartHDR": ("smarthdr", {"warmup": 0}),  # semi-supervised from the first step
}


def strategy_step(model, opt, frames, gt, regions, skt=None) -> float:
    """Seconds of one training step of ``skt``'s strategy (the ORM's own when ``None``), loops as in the README."""
    def compute_loss():
        if skt is not None and skt.name == "smhdr":
            skt.regions(regions)
        out = model(*frames)
        loss = F.l1_loss(out, gt)
        if skt is not None:
            loss = loss + skt.loss(out, gt)
            if skt.name == "smarthdr":
                loss = loss + skt.unlabelled_loss([f.flip(-1) for f in frames])  # another batch, same size
        return loss

    return timed_step(opt, compute_loss, gt.is_cuda)


def run_strategies(feat: int, size: int, batch: int, steps: int, device: torch.device, skb) -> None:
    frames, gt = data(batch, size, device)
    # blocks of 16 px as regions, different per sample: the mask draw and the per-region tables have work to do
    blocks = torch.arange((size // 16) ** 2, device=device).view(1, size // 16, size // 16)
    regions = (blocks + 1000 * torch.arange(batch, device=device).view(-1, 1, 1)).repeat_interleave(16, 1)
    regions = regions.repeat_interleave(16, 2)
    rows = {}
    for row, spec in STRATEGIES.items():
        torch.manual_seed(0)
        model = load_ahdr(feat).to(device)
        skt = None if spec is None else wrap(model, "ahdr", skb=skb if spec[0] == "skt" else None, strategy=spec[0],
                                             **spec[1])
        params = [*model.parameters(), *(skt.parameters() if skt is not None else [])]
        rows[row] = (model, skt, torch.optim.Adam(params, 1e-4))
    times: dict[str, list[float]] = {row: [] for row in rows}
    for i in range(steps + 1):
        for row, (model, skt, opt) in rows.items():
            t = strategy_step(model, opt, frames, gt, regions, skt)
            if i:
                times[row].append(t)
    best = {row: min(v) for row, v in times.items()}
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nstrategies: AHDR nFeat={feat}, batch {batch}, {size}x{size}, {where}, fastest of {steps} steps")
    for row, t in best.items():
        print(f"  {row:<16} {t * 1000:7.0f} ms  {t / best['ORM']:5.2f}x the ORM's step")


def side_by_side(rows: dict, frames, gt, steps: int, between=None
                 ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Each row's fastest of ``steps`` training steps, after one untimed step (it warms up allocators, thread pools
    and captures), the rows' steps alternating so that load on the machine hits all alike; on CUDA also each
    row's peak memory in MB above what was allocated before its step (``{}`` elsewhere), on the CPU the median
    of each row's minor page faults a step (``{}`` elsewhere). ``between()`` runs before each timed round."""
    times: dict[str, list[float]] = {row: [] for row in rows}
    faults: dict[str, list[int]] = {row: [] for row in rows}
    peaks: dict[str, float] = {}
    cuda = gt.is_cuda
    for i in range(steps + 1):
        if i and between is not None:
            between()
        for row, (model, skt, opt) in rows.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                held = torch.cuda.memory_allocated()
            faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = step(model, opt, frames, gt, skt)
            if cuda:
                peaks[row] = max(peaks.get(row, 0.0), (torch.cuda.max_memory_allocated() - held) / 2**20)
            if i:
                times[row].append(t)
                faults[row].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted)
    paged = {} if cuda else {row: statistics.median(v) for row, v in faults.items()}
    return {row: min(v) for row, v in times.items()}, peaks, paged


def run_variants(feat: int, size: int, batch: int, steps: int, config: dict, device: torch.device, skb,
                 variants: dict[str, dict]) -> None:
    """ORM alone and ORM + semkt under each of ``variants`` (settings on top of ``config``), side by side."""
    frames, gt = data(batch, size, device)
    rows = {"ORM": build("ORM", feat, skb, config, device),
            "+ semkt": build("+ SKAM", feat, skb, config, device),
            **{f"+ semkt, {name}": build("+ SKAM", feat, skb, {**config, **changes}, device)
               for name, changes in variants.items()}}
    best, peaks, _ = side_by_side(rows, frames, gt, steps)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nvariants: AHDR nFeat={feat}, batch {batch}, {size}x{size}, {where}, fastest of {steps} steps"
          + (f"; config {json.dumps(config)}" if config else ""))
    for row, t in best.items():
        changes = variants.get(row.removeprefix("+ semkt, "), {}) if row.startswith("+ semkt, ") else {}
        memory = f", peak memory {peaks[row] / max(peaks['ORM'], 1):.2f}x" if peaks else ""
        print(f"  {row:<28} {t * 1000:7.1f} ms  {t / best['ORM']:5.2f}x the ORM's step{memory}"
              + (f"   {json.dumps(changes)}" if changes else ""))


class ConvFloor:
    """The convolutions of one semkt step, recorded by forward hooks and replayed alone (see the module docstring).

    Each call keeps its own copy of the layer (so the replay's gradients reach no trained weight), an input of the
    recorded shape and memory layout (a convolution runs at another speed in another layout), and whether grad mode
    was on and the input required a gradient: the replay runs forward and, where the step's graph reached the
    layer, backward into the input and the trainable weights it had. The backward returns those gradients
    (``torch.autograd.grad``) from an output gradient made once: adding them to ``.grad`` from the replay before, or
    filling a fresh output gradient each time, would time element-wise work as if it were the convolutions'
    (docs/benchmarks.md, "The floor corrected").
    """

    parts = {"teacher": "teacher", "SKAM": "skam", "SKB": "skb"}  # printed name: the plugin's attribute

    def __init__(self, skt, run_step) -> None:
        recorded: dict[str, list] = {name: [] for name in self.parts}
        handles = []
        for name, attribute in self.parts.items():
            part = getattr(skt, attribute)
            for m in part.modules() if part is not None else ():
                if isinstance(m, torch.nn.Conv2d):
                    handles.append(m.register_forward_hook(
                        lambda conv, inputs, output, calls=recorded[name]: calls.append(
                            (conv, inputs[0].shape, inputs[0].stride(), torch.is_grad_enabled(),
                             inputs[0].requires_grad, output.requires_grad))))
        graphed = graphs_of(skt)
        enabled = [g.enabled for g in graphed]
        for g in graphed:  # a capture runs each layer several times: record the eager step
            g.enabled = False
        try:
            run_step()
        finally:
            for h in handles:
                h.remove()
            for g, on in zip(graphed, enabled):
                g.enabled = on
        copies: dict[int, torch.nn.Module] = {}
        self.calls: dict[str, list] = {}
        for name, calls in recorded.items():
            self.calls[name] = []
            for conv, shape, stride, grad, needs_input, graph in calls:
                if id(conv) not in copies:
                    copies[id(conv)] = copy.deepcopy(conv)
                layer = copies[id(conv)]
                x = torch.empty_strided(shape, stride, device=conv.weight.device).normal_().requires_grad_(needs_input)
                wrt = [t for t in (x, *layer.parameters()) if t.requires_grad] if graph else []
                with torch.no_grad():
                    dy = torch.ones_like(layer(x)) if graph else None
                self.calls[name].append((layer, x, grad, wrt, dy))
        self.cuda = next(iter(copies.values())).weight.is_cuda
        self.count = sum(len(c) for c in self.calls.values())
        self.replay = {name: (lambda calls=calls: self._run(calls)) for name, calls in self.calls.items()}
        if self.cuda:  # one graph per part: the GPU's time for its convolutions, without their launches
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            for name, calls in self.calls.items():
                with torch.cuda.stream(stream):
                    self._run(calls)  # warm-up: cuDNN's choices and the gradients' buffers
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream):
                    self._run(calls)
                self.replay[name] = graph.replay
            torch.cuda.current_stream().wait_stream(stream)

    @staticmethod
    def _run(calls) -> None:
        for layer, x, grad, wrt, dy in calls:
            with torch.set_grad_enabled(grad):
                y = layer(x)
            if wrt:
                torch.autograd.grad(y, wrt, dy)

    def step(self) -> dict[str, float]:
        """Seconds of each part's recorded convolutions, forward then backward (as one graph on a GPU)."""
        seconds = {}
        for name, replay in self.replay.items():
            if self.cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            replay()
            if self.cuda:
                torch.cuda.synchronize()
            seconds[name] = time.perf_counter() - start
        return seconds


class OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched inside it, views and allocations aside: the kernels a GPU launches."""

    FREE = {"empty", "empty_strided", "new_empty", "new_empty_strided", "lift_fresh"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket.__name__ not in self.FREE:
            self.count += 1
        return func(*args, **(kwargs or {}))


def operators(model, frames, gt, skt=None) -> int:
    """Operators one training step's forward and backward dispatch (:class:`OperatorCount`), the gradients set to
    ``None`` before, as a training loop's ``zero_grad()`` leaves them; the optimiser's update aside (its count
    depends on the optimiser: one per tensor, or a few for all of them)."""
    modules = [model] if skt is None else [model, skt]
    for module in modules:
        module.zero_grad(set_to_none=True)
    with OperatorCount() as counted:
        training_loss(model, frames, gt, skt).backward()
    return counted.count


def graphs_of(skt) -> list:
    """The plugin's CUDA-graphed parts (:class:`semkt_plugin.cuda_graphs.CudaGraphed`)."""
    parts = [g for g in skt.graphed.values() if g is not None]
    return list({id(g): g for g in parts + (skt.skam.graphed if skt.skam is not None else [])}.values())


CHANNELS_LAST = False  # --channels-last: the inputs, and so the ORM's maps and H_in, in that layout


def data(batch: int, size: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    layout = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
    frames = [torch.rand(batch, 6, size, size, generator=g).to(device, memory_format=layout) for _ in range(3)]
    return frames, torch.rand(batch, 3, size, size, generator=g).to(device, memory_format=layout)


def the_skb(device: torch.device):
    return (load_skb("standin") if STANDIN.is_file() else load_skb(None, arch="yolov8n-seg.yaml")).to(device)


class PeakRSS:
    """Peak resident memory above the entry's, sampled every millisecond by a thread (torch releases the GIL)."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def cpu_peak(rung: str, feat: int, size: int, batch: int, config: dict, steps: int = 3) -> float:
    """MB of resident memory one rung's training steps need above what was held before them (fresh process)."""
    out = subprocess.run([sys.executable, __file__, "--child", rung, "--setup", f"{feat}:{size}:{batch}",
                          "--config", json.dumps(config), "--steps", str(steps)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def child(rung: str, feat: int, size: int, batch: int, config: dict, steps: int) -> None:
    torch.set_flush_denormal(True)
    device = torch.device("cpu")
    skb = the_skb(device)
    model, skt, opt = build(rung, feat, skb, config, device)
    frames, gt = data(batch, size, device)
    with PeakRSS() as peak:  # from the first step: the allocator keeps what a step freed, so later steps add little
        for _ in range(steps):
            step(model, opt, frames, gt, skt)
    print(peak.mb)


def run_setup(feat: int, size: int, batch: int, steps: int, config: dict, device: torch.device, skb) -> None:
    frames, gt = data(batch, size, device)
    rungs = {rung: build(rung, feat, skb, config, device) for rung in LADDER}
    model, skt, opt = rungs["+ SKAM"]
    # recorded from a step of the full rung itself: one more untimed step for it, and no fifth plugin to build
    floor = ConvFloor(skt, lambda: step(model, opt, frames, gt, skt))
    floors: list[dict[str, float]] = []
    med, peaks, paged = side_by_side(rungs, frames, gt, steps, between=lambda: floors.append(floor.step()))
    if device.type != "cuda":
        peaks = {rung: cpu_peak(rung, feat, size, batch, config) for rung in ("ORM", "+ SKAM")}
    orm, full = med["ORM"], med["+ SKAM"]
    added = full - orm
    n_orm = sum(p.numel() for p in rungs["ORM"][0].parameters())
    n_plugin = sum(p.numel() for p in rungs["+ SKAM"][1].parameters())
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    where += ", channels-last" if CHANNELS_LAST else ""
    print(f"\nAHDR nFeat={feat} ({n_orm / 1e6:.2f} M params), batch {batch}, {size}x{size}, {where}, "
          f"fastest of {steps} steps; plugin trains {n_plugin / 1e6:.2f} M params"
          + (f"; config {json.dumps(config)}" if config else ""))
    print(f"  {'rung':<14} {'step':>9} {'adds':>9} {'share of added':>15}")
    below = None
    for rung, t in med.items():
        adds = "" if below is None else f"{(t - below) * 1000:7.0f} ms"
        share = "" if below is None else f"{(t - below) / added * 100:13.0f} %"
        print(f"  {rung:<14} {t * 1000:6.0f} ms {adds:>9} {share:>15}")
        below = t
    print(f"  step ratio (ORM + semkt) / ORM: {full / orm:.2f}x")
    fastest = {name: min(f[name] for f in floors) for name in floor.calls}
    least = sum(fastest.values())
    print(f"  floor: semkt's {floor.count} convolution calls alone take {least * 1000:.0f} ms ("
          + ", ".join(f"{name} {t * 1000:.0f}" for name, t in fastest.items())
          + f"; {least / added * 100:.0f} % of what it adds): a rewrite that keeps the computation reaches at best "
          f"{(orm + least) / orm:.2f}x; the step takes {full / (orm + least):.2f}x that")
    ops = {rung: operators(rungs[rung][0], frames, gt, rungs[rung][1]) for rung in ("ORM", "+ SKAM")}
    print(f"  operators a step's forward and backward dispatch (views aside; each launches kernels on a GPU): ORM "
          f"{ops['ORM']}, ORM + semkt {ops['+ SKAM']} (semkt adds {ops['+ SKAM'] - ops['ORM']})")
    if paged:
        print(f"  minor page faults a step (memory the allocator gave back to the system and takes again, zeroed "
              f"on first touch; median): ORM {paged['ORM']:.0f}, ORM + semkt {paged['+ SKAM']:.0f}")
    print(f"  peak memory of a step: ORM {peaks['ORM']:.0f} MB, ORM + semkt {peaks['+ SKAM']:.0f} MB "
          f"({peaks['+ SKAM'] / max(peaks['ORM'], 1):.2f}x); inference cost added: 0 (unwrap() leaves the ORM alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="append", help="nFeat:size:batch (repeatable; default: both of "
                        f"{', '.join(SETUPS)})")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--config", default="{}", help="semkt SKTConfig changes as JSON, for every rung")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--strategies", action="store_true", help="the step of each strategy instead of the ladder")
    parser.add_argument("--channels-last", action="store_true",
                        help="inputs channels-last, so the ORM (and what semkt computes from H_in) runs in that layout")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="instead of the ladder: ORM + semkt with these settings changed, beside the ORM and the "
                        "default (repeatable)")
    parser.add_argument("--child", choices=list(LADDER), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CHANNELS_LAST
    CHANNELS_LAST = args.channels_last
    config = json.loads(args.config)
    setups = [tuple(int(v) for v in s.split(":")) for s in (args.setup or SETUPS)]
    if args.child:
        child(args.child, *setups[0], config, args.steps)
        return
    # six copies of the ORM train apart on random data; on CPU, whichever wanders into denormal values first would
    # run several times slower for reasons that have nothing to do with semkt
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    skb = the_skb(device)
    for feat, size, batch in setups:
        if args.strategies:
            run_strategies(feat, size, batch, args.steps, device, skb)
        elif args.variant:
            variants = {v.split("=", 1)[0]: json.loads(v.split("=", 1)[1]) for v in args.variant}
            run_variants(feat, size, batch, args.steps, config, device, skb, variants)
        else:
            run_setup(feat, size, batch, args.steps, config, device, skb)


if __name__ == "__main__":
    main()
