"""The ``semkt`` command: ``demo``, ``verdict``, ``adapters``, ``check``, ``balance``, ``probe``."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .diagnostics.runtime import (
    CHECK_DEVICE_HELP,
    DEVICE_HELP,
    DefaultsHelp,
    describe_model,
    describe_skb,
    device_arg,
    header,
    named_settings,
    resolve_device,
)
from .pretrained import OFFLINE


def load_object(spec: str, option: str = "--model") -> Any:
    """``"pkg.module:Name"`` or ``"path/to/file.py:Name"`` → the object (``option`` names the flag in errors)."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise SystemExit(f"{option} wants MODULE:NAME or FILE.py:NAME, got {spec!r}")
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.is_file():
            raise SystemExit(f"{option} {spec}: no file {path}")
        sys.path.insert(0, str(path.parent))  # the file may import its neighbours, as in its own repo
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, name):
        raise SystemExit(f"{option} {spec}: {target} has no {name!r}")
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


def _factory_model(spec: str, kwargs: str, namespace: bool) -> Any:
    """``--model`` called with ``--kwargs`` (as one ``argparse.Namespace`` with ``--namespace``)."""
    factory = load_object(spec)
    kwargs = json.loads(kwargs)
    return factory(argparse.Namespace(**kwargs)) if namespace else factory(**kwargs)


def cmd_check(args: argparse.Namespace) -> int:
    import torch

    from .diagnostics.check import check_adapter

    device = resolve_device(args.device)
    model = _factory_model(args.model, args.kwargs, args.namespace).to(device)
    print(header(device, describe_model(model, args.model)))
    inputs = [torch.rand(shape, device=device) for shape in args.input]
    report = check_adapter(model, args.adapter, inputs)
    print(report)
    return 0 if report.ok else 1


EXAMPLE_AHDR = {"nChannel": 6, "nDenselayer": 3, "nFeat": 16, "growthRate": 8}  # `semkt demo`'s narrow AHDR


def _model(args: argparse.Namespace) -> tuple[Any, str]:
    """The model of ``--model`` (default: the example AHDR, built and initialised as its train.py does) in training
    mode, seeded with ``--seed``, and its name."""
    import torch

    from .reproduction.paired import EXAMPLE_DIR, load_example

    torch.manual_seed(args.seed)
    if args.model is not None:
        model = _factory_model(args.model, args.kwargs, args.namespace)
        return model.train(), describe_model(model, args.model)
    train, _ = load_example(EXAMPLE_DIR)
    width = {**EXAMPLE_AHDR, **json.loads(args.kwargs)}
    model = train.AHDR(argparse.Namespace(**width))
    model.apply(train.weights_init_kaiming)
    return model.train(), describe_model(model, f"the example, {', '.join(f'{k} {v}' for k, v in width.items())}")


def kalantari_batches(data: Path, crop: int, batchsize: int) -> Callable[..., Iterable]:
    """The default ``--batches``: shuffled random ``crop²`` patches of ``<data>/Training`` with flips, as the example
    trains, in AHDR's input order: ``(x1, x2, x3, hdr)``, each frame ``[LDR, LDR^2.2/t]``."""
    import torch
    from torch.utils.data import DataLoader

    from .reproduction.kalantari import KalantariDataset

    def batches(seed: int, device: Any) -> Iterable:  # on the CPU: the run moves each batch to the device
        return DataLoader(KalantariDataset(data, "Training", crop=crop, augment=True, seed=seed),
                          batch_size=batchsize, shuffle=True, generator=torch.Generator().manual_seed(seed))

    return batches


def _data(args: argparse.Namespace, build: Callable[[], Path]) -> Path | None:
    """The data folder of the default batches: ``--data``, else ``build()``; ``None`` with ``--batches``."""
    if args.batches is not None:
        if args.data is not None:
            raise SystemExit("--data feeds the default batches; with --batches your function makes them: drop --data")
        return None
    return Path(args.data) if args.data else build()


def _batches(args: argparse.Namespace, device: Any, data: Path | None) -> Iterable:
    """``--batches``' batches, else the default's on ``data``."""
    if args.batches is None:
        return kalantari_batches(data, args.crop, args.batchsize)(seed=args.seed, device=device)
    batches = load_object(args.batches, "--batches")(seed=args.seed, device=device)
    if not isinstance(batches, Iterable):
        raise SystemExit(f"--batches {args.batches} returned a {type(batches).__name__}, not an iterable of "
                         "(*inputs, target) batches")
    return batches


