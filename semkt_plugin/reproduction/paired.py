"""Paired runs: the example AHDR trained as is and with semkt on the same seed, data, crops and steps.

A run is the example repository's own ``train.py`` then ``test.py`` (``examples/ahdr``, installed with semkt as
``semkt_plugin.example_ahdr``), called in-process. Both
runs of a pair share ``--seed``: the same initial weights and the same batches (the data have their own seeded
generators, and ``wrap`` builds the plugin under a forked RNG), so their difference is semkt's effect alone.

Each finished run leaves ``run.json`` in its folder; a later call with the same arguments reads it instead of
training again, so an interrupted experiment resumes where it stopped. The record keys on the arguments only (the
device is one: a run on another device trains again), not on the code or the SKB weights: after changing either,
use another output folder.
"""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .. import example_ahdr
from ..diagnostics.runtime import describe_model, resolve_device

EXAMPLE_DIR = Path(example_ahdr.__file__).parent
EXAMPLE_MODULES = ("model", "dataset", "train", "test")
METRICS = (("psnr_mu", "PSNR-μ"), ("psnr_l", "PSNR-L"), ("ssim_mu", "SSIM-μ"), ("ssim_l", "SSIM-L"))


def load_example(example_dir: Path = EXAMPLE_DIR) -> tuple[ModuleType, ModuleType]:
    """Import the example's ``train`` and ``test`` scripts, which import ``model`` / ``dataset`` by flat name.

    Those names (and ``test``, a stdlib package) are taken out of ``sys.modules`` only while importing.
    """
    if not (example_dir / "train.py").exists():
        raise FileNotFoundError(
            f"{example_dir} has no train.py: the paired runs use an AHDR training repository laid out as "
            "examples/ahdr (model.py, dataset.py, train.py, test.py); pass --example_dir <that folder>"
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


@dataclass
class Training:
    """What every run of an experiment shares: data, steps, optimisation, the AHDR's width and the
    device (``train.py``'s and ``test.py``'s ``--device``; the default:
    :func:`~semkt_plugin.diagnostics.runtime.resolve_device`)."""

    data: Path
    steps: int = 600
    batchsize: int = 2
    crop: int = 64
    lr: float = 5e-4
    nFeat: int = 16
    growthRate: int = 8
    nDenselayer: int = 3
    example_dir: Path = EXAMPLE_DIR
    device: str = field(default_factory=lambda: str(resolve_device()))

    def model_args(self) -> list[str]:
        return ["--nFeat", str(self.nFeat), "--growthRate", str(self.growthRate),
                "--nDenselayer", str(self.nDenselayer)]

    def train_args(self) -> list[str]:
        return ["--data_dir", str(self.data), "--steps", str(self.steps), "--batchsize", str(self.batchsize),
                "--crop", str(self.crop), "--lr", str(self.lr), *self.model_args(), "--device", self.device]

    def describe_model(self) -> str:
        """The model ``train.py`` builds with these settings, in words: class, where from, width, parameters."""
        train, _ = load_example(self.example_dir)
        model = train.AHDR(train.parse_args(["--data_dir", str(self.data), *self.model_args()]))
        where = "the example" if self.example_dir == EXAMPLE_DIR else str(self.example_dir)
        return describe_model(model, f"{where}, nFeat {self.nFeat}, growthRate {self.growthRate}, "
                                     f"nDenselayer {self.nDenselayer}")


@dataclass
class Variant:
    """One arm of the experiment.

    Attributes:
        name: its row in the tables.
        semkt: ``None`` trains the model alone, else the strategy's settings it changes (``{}``: its defaults).
        strategy: which semkt strategy (``wrap(strategy=...)``).
        args: further ``train.py`` arguments, e.g. ``["--labelled_fraction", "0.25"]``.
        pairs_with: the arm its gains are measured against (``None``: the experiment's baseline).
    """

    name: str
    semkt: dict[str, Any] | None = field(default=None)
    strategy: str = "skt"
    args: list[str] = field(default_factory=list)
    pairs_with: str | None = None


def run(train: ModuleType, test: ModuleType, setup: Training, variant: Variant, seed: int, run_dir: Path) -> dict:
    """Train and test one variant at one seed in ``run_dir``; reuse ``run_dir/run.json`` if it has these settings.

    Returns:
        ``{"seed", "variant", "args", "train": train.main's summary, "test": test.main's metrics, "results_dir",
        "threads"}``; ``threads`` is the CPU thread count it trained with (CPU convolutions round differently
        with it, so a pair is exact only at one count).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    args = [*setup.train_args(), *variant.args, "--seed", str(seed), "--trained_model_dir", str(run_dir)]
    if variant.semkt is not None:
        config = run_dir / "semkt.json"
        config.write_text(json.dumps(variant.semkt, sort_keys=True) + "\n")
        args += ["--semkt", "--semkt_config", str(config)]
        if variant.strategy != "skt":  # left out for the default, so records of earlier runs still match
            args += ["--strategy", variant.strategy]
    record = run_dir / "run.json"
    if record.exists():
        done = json.loads(record.read_text())
        if done["args"] == args and done.get("semkt") == variant.semkt:
            return done
    summary = train.main(args)
    metrics = test.main(["--data_dir", str(setup.data), "--trained_model_dir", str(run_dir),
                         "--result_dir", str(run_dir / "results"), *setup.model_args(), "--device", setup.device])
    done = {"seed": seed, "variant": variant.name, "args": args, "semkt": variant.semkt, "train": summary,
            "test": metrics, "results_dir": str(run_dir / "results"), "threads": torch.get_num_threads()}
    record.write_text(json.dumps(done) + "\n")  # written last: a run cut short is trained again
    return done


def paired_runs(setup: Training, variants: list[Variant], seeds: list[int], out: Path) -> dict[str, list[dict]]:
    """Every variant at every seed (seed by seed, so a cut-short experiment has whole pairs): name → runs."""
    train, test = load_example(setup.example_dir)
    runs: dict[str, list[dict]] = {v.name: [] for v in variants}
    for seed in seeds:
        for variant in variants:
            slug = "".join(c if c.isalnum() else "_" for c in variant.name.lower()).strip("_")
            runs[variant.name].append(run(train, test, setup, variant, seed, out / f"seed{seed}" / slug))
    return runs
