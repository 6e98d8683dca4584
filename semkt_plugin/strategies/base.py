"""What every training scheme shares: the :class:`Strategy` base, its helpers, and the record of wrapped models.

A strategy holds the user's model outside ``parameters()`` and ``state_dict()``, keeps frozen helper networks
that follow ``.to()``, counts its training steps, opens every ``loss`` the same way (:meth:`Strategy.open`) and
states what the training loop must call around the forward (:meth:`Strategy.before_forward`,
:meth:`Strategy.after_loss`). :func:`semkt_plugin.wrap` builds one; ``unwrap()`` takes it off again.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ..adapter import Adapter
from ..domain import DomainTransfer
from ..feature_hooks import unwrap_container
from ..settings import Settings, field_names, merge

# the plugin each wrapped model is wrapped by (the model as passed, and the model behind its containers)
_wrapped: weakref.WeakKeyDictionary[nn.Module, Strategy] = weakref.WeakKeyDictionary()


def wrapped_by(model: nn.Module) -> Strategy | None:
    """The plugin that wraps ``model`` (directly or behind DDP/DataParallel/compile), or ``None``."""
    return _wrapped.get(model) or _wrapped.get(unwrap_container(model))


def select_output(output: Any, where: int | str | None) -> Tensor:
    """H_in from a model's return value: the value itself, a tuple index or a dict key."""
    if where is not None and isinstance(output, Tensor):
        raise ValueError(
            f"the adapter takes H_in from output[{where!r}] of what the model returned, but loss() got a single "
            f"tensor {tuple(output.shape)}: pass the model's whole return value (skt.loss(out, gt), not "
            f"skt.loss(out[{where!r}], gt)), or fix the adapter's `output` if the model returns one tensor"
        )
    value = output
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
    """Errors that name the fix when H_in, its target and the plugin's tensors do not fit together."""
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
    if param.is_floating_point() and param.dtype != torch.float32:
        raise TypeError(
            f"the plugin's parameters are {param.dtype}; keep them in float32 (skt.float()) and use "
            "torch.autocast for mixed precision: the μ-law and the losses need float32"
        )


def to_host(values: Mapping[str, Tensor | float]) -> dict[str, float]:
    """``values`` as Python floats, all its tensors (0-d, on one device) copied to the host in one transfer."""
    tensors = [v for v in values.values() if isinstance(v, Tensor)]
    read = iter(torch.stack(tensors).tolist() if tensors else [])
    return {k: next(read) if isinstance(v, Tensor) else float(v) for k, v in values.items()}


def _given(settings: Mapping[str, Any], point: str) -> str:
    value, total = settings["schedule"][point], settings["total_steps"]
    return f"{point}={value!r}" + (f" of total_steps={total}" if isinstance(value, float) else "")


