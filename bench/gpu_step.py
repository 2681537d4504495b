"""What one step of the batched relaxer costs, and what of it is arithmetic: the same step three ways.

For a flight of ``batch`` search candidates (after three ordinary steps), the step's tensor work with the pair
lists held fixed (check, evaluation, optimiser: no rebuilds, no refills) is timed as the relaxer runs it
(compiled calls) and, on a GPU, replayed as one CUDA graph, which removes every launch and host round trip; the
relaxer's real step (rebuilds included) is timed after them. Graph time is what the GPU's arithmetic costs;
the gaps are launch overhead and the pair-list rebuilds. ``max_diff`` compares five graph replays with five
compiled calls from the same state (float64 atomics make the two differ in their last bits, which L-BFGS then
amplifies). Rows go to bench/results/gpu_step.json with the commit.

    python3 bench/gpu_step.py --candidates runs/candidates --batch 64 512 1536 4096 --device cuda
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import deque
from pathlib import Path

import torch
from ase.io import read

from gpu_throughput import RESULTS, ROOT, commit
from rlcsp.calculators.torch_buckingham import Batch
from rlcsp.calculators.torch_relax import TorchRelaxer

REPEATS = 40  # timed steps per variant


def _paths(obj, pre: tuple = ()):
    """Attribute paths of every tensor a step replaces (the flight's and its optimiser state's)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            yield pre + (f.name,)
        elif dataclasses.is_dataclass(v) and f.name not in ("batch", "nbrs"):
            yield from _paths(v, pre + (f.name,))


def _get(obj, path: tuple):
    for name in path:
        obj = getattr(obj, name)
    return obj


def _fixed_lists_step(rx: TorchRelaxer, fl, paths: list[tuple], bufs: list[torch.Tensor]) -> None:
    """Check, evaluate and step with the pair lists as they are, writing the results into ``bufs`` in place
    (a CUDA graph replays on fixed addresses)."""
    r, H, _ = rx._check(fl, 1.0)
    rx._advance(fl, rx.model.evaluate(Batch(r, H, fl.batch.species, fl.batch.system, fl.batch.counts), fl.nbrs), H)
    ptrs = {b.data_ptr() for b in bufs}
    new = [_get(fl, p) for p in paths]
    new = [n.clone() if n.data_ptr() in ptrs else n for n in new]  # a new value may be an old buffer
    for p, b, n in zip(paths, bufs, new):
        b.copy_(n)
        setattr(_get(fl, p[:-1]), p[-1], b)


def _timed(step, device: torch.device, n: int = REPEATS) -> float:
    """Milliseconds per call of ``step``."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - start) / n * 1e3


def measure(structures: list, batch: int, device: str) -> dict:
    rx = TorchRelaxer(device=device, batch_size=batch, batch_atoms=batch * 80)
    rx.stream()  # fresh statistics
    pool = (structures * (1 + batch // len(structures)))[:batch]
    fl = rx._swap(None, deque(range(batch)), dict(enumerate(pool)), {}, time.perf_counter())
    for _ in range(3):
        rx._step(fl, False, False)
    paths = list(_paths(fl))
    bufs = [_get(fl, p) for p in paths]
    fixed = lambda: _fixed_lists_step(rx, fl, paths, bufs)  # noqa: E731
    for _ in range(3):  # compilation and warm-up
        fixed()
    row = {"batch": batch, "atoms": len(fl.u), "pairs": len(fl.nbrs.i), "kvectors": len(fl.nbrs.m),
           "compiled_ms": _timed(fixed, rx.device), "graph_ms": None, "max_diff": None, "capture_s": None}
    if rx.device.type == "cuda":
        snapshot = [b.clone() for b in bufs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fixed()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        start = time.perf_counter()
        with torch.cuda.graph(graph):
            fixed()
        torch.cuda.synchronize()
        row["capture_s"] = time.perf_counter() - start
        outcomes = []
        for run in (graph.replay, fixed):
            for b, v in zip(bufs, snapshot):
                b.copy_(v)
            for _ in range(5):
                run()
            outcomes.append([b.clone() for b in bufs])
        row["max_diff"] = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                              for a, b in zip(*outcomes))
        row["graph_ms"] = _timed(graph.replay, rx.device)
    row["real_step_ms"] = _timed(lambda: rx._step(fl, False, False), rx.device)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=Path, default=ROOT / "runs" / "candidates",
                        help="folder of <composition>.extxyz from gpu_throughput.py candidates")
    parser.add_argument("--composition", default="y2ti2o7")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=RESULTS / "gpu_step.json", help="JSON rows (appended)")
    args = parser.parse_args()
    structures = read(args.candidates / f"{args.composition}.extxyz", index=":")
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    for batch in args.batch:
        row = {"composition": args.composition, "device": args.device, "commit": commit(),
               **measure(structures, batch, args.device)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))


def table(rows: list[dict]) -> str:
    fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["| composition | device | batch | atoms | pairs | compiled, lists fixed (ms) | CUDA graph (ms) "
             "| real step (ms) | commit |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['composition']} | {r['device']} | {r['batch']} | {r['atoms']} | {r['pairs']} | "
                     f"{fmt(r['compiled_ms'])} | {fmt(r['graph_ms'])} | {fmt(r['real_step_ms'])} | {r['commit']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
