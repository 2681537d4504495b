"""What one step of the batched relaxer costs, and what of it is arithmetic: the same step three ways.

For a flight of ``batch`` search candidates (after three ordinary steps), the step's tensor work with the pair
lists held fixed (check, evaluation, optimiser: no rebuilds, no refills) is timed as the relaxer runs it
(compiled calls) and, on a GPU, replayed as one CUDA graph, which removes every launch and host round trip; the
relaxer's real step (rebuilds included) is timed after them: as the relaxer takes it (on a GPU its graphed
step, :mod:`torch_graph`) and, where that is graphed, eagerly too. Graph time is what the GPU's arithmetic costs;
the gaps are launch overhead and the pair-list rebuilds. ``max_diff`` compares five graph replays with five
compiled calls from the same state (float64 atomics make the two differ in their last bits, which L-BFGS then
amplifies). Rows go to bench/results/gpu_step.json with the commit.

    python3 bench/gpu_step.py --candidates runs/candidates --batch 64 512 1536 4096 --device cuda
"""
from __future__ import annotations

import argparse
import json
import time
from collections import deque
from pathlib import Path

import torch
from ase.io import read

from rlcsp.version import commit
from gpu_throughput import RESULTS, ROOT
from rlcsp.calculators.torch_graph import FlightGraph, get_path, tensor_paths
from rlcsp.calculators.torch_relax import TorchRelaxer

REPEATS = 40  # timed steps per variant


def _fixed_lists_step(rx: TorchRelaxer, fl) -> None:
    """Check, evaluate and step with the pair lists as they are."""
    rx._check(fl, 1.0)
    rx._evaluate_and_move(fl)


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
    rx = TorchRelaxer(device=device, batch_size=batch, batch_atoms=batch * 80, graphs=device == "cuda")
    rx.stream()  # fresh statistics
    pool = (structures * (1 + batch // len(structures)))[:batch]
    fl = rx._swap(None, deque(range(batch)), dict(enumerate(pool)), {}, time.perf_counter())
    for _ in range(3):
        rx._step(fl, False, False)
    fixed = lambda: _fixed_lists_step(rx, fl)  # noqa: E731
    for _ in range(3):  # compilation and warm-up
        fixed()
    row = {"batch": batch, "atoms": len(fl.u), "pairs": len(fl.nbrs.i), "kvectors": len(fl.nbrs.m),
           "spare": rx.spare, "compiled_ms": _timed(fixed, rx.device), "graph_ms": None, "max_diff": None,
           "capture_s": None}
    if rx.device.type == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fixed()
        torch.cuda.current_stream().wait_stream(side)
        start = time.perf_counter()
        graph = FlightGraph(lambda f: _fixed_lists_step(rx, f), fl)
        torch.cuda.synchronize()
        row["capture_s"] = time.perf_counter() - start
        paths = list(tensor_paths(fl))
        snapshot = [get_path(fl, p).clone() for p in paths]
        outcomes = []
        for run in (graph.replay, fixed):
            for p, v in zip(paths, snapshot):
                get_path(fl, p).copy_(v)
            for _ in range(5):
                run()
            outcomes.append([get_path(fl, p).clone() for p in paths])
        row["max_diff"] = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                              for a, b in zip(*outcomes))
        row["graph_ms"] = _timed(graph.replay, rx.device)
    row["graphs"] = rx.graphs
    row["real_step_ms"] = _timed(lambda: rx._step(fl, False, False), rx.device)  # graphed on a GPU
    if rx.graphs:
        rx.graphs = False
        row["real_step_eager_ms"] = _timed(lambda: rx._step(fl, False, False), rx.device)
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
             "| real step (ms) | real step, eager (ms) | commit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['composition']} | {r['device']} | {r['batch']} | {r['atoms']} | {r['pairs']} | "
                     f"{fmt(r['compiled_ms'])} | {fmt(r['graph_ms'])} | {fmt(r['real_step_ms'])} | "
                     f"{fmt(r.get('real_step_eager_ms'))} | {r['commit']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
