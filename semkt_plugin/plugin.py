"""``wrap(model, adapter, strategy=...)``: attach a training scheme to an unmodified model; one extra loss term.

The user's model is neither subclassed nor edited: a strategy reads (or, for SMHDR, masks) intermediate features
through forward hooks at the adapter's hook points, and keeps its own modules in a :class:`Strategy`, whose
``parameters()`` and ``state_dict()`` hold nothing of the model. ``unwrap()`` removes the hooks and returns the
same model object. The strategies live in :mod:`semkt_plugin.strategies`, one module each.
"""
from __future__ import annotations

import dataclasses
import weakref
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import Tensor, nn

from .adapter import Adapter
from .config import merge
from .domain import DomainTransfer
from .hooks import unwrap_container
from .registry import get_adapter

_wrapped: "weakref.WeakKeyDictionary[nn.Module, Strategy]" = weakref.WeakKeyDictionary()


def select_output(output: Any, where: int | str | None) -> Tensor:
    """H_in from a model's return value: the value itself, a tuple index or a dict key."""
    value = output
    if where is not None and isinstance(output, Tensor):
        raise ValueError(
            f"the adapter takes H_in from output[{where!r}] of what the model returned, but loss() got a single "
            f"tensor {tuple(output.shape)}: pass the model's whole return value (skt.loss(out, gt), not "
            f"skt.loss(out[{where!r}], gt)), or fix the adapter's `output` if the model returns one tensor"
        )
    if where is not None:
        try:
            value = output[where]
        except (IndexError, KeyError, TypeError) as err:
            raise ValueError(
                f"the adapter says H_in is output[{where!r}] but the model returned {type(output).__name__}"
                f"{f' of length {len(output)}' if hasattr(output, '__len__') else ''}; fix the adapter's `output`"
            ) from err
    if not isinstance(value, Tensor):
        raise TypeError(
            f"H_in must be a tensor but the model's output{'' if where is None else f'[{where!r}]'} is "
            f"{type(value).__name__}; set the adapter's `output` to the tensor's index or key"
        )
    return value


def check_pair(h: Tensor, target: Tensor, param: Tensor) -> None:
    """Errors that name the fix when H_in, its target and the plugin's parameters do not fit together."""
    if h.device != param.device:
        raise RuntimeError(
            f"the model's output is on {h.device} but the plugin is on {param.device}; "
            f"call skt.to({str(h.device)!r}) after moving the model"
        )
    if target.device != h.device:
        raise RuntimeError(f"the target is on {target.device} but the model's output is on {h.device}; "
                           f"move the target with target.to({str(h.device)!r})")
    if target.shape != h.shape:
        raise ValueError(f"target shape {tuple(target.shape)} differs from H_in's {tuple(h.shape)}; "
                         "the target must be in the model output's domain, scale and size")
    if param.dtype != torch.float32:
        raise TypeError(
            f"the plugin's parameters are {param.dtype}; keep them in float32 (skt.float()) and use "
            "torch.autocast for mixed precision: the μ-law and the losses need float32"
        )


