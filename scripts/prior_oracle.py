"""Can the teacher use a prior that certainly carries information? The oracle control of docs/results.md.

`semkt probe` on the validation split's training scenes (the example AHDR at the verdict's width, 64² crops,
batch 2, lr 5e-4, 300 steps: the first half of a verdict run), twice per seed with the same model trajectory:

- with the stand-in SKB reading the ground truth (``prior_source="truth"``), through eq. 4 alone and with the
  per-pixel path (``prior_fusion="both"``);
- with an oracle in the SKB's place: the ground truth's own pixels, average-pooled to the SKB's four strides
  (:class:`PixelPyramid`), through the same two fusions.

If the oracle raises the teacher's margin and the SKB's features of the same image do not, the teacher can use
priors and the segmenter's features carry little it can use; if neither does, the teacher cannot use priors.

    OMP_NUM_THREADS=1 python scripts/prior_oracle.py --out oracle --seeds 0 1 2 3
"""
from __future__ import annotations

import argparse
import json
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from semkt_plugin.diagnostics.probe import run_probe
from semkt_plugin.domain import mu_law
from semkt_plugin.pretrained import OFFLINE
from semkt_plugin.reproduction.brackets import generate_real_dataset
from semkt_plugin.reproduction.kalantari import KalantariDataset
from semkt_plugin.reproduction.paired import load_example
from semkt_plugin.skb import load_skb
from semkt_plugin.strategies.skt import SKTConfig

STRIDES = (4, 8, 16, 32)
TRUTH = {"prior_source": "truth"}
ARMS = {"no priors": {"use_priors": False}, "truth, eq. 4": TRUTH,
        "truth, + spatial path": {**TRUTH, "prior_fusion": "both"}}


class PixelPyramid(nn.Module):
    """An oracle in the SKB's place: its "features" of an image are the image itself, average-pooled to the SKB's
    strides (the ceiling of what any prior of that image can tell)."""

    channels = (3,) * len(STRIDES)

    def features(self, x: Tensor) -> list[Tensor]:
        return [F.avg_pool2d(x, s, ceil_mode=True) for s in STRIDES]


def probe(seed: int, data: Path, skb: nn.Module, steps: int) -> dict:
    train, _ = load_example()
    torch.manual_seed(seed)
    model = train.AHDR(Namespace(nChannel=6, nDenselayer=3, nFeat=16, growthRate=8))
    model.apply(train.weights_init_kaiming)
    model.train()
    loader = DataLoader(KalantariDataset(data, "Training", crop=64, augment=True, seed=seed), batch_size=2,
                        shuffle=True, generator=torch.Generator().manual_seed(seed))
    report = run_probe(model, "ahdr", loader, lambda out, gt: F.l1_loss(mu_law(out), mu_law(gt)), steps=steps,
                       arms=ARMS, config=SKTConfig(**OFFLINE, seed=seed), lr=5e-4, skb=skb, progress=False)
    return {arm: sum(m) / len(m) for arm, m in report.margins().items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    data = generate_real_dataset(args.out / "data", eval_split="validation", seed=0)
    priors = {"SKB": load_skb("standin"), "pixels": PixelPyramid()}
    for seed in args.seeds:
        record = args.out / f"seed{seed}.json"
        if not record.exists():
            margins = {source: probe(seed, data, skb, args.steps) for source, skb in priors.items()}
            record.write_text(json.dumps(margins, indent=1) + "\n")
        margins = json.loads(record.read_text())
        print(f"seed {seed}: " + "; ".join(f"{source} {arm} {m * 100:+.1f}" for source, arms in margins.items()
                                          for arm, m in arms.items()))


if __name__ == "__main__":
    main()
