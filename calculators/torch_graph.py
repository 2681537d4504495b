"""Functions of a relaxer's flight captured as CUDA graphs: a step between refills replayed without launches.

At walker batch sizes a step is launch-bound: for 64 Y2Ti2O7 candidates on the H200 the check, evaluation and
optimiser step take 4.6 ms as compiled calls and 1.1 ms as one graph (bench/results/gpu_step.json). A graph
replays on fixed addresses, so whatever the captured function replaces on the flight (variables, optimiser
state, flags) is written back into the buffers it read, at the end of the graph; the pair lists are rewritten in
place by rebuilds (:mod:`torch_slots`), and the batch itself is fixed between refills. A refill makes a new flight,
and so new graphs (a capture costs about as much as eight steps at batch 64).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import torch

SHARED = ("batch", "nbrs")  # what a captured function reads but never replaces


def tensor_paths(obj: Any, pre: tuple = ()):
    """Attribute paths of every tensor of the flight and its optimiser state that a function may replace."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            yield pre + (f.name,)
        elif dataclasses.is_dataclass(v) and f.name not in SHARED:
            yield from tensor_paths(v, pre + (f.name,))


def get_path(obj: Any, path: tuple) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def shadow(obj: Any) -> Any:
    """A copy of the flight whose own tensors are clones (what ``SHARED`` names stays the same object): running a
    function on it compiles whatever the function needs for exactly these tensors, and leaves the flight alone."""
    out = copy.copy(obj)
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            setattr(out, f.name, v.clone())
        elif dataclasses.is_dataclass(v) and f.name not in SHARED:
            setattr(out, f.name, shadow(v))
    return out


class FlightGraph:
    """``fn(flight)`` captured once; :meth:`replay` runs it again on the flight's current values in place and
    returns its outputs (tensors of the graph's own memory, overwritten by the next replay).

    On a CPU there are no graphs, and a replay does what one would: ``fn`` on the captured buffers and lists,
    and it raises where the flight no longer holds them, where a real graph would silently read stale memory, so
    CPU tests hold the relaxer's graphed step to the graphs' rules.
    """

    def __init__(self, fn: Callable[[Any], Any], flight: Any):
        paths = list(tensor_paths(flight))
        seen: set[int] = set()
        for path in paths:  # one buffer per path: two paths on one tensor would both be written into it
            value = get_path(flight, path)
            if value.numel() and value.data_ptr() in seen:
                setattr(get_path(flight, path[:-1]), path[-1], value.clone())
            seen.add(value.data_ptr())
        self.fn, self.flight, self.paths = fn, flight, paths
        self.buffers = [get_path(flight, p) for p in paths]
        self.shared = {name: getattr(flight, name) for name in SHARED}
        self.graph = None
        if self.buffers[0].device.type == "cuda":
            # Warm up on a shadow first, on a side stream as PyTorch's graph notes advise: a compilation cannot run
            # inside a capture, and the eager step before it does not see these exact tensors (the buffers above
            # are unaliased; the model marks the batch's dimensions dynamic at its first evaluation)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn(shadow(flight))
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out = self._run()

    def _run(self) -> Any:
        """``fn``, then what it replaced written back into the buffers it read."""
        out = self.fn(self.flight)
        ptrs = {b.data_ptr() for b in self.buffers}
        new = [get_path(self.flight, p) for p in self.paths]
        new = [v.clone() if v.data_ptr() in ptrs else v for v in new]  # a new value may be an old buffer
        for path, buffer, value in zip(self.paths, self.buffers, new):
            buffer.copy_(value)
            setattr(get_path(self.flight, path[:-1]), path[-1], buffer)
        return out

    def replay(self) -> Any:
        if self.graph is not None:
            self.graph.replay()
            return self.out
        for name, captured in self.shared.items():
            if getattr(self.flight, name) is not captured:
                raise RuntimeError(f"the flight's {name} was replaced after its graph was captured")
        for path, buffer in zip(self.paths, self.buffers):
            if get_path(self.flight, path) is not buffer:
                raise RuntimeError(f"the flight's {'.'.join(path)} was replaced outside its graph")
        return self._run()