def _loss(args: argparse.Namespace) -> Callable[[Any, Any], Any]:
    """``--loss``, or AHDRNet's: the L1 of the μ-law tone maps of the adapter's output and the target."""
    import torch

    from .domain import mu_law
    from .registry import get_adapter
    from .strategies.base import select_output

    if args.loss is not None:
        return load_object(args.loss, "--loss")
    where = get_adapter(args.adapter).output

    def ahdr_loss(output: Any, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.l1_loss(mu_law(select_output(output, where)), mu_law(target))

    return ahdr_loss


def _write(out: Path, name: str, args: argparse.Namespace, device: Any, data: Path | None, report: Any) -> None:
    settings = {**vars(args), "device": str(device), "data": str(data) if data else None}
    (out / f"{name}.json").write_text(
        json.dumps({"settings": settings, **json.loads(report.to_json())}, indent=1) + "\n"
    )
    report.plot(out / f"{name}.png")
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.png'}")


def _training_run(args: argparse.Namespace, default_data: Callable[[Path], Path]
                  ) -> tuple[Any, Path, Path | None, Any, str, Any]:
    """What ``balance`` and ``probe`` train on: the device, the output folder, the data (``default_data(out)``
    unless ``--data`` or ``--batches``), the model on the device (before ``wrap``: the plugin and the probe's
    teachers follow it) with its printed name, and the batches."""
    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _data(args, lambda: default_data(out))
    model, name = _model(args)
    model.to(device)
    return device, out, data, model, name, _batches(args, device, data)


def cmd_balance(args: argparse.Namespace) -> int:
    import torch

    from .diagnostics.balance import run_balance
    from .reproduction.synth import generate_dataset
    from .wrapping import wrap

    device, out, data, model, name, batches = _training_run(
        args, lambda out: generate_dataset(out / "data", n_train=8, n_test=1, size=(96, 96), seed=args.seed))
    # every term from the first step: the balance is measured on all of them
    settings = {**OFFLINE, "distill_start": 0, "distill_warmup": 0, **json.loads(args.config)}
    skt = wrap(model, args.adapter, **settings).to(device)
    print(header(device, name, describe_skb(settings["skb_weights"], settings.get("skb_arch"))))
    optimizer = torch.optim.Adam([*model.parameters(), *skt.parameters()], lr=args.lr)
    report = run_balance(model, skt, batches, _loss(args), optimizer=optimizer, steps=args.steps, every=args.every)
    print(report.table())
    _write(out, "balance", args, device, data, report)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .diagnostics.probe import ARMS, CONTROL, run_probe
    from .reproduction.brackets import generate_real_dataset
    from .strategies.skt import SKTConfig

    device, out, data, model, name, batches = _training_run(
        args, lambda out: generate_real_dataset(out / "data", eval_split="validation", seed=0))
    config = SKTConfig(**{**OFFLINE, "seed": args.seed, **json.loads(args.config)})
    print(header(device, name, describe_skb(config.skb_weights, config.skb_arch)))
    arms = {**ARMS, **(CONTROL if args.truth else {}), **dict(named_settings(a, "--arm") for a in args.arm)}
    report = run_probe(model, args.adapter, batches, _loss(args), steps=args.steps, arms=arms, config=config,
                       lr=args.lr, windows=args.windows)
    print(report.table())
    _write(out, "probe", args, device, data, report)
    return 0


def cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .reproduction.demo import main as demo_main

    demo_main(list(rest))
    return 0


def cmd_verdict(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .reproduction.verdict import main as verdict_main

    verdict_main(list(rest))
    return 0


BATCHES_HELP = (
    "MODULE:FUNC or FILE.py:FUNC making the training batches, called once as FUNC(seed=<--seed>, "
    "device=<torch.device of --device>). It returns an iterable of batches, each a tuple or list (*inputs, target): "
    "the model runs as model(*inputs), and target is what the model's output is compared with (linear HDR; RAW for "
    "a RAW adapter). The iterable is cycled when it runs out (a one-shot iterator must hold --steps batches), and "
    "every tensor in a batch, in tuples, lists and dicts too, is moved to --device. Default: shuffled random "
    "--crop² patches of <--data>/Training, --batchsize a batch, in AHDR's input order (x1, x2, x3, hdr), each frame "
    "[LDR, LDR^2.2/t]")
LOSS_HELP = ("MODULE:FUNC or FILE.py:FUNC, the model's own loss: FUNC(output, target) -> scalar tensor, output as "
             "model(*inputs) returns it. Default: AHDRNet's, the L1 of the μ-law tone maps (μ = 5000) of the "
             "adapter's output and the target")
MODEL_HELP = ("MODULE:FACTORY or FILE.py:FACTORY building the model from --kwargs (it must take the batches' inputs "
              "and give what --loss and the adapter read); default: the example AHDR, narrow as in `semkt demo`, "
              "initialised as its train.py does")


def _model_options(parser: argparse.ArgumentParser, data: str) -> None:
    """What ``balance`` and ``probe`` share: the model, its batches and loss, the adapter, the device."""
    parser.add_argument("--model", default=None, help=MODEL_HELP)
    parser.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the factory (for the example AHDR: "
                                                       f"changes to {json.dumps(EXAMPLE_AHDR)})")
    parser.add_argument("--namespace", action="store_true",
                        help="pass --kwargs as one argparse.Namespace, for constructors like AHDR(args)")
    parser.add_argument("--adapter", default="ahdr", help="adapter name or .yaml/.toml/.json file")
    parser.add_argument("--batches", default=None, help=BATCHES_HELP)
    parser.add_argument("--loss", default=None, help=LOSS_HELP)
    parser.add_argument("--data", default=None, help=f"Kalantari-layout folder with Training/, for the default "
                                                     f"batches; default: {data}")
    parser.add_argument("--crop", type=int, default=64, help="patch size of the default batches")
    parser.add_argument("--batchsize", type=int, default=2, help="batch size of the default batches")
    parser.add_argument("--device", type=device_arg, default=None, help=DEVICE_HELP)


def _run_options(parser: argparse.ArgumentParser, command: str, config_help: str, steps: int, lr_help: str,
                 seed_help: str, steps_help: str = "") -> None:
    """The training run's options of ``balance`` and ``probe``: semkt's settings (``config_help`` with ``{}`` for
    the offline settings), steps, learning rate, seed, output folder."""
    parser.add_argument("--config", default="{}",
                        help="JSON of SKTConfig fields " + config_help.format(json.dumps(OFFLINE)))
    parser.add_argument("--steps", type=int, default=steps, help="training steps" + steps_help)
    parser.add_argument("--lr", type=float, default=5e-4, help=lr_help)
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--out", default=f"semkt_{command}", help=f"folder for {command}.json and {command}.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semkt", description="Semantic Knowledge Transfer for HDR models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train AHDR with and without semkt on real-content scenes (exposure brackets from "
                                "real HDR photographs) and compare (`semkt demo --help` for options)", add_help=False)
    sub.add_parser("verdict", help="paired seeds with and without semkt on real-content scenes, 95%% intervals "
                                   "(`semkt verdict --help` for options)", add_help=False)
    sub.add_parser("adapters", help="list every adapter and where it came from")
    about = "one dry forward: does an adapter fit a model?"
    check = sub.add_parser("check", help=about, description=about, formatter_class=DefaultsHelp)
    check.add_argument("--model", required=True, help="MODULE:FACTORY or FILE.py:FACTORY building the model")
    check.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the factory")
    check.add_argument("--namespace", action="store_true",
                       help="pass --kwargs as one argparse.Namespace, for constructors like AHDR(args)")
    check.add_argument("--adapter", required=True, help="adapter name or .yaml/.toml/.json file")
    check.add_argument("--input", type=_shape, action="append", required=True,
                       help="shape of one positional input, e.g. 1,6,64,64 (uniform noise); repeat per input")
    check.add_argument("--device", type=device_arg, default=None, help=CHECK_DEVICE_HELP)
    about = ("train a few steps and measure each semkt term's gradient on the model against its own loss's "
             "(ratio, cosine): for setting the λ's")
    balance = sub.add_parser("balance", help=about, description=about, formatter_class=DefaultsHelp)
    _model_options(balance, "8 generated scenes in <out>/data")
    _run_options(balance, "balance", config_help="on top of the offline SKB ({}), every term from step 0; e.g. "
                                                 "'{{\"lambda_feat\": 0.1}}'",
                 steps=50, lr_help="Adam's, as `semkt demo`", seed_help="model init, data and crops")
    balance.add_argument("--every", type=int, default=1, help="measure every this many steps")
    about = ("train the model with its own loss and, beside it, teachers with and without the SKB's priors: "
             "does this SKB give this teacher anything it can use on this data? (minutes on a GPU)")
    probe = sub.add_parser("probe", help=about, description=about, formatter_class=DefaultsHelp)
    _model_options(probe, "the real-content training scenes in <out>/data")
    _run_options(probe, "probe", config_help="every teacher starts from, on top of the offline SKB ({}); e.g. "
                                             "'{{\"skb_weights\": \"FastSAM-s.pt\"}}'",
                 steps=300, steps_help="; margins over the second half",
                 lr_help="Adam's, for the model and the teachers",
                 seed_help="model init, data, crops and the teachers' init")
    probe.add_argument("--truth", action="store_true", help="add the control: a teacher given the SKB's priors of the "
                                                             "ground truth itself")
    probe.add_argument("--arm", action="append", default=[], metavar="NAME=JSON",
                       help="one more teacher, with these settings changed (repeat), e.g. "
                            "'slim={\"teacher_stride\": 2}': its margin beside the others'")
    probe.add_argument("--windows", type=int, default=5, help="windows the second half is split into")
    args, rest = parser.parse_known_args(argv)
    if args.command in ("demo", "verdict"):
        return {"demo": cmd_demo, "verdict": cmd_verdict}[args.command](args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"adapters": cmd_adapters, "check": cmd_check, "balance": cmd_balance,
            "probe": cmd_probe}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
