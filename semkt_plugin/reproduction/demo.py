"""``semkt demo``: AHDR with and without Semantic Knowledge Transfer on real-content dynamic HDR scenes.

Builds the data if missing (brackets synthesised from the shipped real HDR photographs,
:mod:`semkt_plugin.reproduction.brackets`; ``--scenes synthetic`` for the generated sprites of
:mod:`semkt_plugin.reproduction.synth`), runs the example repository ``examples/ahdr`` as is and with ``--semkt`` on the
same data and number of steps, once per seed (each pair shares its seed: same initial weights, same batches),
evaluates every run on the full test images, prints the table of ``semkt verdict`` (means, and each seed's gain
with its 95 % interval) and writes ``results.json`` and ``figure.png``.

The defaults are sized for a 2-core CPU (a narrow AHDR, 600 steps of 64² crops, two seeds: about 10 minutes).
The demo runs the protocol of ``semkt verdict --split test`` on its first two seeds; the verdict has five and the
ablations.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..diagnostics.runtime import DEVICE_HELP, DefaultsHelp, describe_skb, device_arg, header, resolve_device
from ..domain import mu_law
from ..layout import scene_dirs
from ..pretrained import OFFLINE
from .kalantari import read_hdr, read_scene
from .paired import EXAMPLE_DIR, Training, Variant, paired_runs
from .verdict import ABLATIONS, BASELINE, format_table, summarise, training_curves

STRATEGY_ROWS = ("skt", "smhdr", "smarthdr")
FLAGS = {"no_content": "w/o L_content", "no_color": "w/o L_color", "no_skam": "w/o SKAM", "no_priors": "w/o priors"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="semkt demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelp)
    parser.add_argument("--out", default="semkt_demo", help="output folder (data, checkpoints, results)")
    parser.add_argument("--scenes", choices=("real", "synthetic"), default="real",
                        help="real: brackets from real HDR photographs (test split); synthetic: generated sprites")
    parser.add_argument("--data", default=None, help="Kalantari-layout data to use instead (its Test/ is evaluated)")
    parser.add_argument("--n_train", type=int, default=16, help="synthetic training scenes")
    parser.add_argument("--n_test", type=int, default=4, help="synthetic test scenes")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"),
                        help="synthetic scene size")
    parser.add_argument("--steps", type=int, default=600, help="training steps of each run")
    parser.add_argument("--batchsize", type=int, default=2)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4, help="upstream: 1e-4, for far longer runs")
    parser.add_argument("--nFeat", type=int, default=16, help="AHDR width (upstream: 64)")
    parser.add_argument("--growthRate", type=int, default=8, help="AHDR growth rate (upstream: 32)")
    parser.add_argument("--nDenselayer", type=int, default=3, help="AHDR dense layers per block (upstream: 6)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=2, help="paired runs, seeds seed, seed+1, ...")
    parser.add_argument("--strategy", nargs="+", choices=STRATEGY_ROWS, default=["skt"],
                        help="which strategies get a row: skt (Semantic Knowledge Transfer, against AHDR), smhdr "
                             "(against AHDR), smarthdr (against AHDR trained on the --labelled_fraction alone)")
    parser.add_argument("--labelled_fraction", type=float, default=0.25,
                        help="smarthdr: the share of training scenes with their ground truth")
    parser.add_argument("--config", default="{}",
                        help='JSON of SKTConfig fields (skt), e.g. \'{"lambda_feat": 0.1}\'')
    for flag, name in FLAGS.items():
        parser.add_argument(f"--{flag}", action="store_true",
                            help=f"ablation: semkt with {', '.join(f'{k}={v}' for k, v in ABLATIONS[name].items())}")
    parser.add_argument("--skb", default=OFFLINE["skb_weights"],
                        help="SKTConfig.skb_weights ('standin' works offline)")
    parser.add_argument("--perceptual", default=OFFLINE["perceptual"],
                        help="SKTConfig.perceptual ('vgg19' needs its weights)")
    parser.add_argument("--example_dir", type=Path, default=EXAMPLE_DIR, help="the example AHDR repository")
    parser.add_argument("--device", type=device_arg, default=None,
                        help=DEVICE_HELP + "; passed to the example's train.py and test.py")
    return parser.parse_args(argv)


def demo_data(args: argparse.Namespace, out: Path) -> Path:
    """The data the demo trains and tests on (built on first use, reused after)."""
    if args.data:
        return Path(args.data)
    if args.scenes == "synthetic":
        from .synth import generate_dataset

        return generate_dataset(out / "data", n_train=args.n_train, n_test=args.n_test, size=tuple(args.size),
                                seed=args.seed)
    from .brackets import generate_real_dataset

    return generate_real_dataset(out / "data", eval_split="test", seed=0)


def _worst_window(errors: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``² window with the largest summed error (both runs' errors added)."""
    integral = np.pad(errors, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    return int(y), int(x)


def save_figure(path: Path, data: Path, runs: dict[str, dict]) -> None:
    """First test scene: the three LDR inputs, each run's output and the ground truth (μ-law), zoomed crops of the
    window where the runs err most together (chosen from both runs' errors, so it favours neither), loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    scene = read_scene(scene_dirs(data, "Test")[0])
    tone = lambda hdr: mu_law(torch.from_numpy(hdr).clamp_min(0)).clamp(0, 1).numpy()  # noqa: E731
    gt = tone(scene.hdr)
    outputs = {name: tone(read_hdr(Path(run["results_dir"]) / f"{scene.name}.hdr")) for name, run in runs.items()}
    errors = sum(np.abs(img - gt).mean(-1) for img in outputs.values())
    crop = max(16, min(gt.shape[:2]) // 4)
    y, x = _worst_window(errors, crop)

    shown = [(f"{name}\nPSNR-μ {runs[name]['test']['scenes'][scene.name]['psnr_mu']:.2f} dB", img)
             for name, img in outputs.items()] + [("ground truth", gt)]
    cols = max(len(shown), 3) + 1
    fig, axes = plt.subplots(3, cols, figsize=(3.0 * cols, 9.0))
    for ax in axes.flat:
        ax.axis("off")
    for ax, ldr, stop in zip(axes[0], scene.ldrs, scene.stops):
        ax.imshow(np.clip(ldr, 0, 1))
        ax.set_title(f"input LDR, {stop:+g} stops", fontsize=9)
    for col, (title, img) in enumerate(shown):
        axes[1, col].imshow(img)
        axes[1, col].add_patch(plt.Rectangle((x, y), crop, crop, fill=False, color="red", linewidth=1))
        axes[1, col].set_title(title + " (μ-law)", fontsize=9)
        axes[2, col].imshow(img[y:y + crop, x:x + crop], interpolation="nearest")
        axes[2, col].set_title("zoom", fontsize=9)
    curves = axes[0, -1]
    curves.axis("on")
    training_curves(curves, runs)
    curves.set_title("training μ-law L1 to the ground truth\n(moving average of 20 steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# the demo's settings for the sibling strategies, chosen on the validation split (docs/strategies.md says why):
# the paper's EMA α averages over longer than a 600-step run's semi-supervised phase, and SMHDR's feature-derived
# maps scale features in training only
SMARTHDR_AT_DEMO_SCALE = {"ema": 0.9, "beta": 1.0}
SMHDR_AT_DEMO_SCALE = {"region_prob": 1.0}


def strategy_variants(args: argparse.Namespace, semkt: dict, off: list[str]) -> list[Variant]:
    """The baseline and one arm per asked strategy; SmartHDR pairs with AHDR trained on its labelled scenes alone."""
    arms = [Variant(BASELINE)]
    if "skt" in args.strategy:
        arms.append(Variant("AHDR + semkt" + (f" ({', '.join(off)})" if off else ""), semkt))
    if "smhdr" in args.strategy:
        arms.append(Variant("AHDR + SMHDR (region maps only)", SMHDR_AT_DEMO_SCALE, "smhdr", ["--skb", args.skb]))
    if "smarthdr" in args.strategy:
        share = ["--labelled_fraction", str(args.labelled_fraction)]
        few = f"AHDR, {args.labelled_fraction:g} labelled"
        arms += [Variant(few, None, args=share),
                 Variant(f"{few} + SmartHDR (ema 0.9, β 1)", SMARTHDR_AT_DEMO_SCALE, "smarthdr", share,
                         pairs_with=few)]
    return arms


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns what ``results.json`` holds: the settings, the summary and, per method, its runs."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = demo_data(args, out)
    off = [name for flag, name in FLAGS.items() if getattr(args, flag)]
    semkt = {"skb_weights": args.skb, "perceptual": args.perceptual, **json.loads(args.config),
             **{k: v for name in off for k, v in ABLATIONS[name].items()}}
    setup = Training(data, args.steps, args.batchsize, args.crop, args.lr, args.nFeat, args.growthRate,
                     args.nDenselayer, args.example_dir, str(resolve_device(args.device)))
    print(header(setup.device, setup.describe_model(),
                 describe_skb(semkt["skb_weights"], semkt.get("skb_arch"))))
    seeds = list(range(args.seed, args.seed + args.seeds))
    arms = strategy_variants(args, semkt, off)
    runs = paired_runs(setup, arms, seeds, out)
    summary = summarise(runs, {v.name: v.pairs_with for v in arms if v.pairs_with})
    table = format_table(summary)
    test_scenes = len(scene_dirs(data, "Test"))
    print(f"\n{test_scenes} {args.scenes if not args.data else ''} test scenes, {args.steps} steps per run, "
          f"seeds {seeds[0]}..{seeds[-1]}\n{table}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"settings": {**settings, "data": str(data), "device": setup.device}, "table": table, "summary": summary,
               "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    save_figure(out / "figure.png", data, {name: seeds_[0] for name, seeds_ in runs.items()})
    print(f"wrote {out / 'results.json'} and {out / 'figure.png'}")
    return results
