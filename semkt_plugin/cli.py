"""The ``semkt`` command: ``demo``, ``adapters``, ``check``."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Sequence


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
        raise argparse.ArgumentTypeError(f"a shape is comma-separated integers like 1,6,64,64, got {text!r}")


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


def cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .eval.demo import main as demo_main

    demo_main(list(rest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semkt", description="Semantic Knowledge Transfer for HDR models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="train AHDR with and without semkt on synthetic scenes and compare "
                                "(`semkt demo --help` for options)", add_help=False)
    sub.add_parser("adapters", help="list every adapter and where it came from")
    check = sub.add_parser("check", help="one dry forward: does an adapter fit a model?")
    check.add_argument("--model", required=True, help="MODULE:FACTORY or FILE.py:FACTORY building the model")
    check.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the factory")
    check.add_argument("--namespace", action="store_true",
                       help="pass --kwargs as one argparse.Namespace, for constructors like AHDR(args)")
    check.add_argument("--adapter", required=True, help="adapter name or .yaml/.toml/.json file")
    check.add_argument("--input", type=_shape, action="append", required=True,
                       help="shape of one positional input, e.g. 1,6,64,64; repeat per input")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        return cmd_demo(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return {"adapters": cmd_adapters, "check": cmd_check}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
