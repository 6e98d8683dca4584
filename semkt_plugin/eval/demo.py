"""``semkt demo``: AHDR with and without Semantic Knowledge Transfer on synthetic dynamic HDR scenes.

Generates the data if missing (:mod:`semkt_plugin.data.synth`), runs the example repository ``examples/ahdr``
as is and with ``--semkt`` on the same data and number of steps, once per seed (each pair shares its seed:
same initial weights, same batches), evaluates every run on the full test images, prints a Table-1-like table
(means over seeds, and the per-seed gain) and writes ``results.json`` and ``figure.png``.

The defaults are sized for a 2-core CPU (a narrow AHDR, 16 training scenes of 128², 600 steps of 64² crops,
two seeds: about 6 minutes); short runs vary from seed to seed, hence the pairs. They show the plugin at work
on an unchanged model, not the paper's numbers, which need the real datasets and long GPU training.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from ..domain import mu_law
from ..data.kalantari import read_hdr, read_scene, scene_dirs
from ..data.synth import generate_dataset

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "ahdr"
EXAMPLE_MODULES = ("model", "dataset", "train", "test")
METRICS = (("psnr_mu", "PSNR-μ"), ("psnr_l", "PSNR-L"), ("ssim_mu", "SSIM-μ"), ("ssim_l", "SSIM-L"))
ABLATIONS = {"no_content": "use_content", "no_color": "use_color", "no_skam": "use_skam", "no_priors": "use_priors"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="semkt demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="semkt_demo", help="output folder (data, checkpoints, results)")
    parser.add_argument("--data", default=None, help="Kalantari-layout data; default <out>/data, generated if missing")
    parser.add_argument("--n_train", type=int, default=16, help="synthetic training scenes")
    parser.add_argument("--n_test", type=int, default=4, help="synthetic test scenes")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"), help="scene size")
    parser.add_argument("--steps", type=int, default=600, help="training steps of each run")
    parser.add_argument("--batchsize", type=int, default=2)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4, help="upstream: 1e-4, for far longer runs")
    parser.add_argument("--nFeat", type=int, default=16, help="AHDR width (upstream: 64)")
    parser.add_argument("--growthRate", type=int, default=8, help="AHDR growth rate (upstream: 32)")
    parser.add_argument("--nDenselayer", type=int, default=3, help="AHDR dense layers per block (upstream: 6)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (also the data's)")
    parser.add_argument("--seeds", type=int, default=2, help="paired runs, seeds seed, seed+1, ...")
    parser.add_argument("--config", default="{}", help='JSON of semkt Config fields, e.g. \'{"lambda_feat": 0.1}\'')
    for flag, field in ABLATIONS.items():
        parser.add_argument(f"--{flag}", action="store_true", help=f"ablation: semkt with {field}=False")
    parser.add_argument("--skb", default="standin", help="semkt Config.skb_weights ('standin' works offline)")
    parser.add_argument("--perceptual", default="skb", help="semkt Config.perceptual ('vgg19' needs its weights)")
    parser.add_argument("--example_dir", type=Path, default=EXAMPLE_DIR, help="the example AHDR repository")
    return parser.parse_args(argv)


def load_example(example_dir: Path) -> tuple[ModuleType, ModuleType]:
    """Import the example's ``train`` and ``test`` scripts, which import ``model`` / ``dataset`` by flat name.

    Those names (and ``test``, a stdlib package) are taken out of ``sys.modules`` only while importing.
    """
    if not (example_dir / "train.py").exists():
        raise FileNotFoundError(
            f"{example_dir} has no train.py: `semkt demo` runs the example repository examples/ahdr of a source "
            "checkout; pass --example_dir <checkout>/examples/ahdr"
        )
    saved = {name: sys.modules.pop(name) for name in EXAMPLE_MODULES if name in sys.modules}
    sys.path.insert(0, str(example_dir))
    try:
        return importlib.import_module("train"), importlib.import_module("test")
    finally:
        sys.path.remove(str(example_dir))
        for name in EXAMPLE_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def mean_metrics(tests: list[dict]) -> dict[str, float]:
    """Average each metric over runs (seeds)."""
    return {k: sum(t[k] for t in tests) / len(tests) for k, _ in METRICS}


def format_table(runs: dict[str, list[dict]]) -> str:
    """Table 1 style: per method the four metrics averaged over test scenes and seeds, the training time, and
    below each semkt row its gain over the baseline of the same seed (mean, and the per-seed range)."""
    head = f"{'Method':<28}" + "".join(f"{label:>10}" for _, label in METRICS) + f"{'train s':>9}"
    rows = [head, "-" * len(head)]
    fmt = lambda k, v: f"{v:10.2f}" if k.startswith("psnr") else f"{v:10.4f}"  # noqa: E731
    base = runs["AHDR"]
    for name, seeds in runs.items():
        mean = mean_metrics([r["test"] for r in seeds])
        seconds = sum(r["train"]["seconds"] for r in seeds) / len(seeds)
        rows.append(f"{name:<28}" + "".join(fmt(k, mean[k]) for k, _ in METRICS) + f"{seconds:9.0f}")
        if name != "AHDR":
            gains = [{k: r["test"][k] - b["test"][k] for k, _ in METRICS} for r, b in zip(seeds, base)]
            cells = []
            for k, _ in METRICS:
                values = [g[k] * (1 if k.startswith("psnr") else 100) for g in gains]
                cells.append(f"{sum(values) / len(values):+10.2f}")
            rows.append(f"{'  gain (SSIM x100)':<28}" + "".join(cells))
            rows.append(f"{'  per-seed PSNR-μ gain':<28}" + "  ".join(f"{g['psnr_mu']:+.2f}" for g in gains))
    return "\n".join(rows)


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
    smooth = lambda v: np.convolve(v, np.ones(20) / 20, mode="valid") if len(v) >= 20 else np.asarray(v)  # noqa: E731
    for name, run in runs.items():
        curves.plot(smooth(run["train"]["losses"]), label=name, linewidth=0.8)
        teacher = [parts["spg"] for parts in run["train"].get("semkt_losses", [])]
        if teacher:
            curves.plot(smooth(teacher), label="its teacher Ĥ_s (L_spg)", linewidth=0.8, linestyle="--")
    curves.set_yscale("log")
    curves.set_xlabel("step")
    curves.set_title("training μ-law L1 to the ground truth\n(moving average of 20 steps)", fontsize=9)
    curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the demo; returns what ``results.json`` holds: the settings and, per method, one entry per seed."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else generate_dataset(
        out / "data", n_train=args.n_train, n_test=args.n_test, size=tuple(args.size), seed=args.seed
    )
    train, test = load_example(args.example_dir)
    ablated = {field: False for flag, field in ABLATIONS.items() if getattr(args, flag)}
    semkt_config = out / "semkt.json"
    fields = {"skb_weights": args.skb, "perceptual": args.perceptual, **json.loads(args.config), **ablated}
    semkt_config.write_text(json.dumps(fields) + "\n")
    semkt_name = "AHDR + semkt" + (f" (w/o {', '.join(f.removeprefix('use_') for f in ablated)})" if ablated else "")
    model_args = ["--nFeat", str(args.nFeat), "--growthRate", str(args.growthRate),
                  "--nDenselayer", str(args.nDenselayer)]
    common = ["--data_dir", str(data), "--steps", str(args.steps), "--batchsize", str(args.batchsize),
              "--crop", str(args.crop), "--lr", str(args.lr), *model_args]

    runs: dict[str, list[dict]] = {"AHDR": [], semkt_name: []}
    for seed in range(args.seed, args.seed + args.seeds):
        for name, extra in (("AHDR", []), (semkt_name, ["--semkt", "--semkt_config", str(semkt_config)])):
            run_dir = out / f"seed{seed}" / ("ahdr" if not extra else "ahdr_semkt")
            summary = train.main([*common, "--seed", str(seed), "--trained_model_dir", str(run_dir), *extra])
            metrics = test.main(["--data_dir", str(data), "--trained_model_dir", str(run_dir),
                                 "--result_dir", str(run_dir / "results"), *model_args])
            runs[name].append({"seed": seed, "train": summary, "test": metrics, "results_dir": str(run_dir / "results")})

    table = format_table(runs)
    print(f"\n{args.n_test} synthetic test scenes, {args.steps} steps per run, seeds {args.seed}.."
          f"{args.seed + args.seeds - 1}\n{table}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    results = {"settings": {**settings, "data": str(data)}, "table": table, "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    save_figure(out / "figure.png", data, {name: seeds[0] for name, seeds in runs.items()})
    print(f"wrote {out / 'results.json'} and {out / 'figure.png'}")
    return results
