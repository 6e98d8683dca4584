"""Capture (or, for SMHDR, mask) intermediate features of an unmodified model by module name (like timm's
``FeatureHooks``).

:class:`FeatureHooks` only read: they return ``None``, so the model computes exactly what it computed before.
Each capture is a ``clone()`` because the next layer may work in place (``LeakyReLU(inplace=True)`` after a
hooked conv), which would silently overwrite a view and break autograd. A forward pre-hook on the root model
starts a new capture round, and a forward hook that torch also calls when the forward raises drops that round's
captures at once.
:class:`FeatureMasks` write: their hooks return the masked feature, which the model then computes with.

A hooked model stays an ordinary model: ``copy.deepcopy``, ``pickle`` and ``torch.save`` of it (an EMA copy, a
whole-model checkpoint) give a model without semkt's hooks (:class:`_CopyGuard`), and a forward that
``nn.DataParallel`` replicates over several GPUs is refused with the fix (:data:`DATA_PARALLEL`).
"""
from __future__ import annotations

import difflib
import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .adapter import HookPoint


def unwrap_container(model: nn.Module) -> nn.Module:
    """The user's model behind DataParallel / DistributedDataParallel / ``torch.compile`` wrappers (hooks on it fire
    in every wrapper's forward; a DataParallel replica over several GPUs is refused when it trains)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def find_module(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` with an error that lists the closest real module names."""
    names = dict(model.named_modules())
    if path in names:
        return names[path]
    close = difflib.get_close_matches(path, [n for n in names if n], n=5, cutoff=0.4)
    hint = f"closest module names: {', '.join(close)}" if close else "no module name is close"
    raise KeyError(
        f"hook point {path!r} is not a module of {type(model).__name__} ({hint}). "
        "Fix the adapter's hook path; `semkt check` lists what fires."
    )


def _pick(value: Any, select: int, path: str) -> Tensor:
    if isinstance(value, (tuple, list)):
        if not -len(value) <= select < len(value):
            raise IndexError(f"hook point {path!r}: select={select} but the module gave {len(value)} values")
        value = value[select]
    if not isinstance(value, Tensor):
        raise TypeError(f"hook point {path!r} captured a {type(value).__name__}, not a tensor; set `select`")
    return value


def tokens_to_map(tokens: Tensor, aspect: float) -> Tensor:
    """Lay ``(B, L, C)`` transformer tokens out as a ``(B, C, h, w)`` map, row by row.

    ``h·w = L`` is the factorisation closest to the image's aspect ``H / W``; this also covers models that
    pad to a multiple of their window before tokenising.
    """
    h, _ = token_grid(tokens.shape[1], aspect)
    return rearrange(tokens, "b (h w) c -> b c h w", h=h)