def check_resume(saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse to resume a run (``saved``, a checkpoint's :meth:`Strategy.run_settings`) in a plugin whose run
    differs (``current``): another strategy, or a schedule point at another step."""
    if saved["strategy"] != current["strategy"]:
        raise ValueError(f"the checkpoint is of a {saved['strategy']!r} plugin, this plugin is {current['strategy']!r}"
                         f": wrap with strategy={saved['strategy']!r} to resume it")
    differ = [p for p, step in saved["steps"].items() if step != current["steps"][p]]
    if differ:
        lines = "; ".join(f"{p} is step {saved['steps'][p]} in the checkpoint's run ({_given(saved, p)}) but "
                          f"step {current['steps'][p]} in this plugin's ({_given(current, p)})" for p in differ)
        given = [(p, saved["schedule"][p], current["schedule"][p]) for p in differ]
        given.append(("total_steps", saved["total_steps"], current["total_steps"]))
        fix = ", ".join(f"{name}={value!r}" for name, value, other in given if value != other)
        raise ValueError(f"the checkpoint was saved by a run with another schedule: {lines}. Wrap with the "
                         f"checkpoint's settings ({fix}) to resume that run, or load with "
                         "skt.load_state_dict(state, strict_settings=False) to go on under this plugin's schedule")


class Opened(NamedTuple):
    """What :meth:`Strategy.open` gives every ``loss``: H_in as the model returned it, ``tone_out`` = T(H_in),
    ``tone_gt`` = T(target) (without a gradient), and which training step this call is (0-based, counted before
    this call)."""

    h_in: Tensor
    tone_out: Tensor
    tone_gt: Tensor
    step: int


class Strategy(nn.Module):
    """A training scheme attached to an unmodified model.

    A strategy sets ``name`` and ``settings_class`` (its settings, a :class:`~semkt_plugin.settings.Settings`),
    builds its modules and hooks in ``__init__(model, adapter, config, skb)`` and ends it with
    :meth:`_follow_model`, computes its term in ``loss(output, target)`` (opening with :meth:`open`), lists what
    it hooks in :meth:`hook_plan` (for ``semkt check``) and removes its hooks in :meth:`_remove_hooks`.

    The loop contract, the same for every strategy::

        skt.before_forward(**extras)        # SMHDR: regions=<the batch's region IDs>; others: nothing needed
        out = model(*inputs)
        loss = their_loss(out, gt) + skt.loss(out, gt) + skt.after_loss(**extras)   # SmartHDR: unlabelled=[...]

    ``extras`` are the batch's additional parts a strategy reads (:attr:`extras` names them); a strategy
    ignores the ones it does not read.
    """

    name: ClassVar[str]
    settings_class: ClassVar[type[Settings]]
    #: the batch extras this strategy reads in :meth:`before_forward` / :meth:`after_loss`
    extras: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, adapter: Adapter, config: Settings, skb: nn.Module | None = None) -> None:
        super().__init__()
        self.adapter, self.config = adapter, config
        self._model = [model]  # a list: the model is not a submodule, so it is in neither parameters() nor state_dict()
        # frozen networks sit in a plain dict: not submodules, so out of parameters() and state_dict()
        self._aux: dict[str, Any] = {}
        # the last loss() call's components: tensors stay on the device until last_losses reads them
        self._last: dict[str, Tensor | float] = {}
        # T of every strategy's losses: the adapter's domain and scale, the strategy's μ
        self.transfer = DomainTransfer(adapter.domain, adapter.scale, adapter.negative, adapter.bayer, config.mu)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training loss() calls
        self._step = 0  # the host's copy of `steps`: reading the buffer would wait for the GPU at every step
        self._strict_settings = True  # load_state_dict(..., strict_settings=False) lifts the check of run_settings

    @classmethod
    def settings_for(cls, adapter: Adapter) -> Settings:
        """The strategy's defaults with the adapter's overrides of the fields this strategy has."""
        known = field_names(cls.settings_class)
        return merge(cls.settings_class(), {k: v for k, v in adapter.config.items() if k in known})

    def _follow_model(self) -> None:
        """Move the plugin to the model's device (the end of a strategy's ``__init__``)."""
        self.to(next(iter(unwrap_container(self.model).parameters()), torch.empty(0)).device)

    @property
    def model(self) -> nn.Module:
        """The wrapped model (the same object the user passed)."""
        return self._model[0]

    def _apply(self, fn: Callable, recurse: bool = True) -> Strategy:
        # .to()/.cuda()/.half() reach the frozen networks too, which are kept out of parameters() and state_dict()
        super()._apply(fn, recurse)
        for module in self._aux.values():
            if isinstance(module, nn.Module):
                module._apply(fn, recurse)
        return self

    def open(self, output: Any, target: Tensor, param: Tensor) -> Opened:
        """The opening of every ``loss``: H_in from ``output``, the pair checked against the plugin's ``param``,
        both transferred by T, and, in training (grad enabled), the step counted."""
        h_in = select_output(output, self.adapter.output)
        check_pair(h_in, target, param)
        tone_out = self.transfer(h_in)
        with torch.no_grad():
            tone_gt = self.transfer(target, what="target")
        step = self._step
        if torch.is_grad_enabled():
            self.steps += 1
            self._step += 1
        return Opened(h_in, tone_out, tone_gt, step)

    def before_forward(self, **extras: Any) -> None:
        """Called by the loop before each training forward, with the batch's extras. Default: nothing."""

    def loss(self, output: Any, target: Tensor) -> Tensor:
        """The extra loss term for a labelled batch; add it to the model's own loss."""
        raise NotImplementedError

    def after_loss(self, **extras: Any) -> Tensor | float:
        """Called by the loop after :meth:`loss`, with the batch's extras; returns a further term to add to the
        loss. Default: 0."""
        return 0.0

    def forward(self, output: Any, target: Tensor) -> Tensor:
        """Same as :meth:`loss`; a forward lets ``DDP(skt)`` average the plugin's gradients across ranks."""
        return self.loss(output, target)

    @property
    def last_losses(self) -> dict[str, float]:
        """The components of the last :meth:`loss` call (unweighted), and ``total``.

        The keys are the same at every step of a run, from the first one: a term that has not started yet is 0.
        Computing the losses leaves them on the device; reading this copies them all to the host at once, one
        wait for the GPU, so read it every N steps rather than every step.
        """
        return to_host(self._last)

    def run_settings(self) -> dict[str, Any]:
        """The settings that shape this run: the strategy, ``total_steps``, and each schedule point as given
        (``schedule``) and in ``loss()`` calls (``steps``). :meth:`state_dict` saves them; :meth:`load_state_dict`
        refuses a checkpoint of another strategy or whose schedule, in steps, differs from this plugin's."""
        cfg = self.config
        return {"strategy": self.name, "total_steps": cfg.total_steps,
                "schedule": {name: getattr(cfg, name) for name in cfg.schedule_points},
                "steps": {name: cfg.steps_of(name) for name in cfg.schedule_points}}

    def get_extra_state(self) -> dict[str, Any]:
        return {"settings": self.run_settings()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore: the saved settings are checked before anything loads, and the plugin keeps its own."""

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False, *,
                        strict_settings: bool = True) -> Any:
        """torch's ``load_state_dict``, which also refuses a checkpoint saved by a run with another schedule
        (:meth:`run_settings`), naming both.

        Args:
            strict_settings: ``False`` loads such a checkpoint anyway, to go on under this plugin's schedule on
                purpose. A checkpoint saved before the settings were kept loads unchecked.
        """
        self._strict_settings = strict_settings
        try:
            return super().load_state_dict(state_dict, strict, assign)
        finally:
            self._strict_settings = True

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list[str], *args: Any) -> None:
        key = prefix + "_extra_state"
        saved = state_dict.get(key, {}).get("settings")
        if saved is not None and self._strict_settings:  # checked before anything of the plugin loads
            check_resume(saved, self.run_settings())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args)
        if key in missing_keys and set(self.get_extra_state()) == {"settings"}:
            missing_keys.remove(key)  # saved before the settings were, which are all that it lacks: loads unchecked
        self._step = int(self.steps)  # the host's copy follows the loaded counter (a load may wait for the GPU)

    @classmethod
    def hook_plan(cls, adapter: Adapter, config: Settings) -> list[tuple[str, str]]:
        """``(module path, what the strategy does there)`` for the hooks it places with these settings (read by
        ``semkt check`` before anything is built)."""
        return []

    def hooked(self) -> list[tuple[str, str]]:
        """``(module path, what the strategy does there)`` for every hook it placed on the model."""
        return type(self).hook_plan(self.adapter, self.config)

    def _remove_hooks(self) -> None:
        """Remove every hook this strategy placed on the model."""

    def _claim(self) -> None:
        """Record that this plugin wraps its model (``wrap`` calls it once the plugin is built)."""
        _wrapped[self.model] = self
        _wrapped[unwrap_container(self.model)] = self

    def unwrap(self) -> nn.Module:
        """Remove every hook and return the model, exactly as it was passed (same object, same state_dict)."""
        self._remove_hooks()
        _wrapped.pop(self.model, None)
        _wrapped.pop(unwrap_container(self.model), None)
        self._last = {}
        return self.model

    def extra_repr(self) -> str:
        return f"strategy={self.name!r}, adapter={self.adapter.name!r}"
