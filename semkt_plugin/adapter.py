"""What semkt needs to know about a third-party HDR model: where to hook, where its output is, which domain.

An :class:`Adapter` is plain data. Built-in ones live in ``semkt_adapters``;
any other repository is supported by a dict, YAML or TOML file of the same fields
(:meth:`Adapter.from_dict`, :meth:`Adapter.from_file`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .validation import check

Domain = Literal["srgb", "raw"]


@dataclass(frozen=True)
class HookPoint:
    """One feature of the ORM that a SKAM stage aligns with the teacher.

    Attributes:
        path: module path exactly as ``model.named_modules()`` prints it (``"RDB3"``, ``"layers.0.dilated_conv"``).
        kind: ``"forward"`` captures the module's output; ``"pre"`` captures its input (the tensor that reaches it).
        select: when the output (or, for ``"pre"``, the positional inputs) is a tuple or list, which element to take.
        call: which call to keep when the module runs several times in one forward (a conv shared by the
            frames fires once per frame): ``0``-based, or ``-1`` for the last.
        layout: ``"map"`` for ``(B, C, H, W)``; ``"tokens"`` for ``(B, L, C)`` transformer tokens, turned into a
            map of ``L = h·w`` cells laid out row by row, ``h/w`` taken from the model output's aspect.
        frames: when the module sees the frames folded into the batch, ``(B·frames, C, H, W)``, how many
            frames; :attr:`frame` is the one kept.
        frame: index of the frame kept when ``frames > 1`` (the reference frame, usually).
        channels: channels of the captured map; ``None`` infers them from the module's layers
            (``out_channels`` of the last one for ``"forward"``, ``in_channels`` of the first for ``"pre"``).
    """

    path: str
    kind: Literal["forward", "pre"] = "forward"
    select: int = 0
    call: int = -1
    layout: Literal["map", "tokens"] = "map"
    frames: int = 1
    frame: int = 0
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.call < -1:
            raise ValueError(f"HookPoint {self.path!r}: call must be a 0-based index or -1 (the last), got {self.call}")
        check(f"HookPoint {self.path!r}: kind", self.kind, one_of=("forward", "pre"))
        check(f"HookPoint {self.path!r}: layout", self.layout, one_of=("map", "tokens"))
        if self.frames < 1 or not -self.frames <= self.frame < self.frames:
            raise ValueError(f"HookPoint {self.path!r}: frame {self.frame} is not one of {self.frames} frames")


@dataclass(frozen=True)
class Adapter:
    """How semkt attaches to one model class.

    Attributes:
        name: the name users pass to ``wrap(model, adapter=name)``.
        hooks: the ORM features aligned by SKAM, shallow to deep; one SKAM stage each.
        output: where ``H_in`` is in the model's return value: ``None`` the value itself, an ``int`` a tuple
            index, a ``str`` a dict key.
        domain: ``"srgb"`` for linear RGB HDR, ``"raw"`` for packed RGGB (4 channels) or a Bayer mosaic (1 channel).
        scale: ``H_in / scale`` is the linear HDR at roughly ``[0, 1]`` (TMRNet's RAW output: 16).
        negative: what the domain transfer does with values below zero: ``"error"`` (a sigmoid model never
            makes them, so they mean a wrong adapter) or ``"clamp"`` (models without an output activation).
        bayer: Bayer pattern of RAW output (``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``).
        description: one line for ``semkt adapters``.
        config: overrides of :class:`~semkt_plugin.Settings` fields of any strategy that suit this model.
        source: where the adapter came from (filled in by the registry).
    """

    name: str
    hooks: tuple[HookPoint, ...]
    output: int | str | None = None
    domain: Domain = "srgb"
    scale: float = 1.0
    negative: Literal["error", "clamp"] = "error"
    bayer: str = "RGGB"
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hooks", tuple(self.hooks))
        if not self.name:
            raise ValueError("Adapter needs a non-empty name")
        check(f"Adapter {self.name!r}: domain", self.domain, one_of=("srgb", "raw"))
        check(f"Adapter {self.name!r}: negative", self.negative, one_of=("error", "clamp"))
        check(f"Adapter {self.name!r}: scale", self.scale, above=0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Adapter:
        """Build an adapter from plain data; ``hooks`` may be dicts or bare module paths."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Adapter fields {sorted(unknown)} are unknown; known fields: {sorted(known)}")
        hooks = tuple(HookPoint(h) if isinstance(h, str) else HookPoint(**h) for h in data.get("hooks", ()))
        return cls(**{**data, "hooks": hooks})

    @classmethod
    def from_file(cls, path: str | Path) -> Adapter:
        """Read an adapter from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix == ".json":
            import json

            data = json.loads(text)
        else:
            raise ValueError(f"{path}: adapter files are .yaml, .yml, .toml or .json")
        return cls.from_dict({"source": str(path), **data})

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back."""
        return {**dataclasses.asdict(self), "config": dict(self.config)}
