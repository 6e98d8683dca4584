"""CUDA graphs over a module's call, forward and backward: the same kernels, launched as one graph each.

A semkt step runs a few hundred small kernels of its own (the teacher, the SKB's passes, SKAM's stages). On a
fast GPU and small images, launching them one by one costs more host time than the GPU spends on them.
:class:`CudaGraphed` captures a module's call once per input signature (shapes, dtypes, which inputs need a
gradient, grad mode, train or eval mode) and replays it: the forward as one graph and, where the call has a
gradient, the backward as a second graph inside an autograd Function, so that the call stays a differentiable
piece of the caller's graph. A replay runs the kernels of the eager call on the same inputs, so its results are
those of the eager call up to the rounding of kernels whose order of additions is not fixed.

When the module runs as it is instead (eagerly): inputs not on CUDA, autocast on, another CUDA graph being
captured or a compile being traced, inference mode, more than ``max_graphs`` signatures, a call that cannot be
captured (a warning names why), or the previous replay of the same signature still waiting for its backward
(one graph holds one set of activations, so two forwards before a backward would share it). A module moved to
another device or dtype is captured again.

What a call returns belongs to the caller: outputs and the gradients of its inputs are fresh tensors, never the
graph's own buffers, and the parameters' gradients are accumulated by autograd as for any module.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils._pytree import tree_flatten, tree_unflatten

WARMUP = 3  # eager calls on the capture stream first: cuDNN's algorithm choice and lazy set-up stay out of it


class _Graph:
    """One captured signature of ``call``: static inputs, the forward graph and its outputs; where the call has a
    gradient, the backward graph with its static output gradients and the gradients it writes for the inputs
    and ``params``."""

    def __init__(self, call, inputs: Sequence[Tensor], spec, params: Sequence[Tensor], grad: bool) -> None:
        self.inputs = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
        self.params = tuple(params)
        self.pending: weakref.ref | None = None  # the backward node of the replay whose backward has not run
        self._pool = None
        surface = [t for t in (*self.inputs, *self.params) if t.requires_grad]

        def forward() -> list[Tensor]:
            outs, self.out_spec = tree_flatten(call(*tree_unflatten(self.inputs, spec)))
            return outs

        def backward() -> tuple[Tensor | None, ...]:
            wanted = [o for o in self.live if o.requires_grad]
            return torch.autograd.grad(wanted, surface, self.grad_outputs, allow_unused=True)

        with self._session(inputs[0].device), torch.set_grad_enabled(grad):
            for _ in range(WARMUP):
                wanted = [o for o in forward() if o.requires_grad]
                if grad and wanted:
                    torch.autograd.grad(wanted, surface, [torch.ones_like(o) for o in wanted], allow_unused=True)
            del wanted
            self.outputs, self.replay_forward = self._record(forward)
            self.live = self.outputs  # what the backward differentiates: the forward's outputs
            self.differentiable = [o.requires_grad for o in self.outputs]
            self.replay_backward = None
            if grad and any(self.differentiable):
                self.grad_outputs = [torch.empty_like(o) for o in self.outputs if o.requires_grad]
                grads, self.replay_backward = self._record(backward)
                found = iter(grads)
                self.grad_inputs = [next(found) if t.requires_grad else None for t in (*self.inputs, *self.params)]

    @contextlib.contextmanager
    def _session(self, device: torch.device) -> Iterator[None]:
        """Warm-up and captures on a side stream of ``device``, as CUDA graph captures must be."""
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.device(device), torch.cuda.stream(stream):
            yield
        torch.cuda.current_stream(device).wait_stream(stream)

    def _record(self, fn):
        """``fn()``'s result, and a function that runs its kernels again on the same memory (the graph's replay).
        The captures of one signature share a memory pool: the backward reads what the forward left there."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=torch.cuda.current_stream(), pool=self._pool):
            result = fn()
        self._pool = graph.pool()
        return result, graph.replay

    def waiting(self) -> bool:
        """Whether the last replay's backward is still to run (its graph alive, its backward not yet called)."""
        return self.pending is not None and self.pending() is not None