def token_grid(length: int, aspect: float) -> tuple[int, int]:
    """``(h, w)`` with ``h·w = length`` closest to the aspect ``h / w = aspect``: how :func:`tokens_to_map` lays
    out ``length`` tokens."""
    divisors = [h for h in range(1, int(math.isqrt(length)) + 1) if length % h == 0]
    divisors += [length // h for h in divisors]
    h = min(divisors, key=lambda d: abs(math.log(d * d / length / aspect)))
    return h, length // h


def to_map(x: Tensor, point: HookPoint, aspect: float) -> Tensor:
    """Apply a hook point's layout rules: tokens to a map, folded frames to the kept frame.

    Args:
        x: the captured tensor, ``(B·frames, C, H, W)`` or ``(B, L, C)``.
        point: its hook point.
        aspect: ``H / W`` of the model output, for tokens.

    Returns:
        ``(B, C, h, w)``.
    """
    if point.layout == "tokens":
        if x.ndim != 3:
            raise ValueError(f"hook point {point.path!r} is declared layout='tokens' but captured {tuple(x.shape)}")
        x = tokens_to_map(x, aspect)
    if point.frames > 1:
        x = rearrange(x, "(b t) ... -> b t ...", t=point.frames)[:, point.frame]
    if x.ndim != 4:
        raise ValueError(
            f"hook point {point.path!r} captured shape {tuple(x.shape)}, not a (B, C, H, W) map; "
            "declare layout='tokens' for (B, L, C) tokens, or hook another module"
        )
    return x


def infer_channels(module: nn.Module, kind: str) -> int | None:
    """Channels a module outputs (``kind="forward"``) or takes (``"pre"``), from its layers; ``None`` if unknown."""
    attrs = ("out_channels", "out_features") if kind == "forward" else ("in_channels", "in_features")
    layers = list(module.modules())
    for layer in reversed(layers) if kind == "forward" else layers:
        for attr in attrs:
            if isinstance(getattr(layer, attr, None), int):
                return getattr(layer, attr)
        if isinstance(layer, nn.LayerNorm):
            return layer.normalized_shape[-1]
    return None


def point_channels(point: HookPoint, module: nn.Module) -> int | None:
    """The hook point's declared ``channels``, else what :func:`infer_channels` reads off ``module``."""
    return point.channels or infer_channels(module, point.kind)


def hook_channels(model: nn.Module, point: HookPoint) -> int:
    """The channels of ``point`` in ``model``, or an error that says how to declare them."""
    channels = point_channels(point, find_module(model, point.path))
    if channels is None:
        raise ValueError(f"cannot tell the channels of hook point {point.path!r} from its layers; "
                         "set HookPoint(channels=...) in the adapter")
    return channels


DATA_PARALLEL = (
    "semkt cannot train a model that nn.DataParallel replicates over several GPUs: every replica would feed the "
    "plugin's hooks a slice of the batch at once. Use DistributedDataParallel, one process per GPU "
    "(docs/training.md; docs/recipes/ has the change for each baseline's train script), or train on one GPU "
    "(CUDA_VISIBLE_DEVICES=0)."
)

# every dict in which nn.Module keeps forward hooks, keyed by handle id
_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
               "_forward_pre_hooks_with_kwargs")


