"""The ``semkt`` command: ``demo``, ``verdict``, ``adapters``, ``check``, ``balance``, ``probe``."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load_object(spec: str) -> Any:
    """``"pkg.module:Name"`` or ``"path/to/file.py:Name"`` → the object."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise SystemExit(f"--model wants MODULE:NAME or FILE.py:NAME, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target).resolve()
        sys.path.insert(0, str(path.parent))  # the model file may import its neighbours, as in its own repo
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, name)


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is comma-separated integers like 1,6,64,64, got {text!r}") from None


def cmd_adapters(args: argparse.Namespace) -> int:
    from .registry import adapters

    for name, adapter in sorted(adapters().items()):
        print(f"{name:18} {adapter.domain:5} {len(adapter.hooks)} hooks  from {adapter.source}")
        if adapter.description:
            print(f"{'':18} {adapter.description}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import torch

    from .check import check_adapter

    factory = load_object(args.model)
    kwargs = json.loads(args.kwargs)
    model = factory(argparse.Namespace(**kwargs)) if args.namespace else factory(**kwargs)
    inputs = [torch.rand(shape) for shape in args.input]
    report = check_adapter(model, args.adapter, inputs)
    print(report)
    return 0 if report.ok else 1


BALANCE_AHDR = {"nChannel": 6, "nDenselayer": 3, "nFeat": 16, "growthRate": 8}  # `semkt demo`'s narrow AHDR


def _model_and_batches(args: argparse.Namespace, data: Path) -> tuple[Any, Any, Any]:
    """The model of ``--model`` (default: the example AHDR, built and initialised as its train.py does), the
    training batches of ``data``, and the task loss (AHDRNet's μ-law L1), for ``balance`` and ``probe``."""
    import torch
    from torch.utils.data import DataLoader

    from .data.kalantari import KalantariDataset
    from .domain import mu_law
    from .eval.paired import EXAMPLE_DIR, load_example
    from .registry import get_adapter
    from .strategies.base import select_output

    torch.manual_seed(args.seed)
    kwargs = json.loads(args.kwargs)
    if args.model is None:
        train, _ = load_example(EXAMPLE_DIR)
        model = train.AHDR(argparse.Namespace(**{**BALANCE_AHDR, **kwargs}))
        model.apply(train.weights_init_kaiming)
    else:
        factory = load_object(args.model)
        model = factory(argparse.Namespace(**kwargs)) if args.namespace else factory(**kwargs)
    model.train()
    loader = DataLoader(KalantariDataset(data, "Training", crop=args.crop, augment=True, seed=args.seed),
                        batch_size=args.batchsize, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    where = get_adapter(args.adapter).output

    def task_loss(output: Any, gt: torch.Tensor) -> torch.Tensor:  # AHDRNet's: L1 of the μ-law tone maps
        return torch.nn.functional.l1_loss(mu_law(select_output(output, where)), mu_law(gt))

    return model, loader, task_loss


def cmd_balance(args: argparse.Namespace) -> int:
    import torch

    from .data.synth import generate_dataset
    from .eval.balance import run_balance
    from .eval.verdict import OFFLINE
    from .wrapping import wrap

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or generate_dataset(out / "data", n_train=8, n_test=1, size=(96, 96), seed=args.seed)
    model, loader, task_loss = _model_and_batches(args, data)
    # every term from the first step: the balance is measured on all of them
    skt = wrap(model, args.adapter, **{**OFFLINE, "distill_start": 0, "distill_warmup": 0, **json.loads(args.config)})
    optimizer = torch.optim.Adam([*model.parameters(), *skt.parameters()], lr=args.lr)
    report = run_balance(model, skt, loader, task_loss, optimizer, steps=args.steps, every=args.every)
    print(report.table())
    settings = {**vars(args), "data": str(data)}
    (out / "balance.json").write_text(
        json.dumps({"settings": settings, **json.loads(report.to_json())}, indent=1) + "\n"
    )
    report.plot(out / "balance.png")
    print(f"wrote {out / 'balance.json'} and {out / 'balance.png'}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .data.brackets import generate_real_dataset
    from .eval.probe import ARMS, CONTROL, run_probe
    from .eval.verdict import OFFLINE
    from .strategies.skt import SKTConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or generate_real_dataset(out / "data", eval_split="validation", seed=0)
    model, loader, task_loss = _model_and_batches(args, data)
    config = SKTConfig(**{**OFFLINE, "seed": args.seed, **json.loads(args.config)})
    arms = {**ARMS, **(CONTROL if args.truth else {})}
    report = run_probe(model, args.adapter, loader, task_loss, steps=args.steps, arms=arms, config=config,
                       lr=args.lr, windows=args.windows)
    print(report.table())
    settings = {**vars(args), "data": str(data)}
    (out / "probe.json").write_text(json.dumps({"settings": settings, **json.loads(report.to_json())}, indent=1) + "\n")
    report.plot(out / "probe.png")
    print(f"wrote {out / 'probe.json'} and {out / 'probe.png'}")
    return 0


def cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .eval.demo import main as demo_main

    demo_main(list(rest))
    return 0


def cmd_verdict(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .eval.verdict import main as verdict_main

    verdict_main(list(rest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semkt", description="Semantic Knowledge Transfer for HDR models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train AHDR with and without semkt on synthetic scenes and compare "
                                "(`semkt demo --help` for options)", add_help=False)
    sub.add_parser("verdict", help="paired seeds with and without semkt on real-content scenes, 95%% intervals "
                                   "(`semkt verdict --help` for options)", add_help=False)
    sub.add_parser("adapters", help="list every adapter and where it came from")
    check = sub.add_parser("check", help="one dry forward: does an adapter fit a model?")
    check.add_argument("--model", required=True, help="MODULE:FACTORY or FILE.py:FACTORY building the model")
    check.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the factory")
    check.add_argument("--namespace", action="store_true",
                       help="pass --kwargs as one argparse.Namespace, for constructors like AHDR(args)")
    check.add_argument("--adapter", required=True, help="adapter name or .yaml/.toml/.json file")
    check.add_argument("--input", type=_shape, action="append", required=True,
                       help="shape of one positional input, e.g. 1,6,64,64; repeat per input")
    about = ("train a few steps and measure each semkt term's gradient on the model against its own loss's "
             "(ratio, cosine): for setting the λ's")
    balance = sub.add_parser("balance", help=about, description=about)
    balance.add_argument("--data", default=None,
                         help="Kalantari-layout folder with Training/; default: 8 synthetic scenes in <out>/data")
    balance.add_argument("--model", default=None,
                         help="MODULE:FACTORY or FILE.py:FACTORY of a model taking AHDR's inputs (three 6-channel "
                              "frames) and giving linear HDR; default: the example AHDR, narrow as in `semkt demo`")
    balance.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the factory (for the example "
                                                        f"AHDR: changes to {json.dumps(BALANCE_AHDR)})")
    balance.add_argument("--namespace", action="store_true",
                         help="pass --kwargs as one argparse.Namespace, for constructors like AHDR(args)")
    balance.add_argument("--adapter", default="ahdr", help="adapter name or .yaml/.toml/.json file")
    balance.add_argument("--config", default="{}", help="JSON of semkt Config fields, e.g. '{\"lambda_feat\": 0.1}' "
                                                        "(default here: stand-in SKB, perceptual=skb: offline)")
    balance.add_argument("--steps", type=int, default=50, help="training steps")
    balance.add_argument("--every", type=int, default=1, help="measure every this many steps")
    balance.add_argument("--crop", type=int, default=64, help="training patch size")
    balance.add_argument("--batchsize", type=int, default=2)
    balance.add_argument("--lr", type=float, default=5e-4, help="Adam's, as `semkt demo`")
    balance.add_argument("--seed", type=int, default=0, help="model init, data and crops")
    balance.add_argument("--out", default="semkt_balance", help="folder for balance.json and balance.png")
    about = ("train the model with its own loss and, beside it, teachers with and without the SKB's priors: "
             "does this SKB give this teacher anything it can use on this data? (minutes on a GPU)")
    probe = sub.add_parser("probe", help=about, description=about)
    probe.add_argument("--data", default=None, help="Kalantari-layout folder with Training/; default: the "
                                                    "real-content training scenes in <out>/data")
    probe.add_argument("--model", default=None, help="MODULE:FACTORY or FILE.py:FACTORY of a model taking AHDR's "
                                                     "inputs and giving linear HDR; default: the example AHDR, "
                                                     "narrow as in `semkt demo`")
    probe.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the factory")
    probe.add_argument("--namespace", action="store_true",
                       help="pass --kwargs as one argparse.Namespace, for constructors like AHDR(args)")
    probe.add_argument("--adapter", default="ahdr", help="adapter name or .yaml/.toml/.json file")
    probe.add_argument("--config", default="{}", help="JSON of semkt Config fields every teacher starts from, e.g. "
                                                      "'{\"skb_weights\": \"FastSAM-s.pt\"}' "
                                                      "(default here: the stand-in SKB)")
    probe.add_argument("--truth", action="store_true", help="add the control: a teacher given the SKB's priors of the "
                                                             "ground truth itself")
    probe.add_argument("--steps", type=int, default=300, help="training steps; margins over the second half")
    probe.add_argument("--windows", type=int, default=5, help="windows the second half is split into")
    probe.add_argument("--crop", type=int, default=64, help="training patch size")
    probe.add_argument("--batchsize", type=int, default=2)
    probe.add_argument("--lr", type=float, default=5e-4, help="Adam's, for the model and the teachers")
    probe.add_argument("--seed", type=int, default=0, help="model init, data, crops and the teachers' init")
    probe.add_argument("--out", default="semkt_probe", help="folder for probe.json and probe.png")
    args, rest = parser.parse_known_args(argv)
    if args.command in ("demo", "verdict"):
        return {"demo": cmd_demo, "verdict": cmd_verdict}[args.command](args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"adapters": cmd_adapters, "check": cmd_check, "balance": cmd_balance,
            "probe": cmd_probe}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
