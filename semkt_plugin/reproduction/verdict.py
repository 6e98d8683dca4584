"""``semkt verdict``: does semkt make the example AHDR better on real-content scenes? Paired seeds, a 95 % interval.

Protocol (docs/results.md):

- Data: brackets synthesised from real HDR photographs (:mod:`semkt_plugin.reproduction.brackets`), split by panorama.
  Settings are chosen with ``--split validation``; ``--split test`` is run once, at the end, with the settings
  fixed.
- Every variant is trained at every seed on the same data, crops and steps, with the same learning rate and
  schedule; the baseline is the example AHDR as is. Each seed's gain is ``variant − baseline`` at that seed.
- Reported: mean gain, every seed's gain, and the paired-t 95 % interval for PSNR-μ, PSNR-L and SSIM-μ;
  ``--ablations`` adds the paper's Table 3 rows (without L_content, L_color, SKAM, the SKB priors). For every
  semkt row also the teacher's margin over the model just before the distillation starts
  (:mod:`semkt_plugin.diagnostics.margin`), an exact paired readout of what its teacher has to teach.

Runs are cached per folder (:mod:`semkt_plugin.reproduction.paired`): rerunning the same command after an interruption
trains only what is missing.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from ..diagnostics.margin import run_margin
from ..diagnostics.runtime import (
    DEVICE_HELP,
    DefaultsHelp,
    describe_skb,
    device_arg,
    header,
    named_settings,
    resolve_device,
)
from ..diagnostics.stats import mean_interval, paired_gain
from ..pretrained import OFFLINE
from .paired import EXAMPLE_DIR, METRICS, Training, Variant, paired_runs

BASELINE = "AHDR"
ABLATIONS = {"w/o L_content": {"lambda_content": 0.0}, "w/o L_color": {"lambda_color": 0.0},
             "w/o SKAM": {"use_skam": False}, "w/o priors": {"use_priors": False}}
GAIN_METRICS = ("psnr_mu", "psnr_l", "ssim_mu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="semkt verdict", description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelp)
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="evaluation split: choose settings on validation; test once, at the end")
    parser.add_argument("--out", type=Path, default=Path("semkt_verdict"), help="output folder (data, runs, results)")
    parser.add_argument("--seeds", type=int, default=5, help="paired seeds: seed, seed+1, ...")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batchsize", type=int, default=2)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--nFeat", type=int, default=16, help="AHDR width (upstream: 64)")
    parser.add_argument("--growthRate", type=int, default=8, help="AHDR growth rate (upstream: 32)")
    parser.add_argument("--nDenselayer", type=int, default=3, help="AHDR dense layers per block (upstream: 6)")
    parser.add_argument("--config", default="{}", help="JSON of SKTConfig fields for every semkt variant (on top "
                                                       "of the offline SKB; the schedule is the default: distillation "
                                                       "from half way, ramped over a sixth)")
    parser.add_argument("--ablations", action="store_true", help="add the Table 3 rows (each component off)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="instead of the one semkt row, a named row per SKTConfig change (repeat; for choosing "
                             "settings on the validation split)")
    parser.add_argument("--data", type=Path, default=None,
                        help="Kalantari-layout data to use instead of the real-content scenes (its Test/ is evaluated)")
    parser.add_argument("--example_dir", type=Path, default=EXAMPLE_DIR, help="the example AHDR repository")
    parser.add_argument("--device", type=device_arg, default=None,
                        help=DEVICE_HELP + "; passed to the example's train.py and test.py")
    return parser.parse_args(argv)


def variants(config: dict, ablations: bool, named: list[str] = ()) -> list[Variant]:
    """The baseline, AHDR + semkt with ``config`` (or one row per ``NAME=JSON`` of ``named``, each on top of
    ``config``), and with ``ablations`` one row per component switched off."""
    semkt = {**OFFLINE, **config}
    rows = [Variant(BASELINE)]
    for spec in named:
        name, changes = named_settings(spec, "--variant")
        rows.append(Variant(f"AHDR + semkt {name}", {**semkt, **changes}))
    if not named:
        rows.append(Variant("AHDR + semkt", semkt))
    if ablations:
        rows += [Variant(f"AHDR + semkt {name}", {**semkt, **off}) for name, off in ABLATIONS.items()]
    return rows


def summarise(runs: dict[str, list[dict]], pairs: dict[str, str] | None = None) -> dict[str, dict]:
    """Per variant: mean metrics over seeds and, for all but the baselines, the paired gains of each metric against
    its own baseline (``pairs[name]``, else :data:`BASELINE`)."""
    pairs = pairs or {}
    summary = {}
    for name, seeds in runs.items():
        base = runs[pairs.get(name, BASELINE)]
        entry = {"mean": {k: sum(r["test"][k] for r in seeds) / len(seeds) for k, _ in METRICS},
                 "train_seconds": sum(r["train"]["seconds"] for r in seeds) / len(seeds),
                 "seeds": [r["seed"] for r in seeds]}
        margins = [margin(r) for r in seeds]
        if all(m is not None for m in margins):
            entry["margin"] = mean_interval(margins).to_dict()
        if name != BASELINE and name not in pairs.values():
            entry["vs"] = pairs.get(name, BASELINE)
            _check_threads(name, seeds, entry["vs"], base)
            entry["gain"] = {k: paired_gain([r["test"][k] for r in seeds], [b["test"][k] for b in base]).to_dict()
                             for k in GAIN_METRICS}
        summary[name] = entry
    return summary


def margin(run: dict) -> float | None:
    """The teacher margin of an skt run (``None`` for other runs, and where the distillation starts at step 0)."""
    losses = run["train"].get("semkt_losses") or []
    if run.get("semkt") is None or not losses or "orm" not in losses[0]:
        return None
    return run_margin(run["semkt"], run["train"]["steps"], losses)


def _check_threads(name: str, runs: list[dict], base_name: str, base: list[dict]) -> None:
    """Warn about pairs trained with different CPU thread counts: CPU convolutions sum in a thread-dependent
    order, so two such runs part by rounding from the first steps, and at this scale rounding alone moves a seed's
    result by tenths of a dB. Records without a count (made before it was kept) are not checked."""
    for run, ref in zip(runs, base):
        threads, ref_threads = run.get("threads"), ref.get("threads")
        if threads is not None and ref_threads is not None and threads != ref_threads:
            warnings.warn(f"seed {run['seed']}: {name!r} trained with {threads} CPU thread(s), its baseline "
                          f"{base_name!r} with {ref_threads}: the pair differs by rounding as well as by the "
                          "variant. Train both with the same OMP_NUM_THREADS (delete one run's folder and rerun).",
                          UserWarning, stacklevel=3)


def _cell(metric: str, value: float) -> str:
    return f"{value:.2f}" if metric.startswith("psnr") else f"{value:.4f}"


def format_table(summary: dict[str, dict]) -> str:
    """Means per variant, then per semkt variant its gains: mean [95 % CI] and every seed's gain."""
    width = max(30, *(len(name) + 2 for name in summary))
    head = f"{'Method':<{width}}" + "".join(f"{label:>9}" for _, label in METRICS) + f"{'train s':>9}"
    lines = [head, "-" * len(head)]
    for name, entry in summary.items():
        lines.append(f"{name:<{width}}" + "".join(f"{_cell(k, entry['mean'][k]):>9}" for k, _ in METRICS)
                     + f"{entry['train_seconds']:9.0f}")
    labels = dict(METRICS)
    own = any(entry.get("vs", BASELINE) != BASELINE for entry in summary.values())
    over = "its baseline" if own else BASELINE
    lines += ["", f"gain over {over} at the same seed (SSIM-μ ×100): mean [95 % CI]; per seed"]
    for name, entry in summary.items():
        if "gain" not in entry:
            continue
        lines.append(f"{name}  (vs {entry['vs']})" if own else name)
        for k in GAIN_METRICS:
            g, scale = entry["gain"][k], 100 if k.startswith("ssim") else 1
            ci = "[n/a]" if g["ci"] is None else f"[{g['ci'][0] * scale:+.2f}, {g['ci'][1] * scale:+.2f}]"
            seeds = " ".join(f"{v * scale:+.2f}" for v in g["per_seed"])
            lines.append(f"  {labels[k]:<7}{g['mean'] * scale:+7.2f} {ci:<17} {seeds}")
    margins = {name: entry["margin"] for name, entry in summary.items() if "margin" in entry}
    if margins:
        lines += ["", "teacher margin before the distillation starts, 1 − L_spg / the model's μ-law L1 (×100; the "
                      "last third of the steps before it): mean [95 % CI]; per seed"]
        for name, m in margins.items():
            ci = "[n/a]" if m["ci"] is None else f"[{m['ci'][0] * 100:+.1f}, {m['ci'][1] * 100:+.1f}]"
            lines.append(f"  {name:<{width - 2}}{m['mean'] * 100:+7.1f} {ci:<15} "
                         + " ".join(f"{v * 100:+.1f}" for v in m["per_seed"]))
    return "\n".join(lines)


