"""The sibling strategies on the validation split at the demo's scale: what each setting costs or gains.

Every arm is trained and tested with the demo's settings (real-content brackets, AHDR nFeat 16, 600 steps of 64²
crops, batch 2) on the validation views, never the test ones; SMHDR arms pair with AHDR, SmartHDR arms with AHDR
trained on the same quarter of the scenes alone. These runs chose ``mask_points=(0,)`` as SMHDR's default and the
demo's SmartHDR settings (``semkt_plugin.reproduction.demo.SMARTHDR_AT_DEMO_SCALE``). The table of docs/results.md::

    python scripts/validate_strategies.py --out val --seeds 0 1

Runs are cached per arm and seed (``paired_runs``): seeds can run in separate processes
(``OMP_NUM_THREADS=1 python scripts/validate_strategies.py --out val --seeds 0`` and ``... --seeds 1``), and a
last call with every seed prints the table from the cache. About 30 single-thread CPU minutes per seed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from semkt_plugin.reproduction.brackets import generate_real_dataset
from semkt_plugin.reproduction.paired import Training, Variant, paired_runs
from semkt_plugin.reproduction.verdict import format_table, summarise

FEW = "AHDR, 0.25 labelled"
QUARTER = ["--labelled_fraction", "0.25"]
REGIONS = ["--skb", "standin"]


def smarthdr(name: str, settings: dict) -> Variant:
    return Variant(f"SmartHDR ({name})" if name else "SmartHDR", settings, "smarthdr", QUARTER, pairs_with=FEW)


ARMS = [
    Variant("AHDR"),
    Variant("AHDR + SMHDR (all points)", {"mask_points": None}, "smhdr", REGIONS),
    Variant("AHDR + SMHDR (first point)", {"mask_points": [0]}, "smhdr", REGIONS),
    Variant("AHDR + SMHDR (first point, ramp 0.4-0.7)",
            {"mask_points": [0], "ramp_start": 0.4, "ramp_peak": 0.55, "ramp_end": 0.7}, "smhdr", REGIONS),
    Variant("AHDR + SMHDR (weights only: peak_ratio 0)", {"peak_ratio": 0.0}, "smhdr", REGIONS),
    Variant("AHDR + SMHDR (first point, region maps only: region_prob 1)", {"mask_points": [0], "region_prob": 1.0},
            "smhdr", REGIONS),
    Variant("AHDR + SMHDR (first point, pixels: mask_unit pixel)", {"mask_points": [0], "mask_unit": "pixel"},
            "smhdr", REGIONS),
    Variant(FEW, None, args=QUARTER),
    smarthdr("", {}),  # the paper's settings: ema 0.999, beta 0
    smarthdr("beta 1", {"beta": 1.0}),
    smarthdr("ema 0.99", {"ema": 0.99}),
    smarthdr("ema 0.99, beta 1", {"ema": 0.99, "beta": 1.0}),
    smarthdr("ema 0.9, beta 1", {"ema": 0.9, "beta": 1.0}),
    smarthdr("ema 0.99, beta 1, weak view", {"ema": 0.99, "beta": 1.0, "strong_augment": False}),
    smarthdr("lambda_u 0", {"lambda_u": 0.0}),  # the labelled uncertainty term alone
    smarthdr("ema 0.99, beta 1, lambda_u 0", {"ema": 0.99, "beta": 1.0, "lambda_u": 0.0}),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="data, runs and their cache")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    data = generate_real_dataset(args.out / "data", eval_split="validation", seed=0)
    runs = paired_runs(Training(data), ARMS, args.seeds, args.out)
    print(format_table(summarise(runs, {a.name: a.pairs_with for a in ARMS if a.pairs_with})))


if __name__ == "__main__":
    main()
