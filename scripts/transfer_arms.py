"""Does the transfer work at all? The arms of docs/results.md, "Which world", on the validation split.

Every arm is the verdict's protocol (real-content brackets, the example AHDR at nFeat 16, 600 steps of 64² crops,
batch 2, distillation from step 300 ramped over 100, the stand-in SKB, the plugin seeded with the run's seed) with
one change to its teacher or its distillation. Two readouts per arm and seed:

- the teacher's margin over the model before the distillation starts (steps 200–299). Until step 300 every arm
  trains the same model bit for bit, so arms differ only in their teachers and the margin differences are exact
  paired measurements;
- the model's PSNR-μ / PSNR-L / SSIM-μ gains over AHDR trained alone at the same seed.

    OMP_NUM_THREADS=1 python scripts/transfer_arms.py --out arms --seed 0 --seeds 6    # and --seed 6 beside it
    python scripts/transfer_arms.py --out arms --seeds 12                             # the tables, from the cache

About 35 single-thread CPU minutes per seed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from semkt_plugin.diagnostics.stats import paired_gain
from semkt_plugin.pretrained import OFFLINE
from semkt_plugin.reproduction.brackets import generate_real_dataset
from semkt_plugin.reproduction.paired import Training, Variant, paired_runs
from semkt_plugin.reproduction.verdict import format_table, margin, summarise

STEPS = 600
BASE = {**OFFLINE, "distill_start": 300, "distill_warmup": 100}
SPATIAL = {"prior_fusion": "both"}  # eq. 4 kept, a per-pixel path added before it
TRUTH = {"prior_source": "truth"}
REFERENCE = "priors off"
TODAY = "priors from the output"
ARMS = {
    REFERENCE: {"use_priors": False},
    TODAY: {},
    "priors from the truth": TRUTH,
    "output, + spatial path": SPATIAL,
    "truth, + spatial path": {**TRUTH, **SPATIAL},
    "output, gate off": {"distill_gate": False},
    "output, w/o L_color": {"lambda_color": 0.0},
}


def variants() -> list[Variant]:
    return [Variant("AHDR"), *(Variant(f"AHDR + semkt {name}", {**BASE, **changes}) for name, changes in ARMS.items())]


def margin_table(runs: dict[str, list[dict]]) -> str:
    """Each arm's margin minus the reference arm's at the same seed (×100): exact paired differences."""
    ref = [margin(r) for r in runs[f"AHDR + semkt {REFERENCE}"]]
    lines = [f"teacher margin gained over the arm '{REFERENCE}' at the same seed (×100): mean [95 % CI]; per seed"]
    for name in ARMS:
        if name == REFERENCE:
            continue
        g = paired_gain([margin(r) for r in runs[f"AHDR + semkt {name}"]], ref)
        ci = "[n/a]" if g.ci is None else f"[{g.ci[0] * 100:+.2f}, {g.ci[1] * 100:+.2f}]"
        lines.append(f"  {name:<30}{g.mean * 100:+7.2f} {ci:<17} " + " ".join(f"{v * 100:+.1f}" for v in g.per_seed))
    return "\n".join(lines)


def against_today(runs: dict[str, list[dict]], metric: str = "psnr_mu") -> str:
    """Each arm's PSNR-μ minus today's method's (priors from the output) at the same seed: what each change does."""
    today = [r["test"][metric] for r in runs[f"AHDR + semkt {TODAY}"]]
    lines = [f"PSNR-μ against the arm '{TODAY}' (today's method) at the same seed (dB): mean [95 % CI]; per seed"]
    for name in ARMS:
        if name == TODAY:
            continue
        g = paired_gain([r["test"][metric] for r in runs[f"AHDR + semkt {name}"]], today)
        ci = "[n/a]" if g.ci is None else f"[{g.ci[0]:+.2f}, {g.ci[1]:+.2f}]"
        lines.append(f"  {name:<30}{g.mean:+7.2f} {ci:<17} " + " ".join(f"{v:+.2f}" for v in g.per_seed))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="data, runs and their cache")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=12, help="paired seeds: seed, seed+1, ...")
    args = parser.parse_args(argv)
    data = generate_real_dataset(args.out / "data", eval_split="validation", seed=0)
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = paired_runs(Training(data, steps=STEPS), variants(), seeds, args.out)
    table = f"validation split, {STEPS} steps per run, seeds {seeds[0]}..{seeds[-1]}\n{format_table(summarise(runs))}"
    table += "\n\n" + margin_table(runs) + "\n\n" + against_today(runs)
    print(table)
    (args.out / "arms.txt").write_text(table + "\n")
    (args.out / "arms.json").write_text(json.dumps(
        {name: [{"seed": r["seed"], "margin": margin(r), "test": r["test"]} for r in rs] for name, rs in runs.items()},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
