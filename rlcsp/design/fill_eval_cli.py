"""``rlcsp fill-eval``'s arguments and entry: the options of :func:`rlcsp.design.fill_eval.run_fill_eval`.

Building the parser imports nothing of the design stack (gymnasium, SMACT, pandas, torch_geometric): every ``rlcsp``
command builds the whole parser, and ``rlcsp copy`` on a machine with rlcsp's core alone must not need them."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlcsp.exceptions import ConfigError

AGENT_NAMES = ("random", "bc", "cql", "c-cql-1", "c-cql-5")  # rlcsp.design.fill_eval.AGENTS' keys (a test checks)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="training CSV (CDVAE/MP-20 format), e.g. perov_5/val.csv")
    p.add_argument("--test", required=True, help="held-out CSV whose skeletons the agents fill")
    p.add_argument("--out", default="runs/fill-eval", help="output folder (default runs/fill-eval)")
    p.add_argument("--target", type=float, default=1.12, help="target band gap p_hat in eV (default 1.12)")
    p.add_argument("--condition-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="conditional agents train on targets drawn per episode from [LOW, HIGH] eV")
    p.add_argument("--agents", nargs="+", default=list(AGENT_NAMES), choices=AGENT_NAMES,
                   help="rows of the table (default all)")
    p.add_argument("--steps", type=int, default=200_000, help="gradient steps per agent (default: paper a's "
                   "200000; more than a previous run continues it)")
    p.add_argument("--batch-size", type=int, help="paper a: 1024")
    p.add_argument("--hidden", type=int, help="hidden width of the graph network (default 64)")
    p.add_argument("--blocks", type=int, help="MEGNet blocks (default 3)")
    p.add_argument("--seed", type=int, default=1, help="random seed of training and filling")
    p.add_argument("--vocabulary", default="paper-a",
                   help="action space: paper-a (88 elements), paper-b (21) or a comma-separated list")
    p.add_argument("--train-limit", type=int, help="first N training rows only")
    p.add_argument("--test-limit", type=int, help="first N held-out rows only")
    p.add_argument("--property-limit", type=int, help="predict properties of the first N held-out skeletons only")
    p.add_argument("--gap-model", help="a saved gap model (default: train one on --train)")
    p.add_argument("--gap-samples", type=int, default=1000, help="training crystals for the gap model")
    p.add_argument("--no-properties", action="store_true", help="skip the gap model and its columns")
    p.add_argument("--no-formation-energy", action="store_true", help="skip the CHGNet formation energies")
    p.add_argument("--dft", type=int, default=0, metavar="N", help="Quantum ESPRESSO on the first N crystals of each")
    p.add_argument("--dft-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a DFT setting (calculators.espresso.DftSettings), e.g. --dft-setting kpts=gamma")
    p.add_argument("--db", help="store URL (default sqlite in --out, or RLCSP_DB_URL)")
    p.add_argument("--cache", help="dataset cache folder (default --out/datasets)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default="cpu", help="where the agents train: cpu or cuda (filling and evaluation run "
                   "on the CPU)")
    p.add_argument("--train-only", action="store_true", help="train (or continue) the agents and stop: a GPU "
                   "trains, the evaluation runs where the checkpoints come back")


def _vocabulary(text: str) -> tuple[str, ...]:
    from rlcsp.design.fill_env import PAPER_A_VOCABULARY, PAPER_B_VOCABULARY

    if text == "paper-a":
        return PAPER_A_VOCABULARY
    if text == "paper-b":
        return PAPER_B_VOCABULARY
    return tuple(el.strip() for el in text.split(",") if el.strip())


def run_from_args(args: argparse.Namespace) -> int:
    from rlcsp.design.fill_eval import AGENTS, run_fill_eval, table_markdown

    settings = {k: v for k, v in (("batch_size", args.batch_size), ("hidden", args.hidden),
                                  ("blocks", args.blocks)) if v is not None}
    dft_options = {}
    for pair in args.dft_setting:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--dft-setting expects key=value, got {pair!r}")
        dft_options[key] = json.loads(value) if value[:1] in "-0123456789.[{" else value
    report = run_fill_eval(args.train, args.test, args.out, target=args.target, agents=args.agents,
                           condition_range=tuple(args.condition_range) if args.condition_range else None,
                           steps=args.steps, settings=settings, seed=args.seed, vocabulary=_vocabulary(args.vocabulary),
                           train_limit=args.train_limit, test_limit=args.test_limit, cache=args.cache,
                           properties=not args.no_properties, gap_model=args.gap_model,
                           gap_samples=args.gap_samples, property_limit=args.property_limit,
                           formation=not args.no_formation_energy, dft=args.dft, dft_options=dft_options,
                           db_url=args.db, progress=not args.quiet, device=args.device,
                           train_only=args.train_only)
    if report is None:
        print(f"trained: {', '.join(a for a in args.agents if AGENTS[a][1])} ({args.steps} steps) in {args.out}")
        return 0
    print(table_markdown(report["results"]))
    print(f"\nreport: {Path(args.out) / 'fill_eval.json'}")
    return 0
