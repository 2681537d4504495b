"""Functions of a relaxer's flight captured as CUDA graphs: a step between refills replayed without launches.

At walker batch sizes a step is launch-bound: for 64 Y2Ti2O7 candidates on the H200 the check, evaluation and
optimiser step take 4.6 ms as compiled calls and 1.1 ms as one graph (bench/results/gpu_step.json). A graph
replays on fixed addresses, so whatever the captured function replaces on the flight (variables, optimiser
state, flags) is written back into the buffers it read, at the end of the graph; the pair lists are rewritten in
place by rebuilds (:mod:`torch_slots`), and the batch itself is fixed between refills. A refill makes a new flight,
and so new graphs (a capture costs about as much as eight steps at batch 64).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

SHARED = ("batch", "nbrs", "graphs")  # what a captured function reads but never replaces


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


class FlightGraph:
    """``fn(flight)`` captured once; :meth:`replay` runs it again on the flight's current values in place and
    returns its outputs (tensors of the graph's own memory, overwritten by the next replay)."""

    def __init__(self, fn: Callable[[Any], Any], flight: Any):
        paths = list(tensor_paths(flight))
        seen: set[int] = set()
        for path in paths:  # one buffer per path: two paths on one tensor would both be written into it
            value = get_path(flight, path)
            if value.numel() and value.data_ptr() in seen:
                setattr(get_path(flight, path[:-1]), path[-1], value.clone())
            seen.add(value.data_ptr())
        buffers = [get_path(flight, p) for p in paths]
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(flight)
            ptrs = {b.data_ptr() for b in buffers}
            new = [get_path(flight, p) for p in paths]
            new = [v.clone() if v.data_ptr() in ptrs else v for v in new]  # a new value may be an old buffer
            for path, buffer, value in zip(paths, buffers, new):
                buffer.copy_(value)
                setattr(get_path(flight, path[:-1]), path[-1], buffer)

    def replay(self) -> Any:
        self.graph.replay()
        return self.out
