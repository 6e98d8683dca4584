"""What the ``semkt`` commands share: the device they put everything on, the names of the device, the SKB and the
model they print before they start, and the help that shows every default."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except a flag's (off) and a ``None`` default's, whose help says
    what leaving the option out does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


DEVICE_HELP = "where the model, the plugin and the batches go: cpu, cuda, cuda:N (default: cuda when " \
              "torch.cuda.is_available(), else cpu)"
CHECK_DEVICE_HELP = DEVICE_HELP.replace("the model, the plugin and the batches go", "the model and its inputs go")


def resolve_device(name: str | None = None) -> torch.device:
    """``name`` as a device this machine can use; ``None``: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``.

    Raises:
        ValueError: a name torch does not know, or a device this machine does not have; the message says what
            to pass instead.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name torch knows: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"--device {name}: CUDA is not available here ({why}); use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError):  # torch raises either (with a page of backends) for one it lacks
            raise ValueError(f"--device {name}: this torch cannot allocate on {device.type} here; use --device cpu") \
                from None
    return device


def device_arg(text: str) -> str:
    """argparse ``type`` of ``--device``: the name, checked by :func:`resolve_device` (a string, so that the
    settings a command writes stay JSON)."""
    try:
        return str(resolve_device(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def describe_device(device: torch.device | str) -> str:
    """``"cuda:0 (NVIDIA H200)"``, ``"cpu, 2 threads"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu, {threads} thread{'s' if threads > 1 else ''}"
    return str(device)


def describe_skb(weights: str | None, arch: str | None = None) -> str:
    """What an SKB setting (``skb_weights``, ``skb_arch``) loads, in words."""
    if weights is None:
        return f"random {arch} (untrained)" if arch else "none"
    if str(weights) == "standin":
        return "standin (semkt's offline stand-in)"
    path = Path(weights)
    if path.is_file():
        return str(path.resolve()) + (f" as {arch}" if arch else "")
    return f"{weights} (ultralytics' release, downloaded when not cached)"


def describe_model(model: nn.Module, spec: str | None = None) -> str:
    """Class name, where it came from (``spec``) and parameter count: ``"AHDR (mynet.py:AHDR), 45,123 parameters"``."""
    count = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__}{f' ({spec})' if spec else ''}, {count:,} parameters"


def header(device: torch.device | str, model: str, skb: str | None = None) -> str:
    """The lines a command prints before it runs: the device, the SKB (where one is read) and the model."""
    rows = [("device", describe_device(device)), *([("SKB", skb)] if skb else []), ("model", model)]
    return "\n".join(f"{name:<7} {value}" for name, value in rows)


def named_settings(spec: str, flag: str) -> tuple[str, dict[str, Any]]:
    """``"NAME=JSON"`` (a ``--variant`` or ``--arm``) → ``(NAME, settings)``; anything else exits naming ``flag``."""
    name, sep, changes = spec.partition("=")
    try:
        settings = json.loads(changes) if sep and name else None
    except json.JSONDecodeError:
        settings = None
    if not isinstance(settings, dict):
        raise SystemExit(f"{flag} wants NAME=JSON with a JSON object of settings, got {spec!r}")
    return name, settings
