"""Train AHDRNet on Kalantari-layout data: L1 on μ-law tone-mapped HDR (μ = 5000), Adam, as upstream.

    python train.py --data_dir data/kalantari --steps 2000            # baseline
    python train.py --data_dir data/kalantari --steps 2000 --semkt    # + Semantic Knowledge Transfer
    python train.py --data_dir data/kalantari --steps 2000 --semkt --strategy smhdr      # + SMHDR masking
    python train.py --data_dir data/kalantari --steps 2000 --labelled_fraction 0.25     # a quarter labelled
    python train.py --data_dir data/kalantari --steps 2000 --labelled_fraction 0.25 --semkt --strategy smarthdr
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from dataset import training_set
from model import AHDR
from torch.nn import init
from torch.optim import Adam
from torch.utils.data import DataLoader, Subset, SubsetRandomSampler
from tqdm import tqdm

MU = 5000.0


def range_compressor(hdr: torch.Tensor) -> torch.Tensor:
    """μ-law tone map of linear HDR, any shape."""
    return torch.log(1 + MU * hdr) / math.log(1 + MU)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Attention-guided HDR (AHDRNet) training")
    parser.add_argument("--data_dir", required=True, help="Kalantari layout root holding Training/")
    parser.add_argument("--trained_model_dir", default="./trained-model/")
    parser.add_argument("--trained_model_filename", default="ahdr_model.pt")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batchsize", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256, help="training patch size")
    parser.add_argument("--steps", type=int, default=100000, help="optimiser steps; lr ×0.1 for the last 20%%")
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--nDenselayer", type=int, default=6, help="dense layers per DRDB")
    parser.add_argument("--growthRate", type=int, default=32, help="growth rate of the dense layers")
    parser.add_argument("--nFeat", type=int, default=64, help="number of feature maps")
    parser.add_argument("--nChannel", type=int, default=6, help="channels per input frame")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to train (default: the GPU when there is one)")
    parser.add_argument("--semkt", action="store_true", help="add Semantic Knowledge Transfer (semkt_plugin)")
    parser.add_argument("--semkt_config", default=None,
                        help="JSON object of the strategy's settings to change (with --semkt)")
    parser.add_argument("--strategy", default="skt", choices=("skt", "smhdr", "smarthdr"),
                        help="with --semkt: skt (Semantic Knowledge Transfer), smhdr (curriculum semantic masking) "
                             "or smarthdr (semi-supervised; the scenes left out by --labelled_fraction are unlabelled)")
    parser.add_argument("--labelled_fraction", type=float, default=1.0,
                        help="train on this fraction of the training scenes only (evenly spaced in name order); "
                             "with --strategy smarthdr the others are used without their ground truth")
    parser.add_argument("--skb", default="FastSAM-s.pt",
                        help="with --strategy smhdr: the SKB that builds each scene's region map (masks.npy, once)")
    return parser.parse_args(argv)


def labelled_scenes(n: int, fraction: float) -> list[int]:
    """Indices of ``round(fraction·n)`` scenes (at least one), evenly spaced over the ``n`` in name order."""
    if not 0 < fraction <= 1:
        raise SystemExit(f"--labelled_fraction must be in (0, 1], got {fraction}")
    k = max(1, round(fraction * n))
    return sorted({int(i * n / k) for i in range(k)})


def strategy_extras(name: str) -> tuple[str, ...]:
    """What semkt's strategy ``name`` reads besides the batch (``Strategy.extras``): the loop provides those."""
    from semkt_plugin.registry import get_strategy

    return get_strategy(name).extras


def weights_init_kaiming(m: torch.nn.Module) -> None:
    if isinstance(m, torch.nn.Conv2d):
        init.kaiming_normal_(m.weight)