class _CopyGuard:
    """The ``__getstate__`` of a module that carries semkt hooks: its state without them.

    ``copy.deepcopy``, ``pickle`` and ``torch.save`` all take a module's state from
    ``module.__getstate__()``, which finds this object in the instance's ``__dict__`` before the class's method. A
    copy of a wrapped model is thus a plain model: no hook of it feeds the original plugin, and nothing
    unpicklable is saved. The guard leaves the module when its last semkt hook does.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = weakref.ref(module)
        self.ids: set[int] = set()
        self.previous = module.__dict__.get("__getstate__")  # a user's own instance-level __getstate__

    def __call__(self) -> Any:
        module = self.module()
        state = self.previous() if self.previous is not None else type(module).__getstate__(module)
        if not isinstance(state, dict):
            return state
        state = dict(state)
        state.pop("__getstate__", None)
        for name in _HOOK_DICTS:
            if name in state:
                state[name] = OrderedDict((k, v) for k, v in state[name].items() if k not in self.ids)
        if self.previous is not None:
            state["__getstate__"] = self.previous
        return state

    @classmethod
    def add(cls, module: nn.Module, handle: RemovableHandle) -> None:
        guard = module.__dict__.get("__getstate__")
        if not isinstance(guard, cls):
            guard = module.__dict__["__getstate__"] = cls(module)
        guard.ids.add(handle.id)

    @classmethod
    def discard(cls, module: nn.Module, handle: RemovableHandle) -> None:
        guard = module.__dict__.get("__getstate__")
        if isinstance(guard, cls):
            guard.ids.discard(handle.id)
            if not guard.ids:
                if guard.previous is None:
                    del module.__dict__["__getstate__"]
                else:
                    module.__dict__["__getstate__"] = guard.previous


class _PointHooks:
    """Hooks at the hook points' modules, and a pre-hook and a hook on the root model around each forward.

    A point's hook counts the module's calls in the round and acts on the ``call``-th one (every call for
    ``call=-1``): :meth:`_on_call` gets the module's output (its positional inputs for ``kind="pre"``), and what
    it returns replaces them (``None``: unchanged). Subclasses say when the hooks listen and what a call does.
    """

    def __init__(self, model: nn.Module, points: Sequence[HookPoint]) -> None:
        self.model = unwrap_container(model)
        self.points = tuple(points)
        self.calls = [0] * len(self.points)
        self.modules = [find_module(self.model, p.path) for p in self.points]
        self.handles: list[tuple[nn.Module, RemovableHandle]] = []
        self._add(self.model, self.model.register_forward_pre_hook(self._start_round))
        self._add(self.model, self.model.register_forward_hook(self._end_round, always_call=True))
        for i, (point, module) in enumerate(zip(self.points, self.modules)):
            if point.kind == "pre":
                self._add(module, module.register_forward_pre_hook(self._hook(i, input_side=True)))
            else:
                self._add(module, module.register_forward_hook(self._hook(i, input_side=False)))

    def _add(self, module: nn.Module, handle: RemovableHandle) -> None:
        self.handles.append((module, handle))
        _CopyGuard.add(module, handle)

    def _start_round(self, module: nn.Module, args: Any) -> None:
        # a DataParallel replica shares the original's hook dicts but is another object (torch marks it)
        if getattr(module, "_is_replica", False) and torch.is_grad_enabled():
            raise RuntimeError(DATA_PARALLEL)
        self._new_round(module, args)

    def _new_round(self, module: nn.Module, args: Any) -> None:
        raise NotImplementedError

    def _end_round(self, module: nn.Module, args: Any, output: Any) -> None:
        raise NotImplementedError

    def _listening(self) -> bool:
        raise NotImplementedError

    def _on_call(self, i: int, value: Any) -> Any:
        raise NotImplementedError

    def _hook(self, i: int, input_side: bool):
        point = self.points[i]

        def hook(module: nn.Module, args: Any, output: Any = None) -> Any:
            if not self._listening():
                return None
            n = self.calls[i]
            self.calls[i] += 1
            if point.call >= 0 and n != point.call:
                return None
            return self._on_call(i, args if input_side else output)

        if input_side:
            return lambda module, args: hook(module, args)
        return hook

    def remove(self) -> None:
        """Remove every hook."""
        for module, handle in self.handles:
            handle.remove()
            _CopyGuard.discard(module, handle)
        self.handles.clear()


class FeatureHooks(_PointHooks):
    """Forward (or pre-forward) hooks at named modules that keep one clone per hook point per forward.

    Args:
        model: the model (DDP, single-device DataParallel and compiled wrappers are looked through).
        points: where to hook.

    Attributes:
        active: capture only while ``True`` (the owner turns it off for steps that will not read the features, so
            the clones cost nothing there).
    """

    def __init__(self, model: nn.Module, points: Sequence[HookPoint]) -> None:
        self.active = True
        self.captured: dict[int, Tensor] = {}
        super().__init__(model, points)

    def _new_round(self, module: nn.Module, args: Any) -> None:
        self.clear()

    def _end_round(self, module: nn.Module, args: Any, output: Any) -> None:
        if output is None:  # torch passes None when the forward raised: its captures will never be used
            self.clear()

    def _listening(self) -> bool:
        return self.active and torch.is_grad_enabled()

    def _on_call(self, i: int, value: Any) -> None:
        point = self.points[i]
        self.captured[i] = _pick(value, point.select, point.path).clone()

    def clear(self) -> None:
        """Drop every capture (frees the autograd graph they hold)."""
        self.captured.clear()
        self.calls = [0] * len(self.points)

    def maps(self, aspect: float) -> list[Tensor]:
        """The captured features as ``(B, C, h, w)`` maps, in hook-point order.

        Args:
            aspect: ``H / W`` of the model output (to lay out tokens).
        """
        out = []
        for i, point in enumerate(self.points):
            if i not in self.captured:
                raise RuntimeError(
                    f"hook point {point.path!r} did not fire in the last forward "
                    f"(fired {self.calls[i]} times, call={point.call} wanted). Is the module used in forward? "
                    "Was the forward run under torch.no_grad()? Was the model compiled and run before wrap()? "
                    "Then call torch._dynamo.reset() after wrap(). Run `semkt check` to see what fires."
                )
            out.append(to_map(self.captured[i], point, aspect))
        return out

    def remove(self) -> None:
        """Remove every hook and capture."""
        super().remove()
        self.clear()


class FeatureMasks(_PointHooks):
    """Forward (or pre-forward) hooks that multiply the features at named modules by a mask (SMHDR's masking).

    Unlike :class:`FeatureHooks`, these hooks change what the model computes: a forward hook returns the masked
    output, a pre-hook the positional inputs with the masked one in place. In a tuple or list only the
    ``select``-ed element is replaced. Only the ``call``-th call of a module is masked; ``call=-1`` masks every call,
    because a hook cannot tell which call is the last before the forward ends (for a module that runs once, the
    only call is the last). The model's code and parameters stay as they are, and :meth:`remove` leaves no hook.

    Args:
        model: the model (DDP, single-device DataParallel and compiled wrappers are looked through).
        points: where to mask.
        mask_fn: ``mask_fn(i, x)`` for hook point ``i``: ``x`` is the feature as maps ``(B, frames, C, h, w)``
            (``(B·frames, C, H, W)`` split into its frames; ``(B, L, C)`` tokens laid out as :func:`tokens_to_map`
            does at :attr:`aspect`); returns the map to multiply with, ``(B, 1 or frames, 1, h, w)``.
        begin: called at the start of every forward of the root model; returns whether that forward is masked.
        abort: called when a masked forward raises, to undo what ``begin`` drew for it (``None``: nothing to undo).

    Attributes:
        aspect: ``H / W`` of the image, to lay out tokens; the owner sets it before the forward.
    """

    def __init__(self, model: nn.Module, points: Sequence[HookPoint], mask_fn: Callable[[int, Tensor], Tensor],
                 begin: Callable[[], bool], abort: Callable[[], None] | None = None) -> None:
        self.mask_fn, self.begin, self.abort = mask_fn, begin, abort
        self.aspect = 1.0
        self.on = False
        super().__init__(model, points)

    def _new_round(self, module: nn.Module, args: Any) -> None:
        self.calls = [0] * len(self.points)
        self.on = False  # stays off if begin() raises
        self.on = bool(self.begin())

    def _end_round(self, module: nn.Module, args: Any, output: Any) -> None:
        if output is None and self.on and self.abort is not None:  # torch passes None when the forward raised
            self.abort()
        self.on = False  # a submodule called outside the root model's forward is never masked

    def _listening(self) -> bool:
        return self.on

    def _on_call(self, i: int, value: Any) -> Any:
        point = self.points[i]
        masked = self._mask(i, _pick(value, point.select, point.path))
        if not isinstance(value, (tuple, list)):
            return masked
        items = list(value)
        items[point.select] = masked
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # namedtuples too

    def _mask(self, i: int, x: Tensor) -> Tensor:
        """``x`` (``(B·frames, C, h, w)`` or ``(B·frames, L, C)``) times ``mask_fn``'s map, in ``x``'s layout."""
        point = self.points[i]
        if point.layout == "tokens":
            if x.ndim != 3:
                raise ValueError(f"hook point {point.path!r} is declared layout='tokens' but gave {tuple(x.shape)}")
            maps = tokens_to_map(x, self.aspect)
        elif x.ndim == 4:
            maps = x
        else:
            raise ValueError(f"hook point {point.path!r} gave shape {tuple(x.shape)}, not a (B, C, H, W) map; "
                             "declare layout='tokens' for (B, L, C) tokens, or hook another module")
        n, c, h, w = maps.shape
        if n % point.frames:
            raise ValueError(f"hook point {point.path!r} declares frames={point.frames} but its batch is {n}")
        b = n // point.frames
        mask = self.mask_fn(i, rearrange(maps, "(b t) c h w -> b t c h w", t=point.frames))
        mask = rearrange(mask.expand(b, point.frames, 1, h, w), "b t 1 h w -> (b t) 1 h w").to(x.dtype)
        if point.layout == "tokens":
            return x * rearrange(mask, "n 1 h w -> n (h w) 1")  # the layout tokens_to_map reads
        return x * mask

    def remove(self) -> None:
        """Remove every hook."""
        super().remove()
        self.on = False