def training_curves(ax, runs: dict[str, dict]) -> None:
    """Each run's training μ-law L1 and, for a semkt run, its teacher's L_spg (dashed), on a log axis."""
    import numpy as np

    smooth = lambda v: np.convolve(v, np.ones(20) / 20, mode="valid") if len(v) >= 20 else np.asarray(v)  # noqa: E731
    for name, run in runs.items():
        ax.plot(smooth(run["train"]["losses"]), label=name, linewidth=0.8)
        teacher = [parts["spg"] for parts in run["train"].get("semkt_losses", []) if "spg" in parts]  # skt only
        if teacher:
            ax.plot(smooth(teacher), label="its teacher Ĥ_s (L_spg)", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)


def plot(summary: dict[str, dict], runs: dict[str, list[dict]], path: Path) -> None:
    """Left: every seed's PSNR-μ gain per variant, with the mean and its 95 % interval. Right: the training μ-law L1
    of the baseline and of AHDR + semkt at the first seed, and that run's teacher (L_spg): what there was to
    distil."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (gains, curves) = plt.subplots(1, 2, figsize=(12, 4.2))
    names = [n for n in summary if "gain" in summary[n]]
    for i, name in enumerate(names):
        g = summary[name]["gain"]["psnr_mu"]
        gains.scatter([i] * len(g["per_seed"]), g["per_seed"], color="tab:blue", s=14, zorder=3)
        low, high = g["ci"] if g["ci"] is not None else (g["mean"], g["mean"])
        gains.errorbar(i + 0.15, g["mean"], yerr=[[g["mean"] - low], [high - g["mean"]]], fmt="o", color="black",
                       capsize=4)
    gains.axhline(0, color="grey", linewidth=0.8)
    gains.set_xlim(-0.5, len(names) - 0.5)
    gains.set_xticks(range(len(names)), [n.replace("AHDR + semkt", "semkt").strip() for n in names], rotation=20,
                     fontsize=8)
    gains.set_ylabel("PSNR-μ gain over AHDR at the same seed (dB)")
    gains.set_title("dots: seeds; black: mean and 95 % interval", fontsize=9)
    first = {name: runs[name][0] for name in [BASELINE, *names[:1]]}
    training_curves(curves, first)
    curves.set_title(f"training μ-law L1 to the ground truth, seed {first[BASELINE]['seed']}\n"
                     "(moving average of 20 steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment; returns what ``verdict.json`` holds."""
    args = parse_args(argv)
    out = args.out / args.split
    if args.data is None:
        from .brackets import generate_real_dataset

        data = generate_real_dataset(args.out / f"data_{args.split}", eval_split=args.split, seed=0)
    else:
        data = args.data
    setup = Training(data, args.steps, args.batchsize, args.crop, args.lr, args.nFeat, args.growthRate,
                     args.nDenselayer, args.example_dir, str(resolve_device(args.device)))
    seeds = list(range(args.seed, args.seed + args.seeds))
    config = json.loads(args.config)
    semkt = {**OFFLINE, **config}
    print(header(setup.device, setup.describe_model(),
                 describe_skb(semkt["skb_weights"], semkt.get("skb_arch"))))
    runs = paired_runs(setup, variants(config, args.ablations, args.variant), seeds, out)
    summary = summarise(runs)
    table = format_table(summary)
    print(f"\n{args.split} split, {args.steps} steps per run, seeds {seeds[0]}..{seeds[-1]}\n{table}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"settings": {**settings, "data": str(data), "device": setup.device}, "summary": summary, "table": table,
               "runs": {name: [{**{k: r.get(k) for k in ("seed", "semkt", "test", "threads")}, "margin": margin(r)}
                               for r in rs] for name, rs in runs.items()}}
    (out / "verdict.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(summary, runs, out / "verdict.png")
    print(f"wrote {out / 'verdict.json'} and {out / 'verdict.png'}")
    return results