def main(argv: list[str] | None = None) -> dict:
    """Train and save ``<trained_model_dir>/<trained_model_filename>``.

    Returns ``{"steps", "losses" (the μ-law L1 of each step, without semkt's terms), "seconds", "checkpoint"}``,
    and with ``--semkt`` also ``"semkt_losses"``: semkt's loss components of each step.
    """
    args = parse_args(argv)
    # what the strategy reads besides the batch (Strategy.extras): each scene's region IDs, unlabelled batches
    needs = set(strategy_extras(args.strategy)) if args.semkt else set()
    if "regions" in needs:  # SMHDR's masks.npy: one region map per training scene, computed once, reused later
        from semkt_plugin.reproduction.regions import build_region_maps
        from semkt_plugin.skb import load_skb

        build_region_maps(args.data_dir, skb=load_skb(args.skb))
    torch.manual_seed(args.seed)  # after the region maps: loading the SKB draws random numbers

    scenes = training_set(args.data_dir, args.crop, args.seed, regions="regions" in needs)
    labelled = labelled_scenes(len(scenes), args.labelled_fraction)
    # the data have their own seeded generators: the same batches whatever else draws random numbers
    loader = DataLoader(
        Subset(scenes, labelled) if len(labelled) < len(scenes) else scenes,
        batch_size=args.batchsize,
        shuffle=True,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if "unlabelled" in needs:
        unlabelled = sorted(set(range(len(scenes))) - set(labelled))
        if not unlabelled:
            raise SystemExit(f"--strategy {args.strategy} needs unlabelled scenes: set --labelled_fraction below 1")
        unlabelled_loader = DataLoader(training_set(args.data_dir, args.crop, args.seed + 1), batch_size=args.batchsize,
                                       sampler=SubsetRandomSampler(unlabelled,
                                                                   torch.Generator().manual_seed(args.seed + 1)),
                                       num_workers=args.num_workers)
        unlabelled_batches = itertools.chain.from_iterable(itertools.repeat(unlabelled_loader))
    model = AHDR(args)
    model.apply(weights_init_kaiming)
    model.to(args.device)  # before wrap: the plugin follows the model's device
    params = list(model.parameters())
    if args.semkt:
        from semkt_plugin import wrap

        overrides = json.loads(Path(args.semkt_config).read_text()) if args.semkt_config else {}
        # total_steps: the strategies' schedules may be fractions of the run; the plugin's own initial weights and
        # random draws (SKAM's masks, SMHDR's masks, SmartHDR's augmentations) follow the run's seed
        settings = {"total_steps": args.steps, "seed": args.seed, **overrides}
        skt = wrap(model, adapter="ahdr", strategy=args.strategy, **settings)
        params = [*model.parameters(), *skt.parameters()]
    optimizer = Adam(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

    model.train()
    losses, semkt_losses = [], []
    start = time.time()
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    for step in tqdm(range(1, args.steps + 1), desc="train AHDR" + (f" + semkt {args.strategy}" if args.semkt else "")):
        for group in optimizer.param_groups:  # upstream: lr × 0.1 for the last 20% of training
            group["lr"] = args.lr if step <= 0.8 * args.steps else 0.1 * args.lr
        x1, x2, x3, gt, *regions = (t.to(args.device) for t in next(batches))
        optimizer.zero_grad()
        # the batch's extras, for the strategy that reads them (the loop contract: semkt_plugin.Strategy)
        extras = {"regions": regions[0]} if "regions" in needs else {}
        if args.semkt:
            skt.before_forward(**extras)
        out = model(x1, x2, x3)
        loss = F.l1_loss(range_compressor(out), range_compressor(gt))
        losses.append(loss.item())
        if args.semkt:
            loss = loss + skt.loss(out, gt)
            if "unlabelled" in needs:
                u1, u2, u3, _ = (t.to(args.device) for t in next(unlabelled_batches))  # their labels unused
                extras["unlabelled"] = [u1, u2, u3]
            loss = loss + skt.after_loss(**extras)
            semkt_losses.append(skt.last_losses)
        loss.backward()
        optimizer.step()

    if args.semkt:
        model = skt.unwrap()
    out_dir = Path(args.trained_model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / args.trained_model_filename
    torch.save(model.state_dict(), checkpoint)
    summary = {"steps": args.steps, "losses": losses, "seconds": time.time() - start, "checkpoint": str(checkpoint)}
    return {**summary, "semkt_losses": semkt_losses} if args.semkt else summary


if __name__ == "__main__":
    summary = main()
    print(f"{summary['steps']} steps in {summary['seconds']:.0f} s, last loss {summary['losses'][-1]:.4f}, "
          f"saved {summary['checkpoint']}")