class _Replay(torch.autograd.Function):
    """``graph``'s forward replayed on ``inputs`` (then ``params``); its backward replayed on the gradients."""

    @staticmethod
    def forward(ctx, graph: _Graph, *tensors: Tensor) -> tuple[Tensor, ...]:
        for static, x in zip(graph.inputs, tensors):
            if static.data_ptr() != x.data_ptr():
                static.copy_(x)
        graph.replay_forward()
        outs = tuple(o.detach().clone() for o in graph.outputs)
        ctx.mark_non_differentiable(*(o for o, d in zip(outs, graph.differentiable) if not d))
        ctx.graph = graph
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        graph: _Graph = ctx.graph
        wanted = (g for g, d in zip(grads, graph.differentiable) if d)
        for static, g in zip(graph.grad_outputs, wanted):  # autograd passes zeros, not None, for unused outputs
            static.copy_(g)
        graph.replay_backward()
        graph.pending = None
        n = len(graph.inputs)
        # the inputs' gradients go on into the caller's graph: fresh tensors; the parameters' are returned as the
        # graph's buffers, which autograd copies (or adds) into .grad since the graph keeps a reference to them
        return (None, *(g.clone() if g is not None else None for g in graph.grad_inputs[:n]),
                *graph.grad_inputs[n:])


class CudaGraphed:
    """``getattr(module, method)(*args)``, replayed from CUDA graphs where it can be (see the module docstring).

    ``args`` may nest tensors in lists, tuples and dicts; so may what the call returns (named tuples too). The
    parameters of ``module`` that require a gradient get it as from the eager call. Copying (``copy.deepcopy``)
    or pickling keeps the module and drops the graphs.

    Args:
        module: the module whose call is graphed; its parameters and buffers must stay where they are between
            calls (a move is noticed and captured again).
        method: the method to call (``"forward"``: the module itself; its hooks run in eager calls and captures,
            not in replays).
        enabled: ``False`` always runs eagerly.
        max_graphs: signatures captured at most; others run eagerly.

    Attributes:
        replays, eager_calls: how many calls replayed a graph and how many ran eagerly.
    """

    graph_class = _Graph  # what captures a signature (the tests replay on the CPU through a stand-in)

    def __init__(self, module: nn.Module, method: str = "forward", *, enabled: bool = True,
                 max_graphs: int = 4) -> None:
        self.module, self.method, self.enabled, self.max_graphs = module, method, enabled, max_graphs
        self.replays = self.eager_calls = 0
        self._graphs: dict[Any, _Graph] = {}
        self._where: tuple[int, ...] = ()

    def __call__(self, *args: Any) -> Any:
        call = self.module if self.method == "forward" else getattr(self.module, self.method)
        flat, spec = tree_flatten(args)
        if not (self.enabled and self._graphable(flat)):
            self.eager_calls += 1
            return call(*args)
        everything = list(self.module.parameters())
        where = tuple(t.data_ptr() for t in (*everything, *self.module.buffers()))
        if where != self._where:  # moved, cast or replaced since the captures: they read the old memory
            self._graphs.clear()
            self._where = where
        trains = tuple(p.requires_grad for p in everything)
        params = [p for p in everything if p.requires_grad]
        grad = torch.is_grad_enabled() and (bool(params) or any(x.requires_grad for x in flat))
        key = (spec, grad, self.module.training, trains,
               *((x.shape, x.dtype, x.device, x.requires_grad) for x in flat))
        graph = self._graphs.get(key)
        if key not in self._graphs and len(self._graphs) < self.max_graphs:
            graph = self._graphs[key] = self._capture(call, flat, spec, params if grad else (), grad)
        if graph is None or graph.waiting():
            self.eager_calls += 1
            return call(*args)
        self.replays += 1
        outs = _Replay.apply(graph, *flat, *graph.params)
        node = next((o.grad_fn for o in outs if o.requires_grad), None)  # this replay's backward, to come
        graph.pending = weakref.ref(node) if node is not None else None
        return tree_unflatten(list(outs), graph.out_spec)

    def _capture(self, call, flat: list[Tensor], spec, params: list[Tensor], grad: bool) -> _Graph | None:
        """The graph of this signature, or ``None`` (it then runs eagerly) where the call cannot be captured."""
        try:
            return self.graph_class(call, flat, spec, params, grad)
        except RuntimeError as e:
            torch.cuda.synchronize()
            warnings.warn(f"{type(self.module).__name__}.{self.method} could not be captured in a CUDA graph "
                          f"({e}); it runs eagerly for inputs of these shapes. cuda_graphs=False runs every part "
                          "eagerly.", stacklevel=3)
            return None

    @staticmethod
    def _graphable(flat: list) -> bool:
        return (bool(flat) and all(isinstance(x, Tensor) and x.is_cuda for x in flat)
                and not torch.is_autocast_enabled("cuda") and not torch.is_inference_mode_enabled()
                and not torch.compiler.is_compiling() and not torch.cuda.is_current_stream_capturing())

    def __deepcopy__(self, memo: dict) -> CudaGraphed:
        return CudaGraphed(copy.deepcopy(self.module, memo), self.method, enabled=self.enabled,
                           max_graphs=self.max_graphs)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_graphs": {}, "_where": ()}
