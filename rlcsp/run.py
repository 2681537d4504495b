"""Run one search from a config: progress bar, output files, summary; the entry point of ``rlcsp run``."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from rlcsp.config import SearchConfig
from rlcsp.report import RunOutput
from rlcsp.search import Search, SearchResult


def summarise(config: SearchConfig, result: SearchResult) -> dict:
    walker = result.walker
    return {
        "name": config.name,
        "composition": config.comp.label,
        "best_energy": round(walker.best_energy, 6),
        "target_energy": config.target_energy,
        "gm_reached": walker.gm_relaxation is not None,
        "gm_relaxation": walker.gm_relaxation,
        "relaxations": walker.relaxations,
        "wall_s": round(result.wall_s, 2),
        "policy": config.policy,
        "seed": config.seed,
        "calculator": config.calculator,
        "stop_reason": result.stop_reason,
        "outcomes": result.acceptance,
        "best_n_atoms": len(walker.best_atoms),
    }


def execute(config: SearchConfig, out: str | Path, progress: bool = True, command: str | None = None) -> dict:
    """Run the search, writing everything into ``out``; returns the summary dict also saved as summary.json."""
    from tqdm import tqdm

    output = RunOutput(out)
    bar = tqdm(total=config.budget, unit="relax", disable=not progress, dynamic_ncols=True,
               desc=f"{config.name} {config.policy} seed {config.seed}")

    def on_record(record, walker) -> None:
        output.record(record, walker)
        bar.update(1)
        if record.e_global == record.e_global:  # not NaN
            bar.set_postfix(best=f"{record.e_global:.6f}")

    started = time.perf_counter()
    search = Search(config, on_record=on_record)
    result = search.run(stop_file=Path(out) / "stop")
    bar.close()
    summary = summarise(config, result)
    summary["candidate_acceptance"] = dict(search.tally)
    output.finish(result, summary)
    gm = (f"GM reached at relaxation {summary['gm_relaxation']}" if summary["gm_reached"]
          else "GM not reached" if config.target_energy is not None else "no target energy")
    print(f"{config.name} [{config.policy}, seed {config.seed}]: best {summary['best_energy']:.6f} eV/atom, "
          f"{gm}, {summary['relaxations']} relaxations in {time.perf_counter() - started:.1f} s "
          f"({result.stop_reason}); outputs in {out}")
    if result.stop_reason.startswith(("signal", "stop file")):
        print(f"Stopped cleanly after relaxation {summary['relaxations']}; the outputs in {out} are consistent. "
              f"To continue, rerun {command or 'the same command'} (resuming from the stored state comes with "
              "the database store).", file=sys.stderr)
    return summary


def main_for_script(config: dict) -> int:
    """``python inputs/<compound>.py [options]`` behaves like ``rlcsp run inputs/<compound>.py [options]``."""
    from rlcsp.cli import main

    return main(["run", sys.argv[0], *sys.argv[1:]])
