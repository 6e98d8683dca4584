"""``wrap(model, adapter, strategy=...)``: attach a training scheme to an unmodified model; one extra loss term.

The user's model is neither subclassed nor edited: a strategy reads (or, for SMHDR, masks) intermediate features
through forward hooks at the adapter's hook points, and keeps its own modules in a
:class:`~semkt_plugin.strategies.base.Strategy`, whose ``parameters()`` and ``state_dict()`` hold nothing of the
model. ``skt.unwrap()`` removes the hooks and returns the same model object.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapter import Adapter
from .registry import get_adapter, get_strategy, strategies
from .settings import Settings, field_names, merge
from .strategies.base import Strategy, wrapped_by


def check_adapter_settings(adapter: Adapter) -> None:
    """An adapter's ``config`` may set any strategy's fields; a key that none has (a misspelling) is an error."""
    known = set().union(*(field_names(cls.settings_class) for cls in strategies().values()))
    for key in adapter.config:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"adapter {adapter.name!r} sets {key!r}, which no strategy's settings have{hint}")


def wrap(model: nn.Module, adapter: str | Path | Mapping[str, Any] | Adapter, config: Settings | None = None,
         skb: nn.Module | None = None, strategy: str = "skt", **overrides: Any) -> Strategy:
    """Attach a training scheme to ``model``.

    Args:
        model: the user's HDR model (the ORM), unmodified; DistributedDataParallel, ``torch.compile`` and
            single-device DataParallel wrappers are looked through. DataParallel over several GPUs is refused at
            the first training forward (use DDP).
        adapter: a registered adapter name (``"ahdr"``), an :class:`Adapter`, a dict or an adapter file.
        config: settings, an instance of the strategy's ``settings_class`` (:class:`~semkt_plugin.SKTConfig` for
            ``"skt"``); ``None`` uses its defaults with the adapter's own overrides.
        skb: an already-built SKB (shared between runs, or for tests); ``None`` loads the configured one where the
            strategy needs it.
        strategy: ``"skt"`` (Semantic Knowledge Transfer, the default), ``"smhdr"`` (curriculum semantic
            masking), ``"smarthdr"`` (semi-supervised mean teacher), or one a plugin package registers.
        overrides: settings to change, e.g. ``skb_weights="FastSAM-x.pt"``.

    Returns:
        The plugin: ``skt.loss(output, target)`` is the extra term, ``skt.parameters()`` its trainable
        parameters, ``skt.unwrap()`` gives the model back.

    Raises:
        semkt_plugin.pretrained.MissingWeights: pretrained weights the settings need (the SKB's, VGG19's) are
            neither on disk nor downloadable; one error names them all and the settings that work offline.

    Example:
        A model built inline, an adapter given as a dict, the offline stand-in SKB and a narrow teacher:

        >>> import torch
        >>> from torch import nn
        >>> from semkt_plugin import wrap
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1),
        ...                       nn.Sigmoid())
        >>> adapter = {"name": "tiny", "hooks": ["0"], "output": None, "domain": "srgb"}
        >>> skt = wrap(model, adapter, skb_weights="standin", perceptual="skb", teacher_dim=8, teacher_heads=1,
        ...            skam_latent=4, total_steps=10)
        >>> out = model(torch.rand(1, 3, 32, 32))
        >>> loss = skt.loss(out, torch.rand(1, 3, 32, 32))
        >>> loss.shape, loss.requires_grad
        (torch.Size([]), True)
        >>> sorted(skt.last_losses)
        ['color', 'content', 'feat', 'orm', 'spg', 'total']
        >>> skt.last_losses["content"]  # the distillation starts half way through total_steps
        0.0
        >>> any(p is q for p in skt.parameters() for q in model.parameters())  # the plugin's own modules only
        False
        >>> skt.unwrap() is model
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap() needs the model (an nn.Module), got {type(model).__name__}")
    if wrapped_by(model) is not None:
        raise RuntimeError("this model is already wrapped by semkt; call .unwrap() on the first wrapper before "
                           "wrapping it again")
    cls = get_strategy(strategy)
    adapter = get_adapter(adapter)
    check_adapter_settings(adapter)
    if config is not None and not isinstance(config, cls.settings_class):
        raise TypeError(f"strategy {strategy!r} takes a {cls.settings_class.__name__}, got {type(config).__name__}")
    config = merge(cls.settings_for(adapter) if config is None else config, overrides)
    # the plugin's init comes from config.seed; the user's RNG stream stays as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        skt = cls(model, adapter, config, skb)
    skt._claim()
    return skt


def unwrap(model: nn.Module) -> nn.Module:
    """Take semkt off ``model`` (or off the model behind a container): the same as ``skt.unwrap()`` on the plugin
    that wraps it, for code that kept the model but not the plugin.

    Raises:
        ValueError: ``model`` is not wrapped by semkt.

    Example:
        >>> from torch import nn
        >>> from semkt_plugin import unwrap, wrap
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Sigmoid())
        >>> skt = wrap(model, {"name": "tiny", "hooks": ["0"]}, skb_weights="standin", perceptual="skb",
        ...            teacher_dim=8, teacher_heads=1, skam_latent=4, total_steps=10)
        >>> unwrap(model) is model
        True
        >>> unwrap(model)
        Traceback (most recent call last):
        ...
        ValueError: this model is not wrapped by semkt (or was unwrapped already)
    """
    skt = wrapped_by(model)
    if skt is None:
        raise ValueError("this model is not wrapped by semkt (or was unwrapped already)")
    return skt.unwrap()