class Strategy(nn.Module):
    """What every training scheme shares: the model held outside ``parameters()`` and ``state_dict()``, frozen
    helper networks that follow ``.to()``, the last loss components, and ``unwrap``.

    A strategy sets ``name`` and ``config_class`` (a dataclass of its settings, with the μ of T as ``mu``), builds
    its modules and hooks in ``__init__(model, adapter, config, skb)`` and ends it with :meth:`_follow_model`, computes its term in ``loss(output, target)``, lists what it hooks
    in :meth:`hooked` (for ``semkt check``) and removes its hooks in :meth:`_remove_hooks`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, model: nn.Module, adapter: Adapter, config: Any) -> None:
        super().__init__()
        self.adapter, self.config = adapter, config
        self._model = [model]  # a list: the model is not a submodule, so it is in neither parameters() nor state_dict()
        # frozen networks sit in a plain dict: not submodules, so out of parameters() and state_dict()
        self._aux: dict[str, Any] = {}
        self._last: dict[str, Tensor] = {}
        # T of every strategy's losses: the adapter's domain and scale, the strategy's μ
        self.transfer = DomainTransfer(adapter.domain, adapter.scale, adapter.negative, adapter.bayer, config.mu)

    def _follow_model(self) -> None:
        """Move the plugin to the model's device (the end of a strategy's ``__init__``)."""
        self.to(next(iter(unwrap_container(self.model).parameters()), torch.empty(0)).device)

    @property
    def model(self) -> nn.Module:
        """The wrapped model (the same object the user passed)."""
        return self._model[0]

    def _apply(self, fn: Callable, recurse: bool = True) -> "Strategy":
        # .to()/.cuda()/.half() reach the frozen networks too, which are kept out of parameters() and state_dict()
        super()._apply(fn, recurse)
        for module in self._aux.values():
            if isinstance(module, nn.Module):
                module._apply(fn, recurse)
        return self

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """The extra loss term for a labelled batch; add it to the model's own loss."""
        raise NotImplementedError

    def forward(self, output: Any, target: Tensor) -> Tensor:
        """Same as :meth:`loss`; a forward lets ``DDP(skt)`` average the plugin's gradients across ranks."""
        return self.loss(output, target)

    @property
    def last_losses(self) -> dict[str, float]:
        """The components of the last :meth:`loss` call (unweighted), and ``total``."""
        return {k: float(v) for k, v in self._last.items()}

    @classmethod
    def hook_plan(cls, adapter: Adapter, config: Any) -> list[tuple[str, str]]:
        """``(module path, what the strategy does there)`` for the hooks it places with these settings (read by
        ``semkt check`` before anything is built)."""
        return []

    def hooked(self) -> list[tuple[str, str]]:
        """``(module path, what the strategy does there)`` for every hook it placed on the model."""
        return type(self).hook_plan(self.adapter, self.config)

    def _remove_hooks(self) -> None:
        """Remove every hook this strategy placed on the model."""

    def unwrap(self) -> nn.Module:
        """Remove every hook and return the model, exactly as it was passed (same object, same state_dict)."""
        self._remove_hooks()
        _wrapped.pop(self.model, None)
        _wrapped.pop(unwrap_container(self.model), None)
        self._last = {}
        return self.model

    def extra_repr(self) -> str:
        return f"strategy={self.name!r}, adapter={self.adapter.name!r}"


def default_config(strategy: type[Strategy], adapter: Adapter) -> Any:
    """The strategy's defaults with the adapter's overrides of the fields that strategy has."""
    known = {f.name for f in dataclasses.fields(strategy.config_class)}
    return merge(strategy.config_class(), {k: v for k, v in adapter.config.items() if k in known})


def wrap(model: nn.Module, adapter: str | Path | Mapping[str, Any] | Adapter, config: Any | None = None,
         skb: nn.Module | None = None, strategy: str = "skt", **overrides: Any) -> Strategy:
    """Attach a training scheme to ``model``.

    Args:
        model: the user's HDR model (the ORM), unmodified; DistributedDataParallel, ``torch.compile`` and
            single-device DataParallel wrappers are looked through. DataParallel over several GPUs is refused at
            the first training forward (use DDP).
        adapter: a registered adapter name (``"ahdr"``), an :class:`Adapter`, a dict or an adapter file.
        config: settings, an instance of the strategy's ``config_class`` (:class:`~semkt_plugin.Config` for
            ``"skt"``); ``None`` uses its defaults with the adapter's own overrides.
        skb: an already-built SKB (shared between runs, or for tests); ``None`` loads the configured one where the
            strategy needs it.
        strategy: ``"skt"`` (Semantic Knowledge Transfer, the default), ``"smhdr"`` (curriculum semantic
            masking) or ``"smarthdr"`` (semi-supervised mean teacher); see :mod:`semkt_plugin.strategies`.
        overrides: settings to change, e.g. ``skb_weights="FastSAM-x.pt"``.

    Returns:
        The plugin: ``skt.loss(output, target)`` is the extra term, ``skt.parameters()`` its trainable
        parameters, ``skt.unwrap()`` gives the model back.
    """
    from .strategies import get_strategy

    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap() needs the model (an nn.Module), got {type(model).__name__}")
    core = unwrap_container(model)
    if model in _wrapped or core in _wrapped:
        raise RuntimeError("this model is already wrapped by semkt; call .unwrap() on the first wrapper before "
                           "wrapping it again")
    cls = get_strategy(strategy)
    adapter = get_adapter(adapter)
    if config is not None and not isinstance(config, cls.config_class):
        raise TypeError(f"strategy {strategy!r} takes a {cls.config_class.__name__}, got {type(config).__name__}")
    config = merge(default_config(cls, adapter) if config is None else config, overrides)
    with torch.random.fork_rng(devices=[]):  # the plugin's init comes from config.seed; the user's RNG stream stays as it was
        torch.manual_seed(config.seed)
        skt = cls(model, adapter, config, skb)
    _wrapped[model] = skt
    if core is not model:
        _wrapped[core] = skt
    return skt
