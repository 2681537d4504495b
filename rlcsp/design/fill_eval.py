"""``rlcsp fill-eval``: offline agents trained on one CSV split, evaluated on held-out skeletons (paper a, Table 1).

Agents: ``random`` (uniform over allowed elements), ``bc`` (behaviour cloning, unconditioned), ``cql``
(unconditioned CQL, alpha 1), ``c-cql-1`` and ``c-cql-5`` (conditional CQL, alpha 1 and 5). Each learning agent
trains into ``--out/<agent>`` (rerunning resumes or reuses its checkpoint), then fills every held-out skeleton once,
greedily, in BFS order from site 0 with the env's masks (:func:`fill`). Columns: per-site accuracy, category
similarity, SMACT validity and novelty (:mod:`rlcsp.design.fill_metrics`); then, after the gap model (CHGNet features +
MLP head trained on the training split, :mod:`rlcsp.design.gap_model`, with CHGNet's formation energy from the same
pass) and optionally Quantum ESPRESSO on the first few crystals: % in the window p_hat +- 0.25 eV, the
out-of-distribution design rate, EMD of the gap and formation-energy distributions against the held-out crystals
under the same predictor (its bias cancels), and the DFT success rate. A last row gives the held-out crystals
themselves. Writes ``fill_eval.json``, ``table.md`` and PNGs into ``--out``; runs, training metrics and every
generated crystal (as an episode) go to the store (``rlcsp.db`` in ``--out`` by default). ``--device cuda`` trains
on a GPU (paper a's 200k steps of batch 1024 take about 0.75 s a step on one core); ``--train-only`` stops after
training, and SIGINT/SIGTERM stop it cleanly at a checkpoint, so that training can run on a lent GPU in slices
and the evaluation here, where the checkpoints come back (``bench/device/offline.sh``).

    rlcsp fill-eval --train ../shared/data/perov_5/val.csv --test ../shared/data/perov_5/test.csv --target 1.12
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rlcsp.exceptions import ConfigError, TrainingStopped
from rlcsp.design.fill_dataset import FillDataset
from rlcsp.design.fill_env import PAPER_A_VOCABULARY, fill_masks
from rlcsp.design.properties import DftProperties, ModelProperties, Properties, property_metrics
from rlcsp.design.fill_metrics import category_similarity, novel, reduced_formula, site_accuracy, validity

# name -> (row label, algorithm, settings): paper a's Table 1 rows.
AGENTS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "random": ("random", None, {}),
    "bc": ("BC", "bc", {"conditional": False}),
    "cql": ("CQL", "cql", {"alpha": 1.0, "conditional": False}),
    "c-cql-1": ("c-CQL α=1", "cql", {"alpha": 1.0, "conditional": True}),
    "c-cql-5": ("c-CQL α=5", "cql", {"alpha": 5.0, "conditional": True}),
}
REFERENCE = "held-out"
TRAIN_SETTINGS = ("batch_size", "hidden", "blocks", "learning_rate", "checkpoint_every", "log_every")
COLUMNS = (("accuracy", "accuracy %", 100), ("similarity", "similarity %", 100), ("validity", "validity %", 100),
           ("novelty", "novelty %", 100), ("in_window", "in window %", 100), ("ood_design", "OOD design %", 100),
           ("emd_gap", "EMD gap (eV)", 1), ("emd_e_form", "EMD E_form (eV/atom)", 1),
           ("dft_success", "DFT success %", 100), ("dft_in_window", "DFT in window %", 100))
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------- policies


class RandomPolicy:
    """Uniform over each state's allowed elements (paper a's random baseline)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, types, focus, target, graph, mask) -> np.ndarray:
        scores = self.rng.random(mask.shape)
        return np.where(mask, scores, -1.0).argmax(1)


class NetworkPolicy:
    """Greedy masked argmax of a CQL or BC checkpoint's network over the skeletons of ``dataset``."""

    def __init__(self, checkpoint: str | Path, dataset: FillDataset):
        import torch

        from rlcsp.policies.bc import BCConfig
        from rlcsp.policies.cql import CQLConfig
        from rlcsp.policies.dqn import GraphBatcher, make_q_network

        ck = torch.load(checkpoint, weights_only=False, map_location="cpu")
        dataset.check_vocabulary(ck["vocabulary"], f"checkpoint {checkpoint}")
        self.config = {"cql": CQLConfig, "bc": BCConfig}[ck["algorithm"]](**ck["config"])
        self.batcher = GraphBatcher(dataset.skeletons(), dataset.blank, self.config.gaussians)
        self.network = make_q_network(len(dataset.vocabulary), self.config, self.batcher)
        self.network.load_state_dict(ck["q_network"])
        self.network.eval()

    def __call__(self, types, focus, target, graph, mask) -> np.ndarray:
        from rlcsp.policies.dqn import greedy_actions

        target = target if self.config.conditional else np.zeros_like(target)
        return greedy_actions(self.network, self.batcher, types, focus, target, mask, graph)


def fill(policy: Policy, dataset: FillDataset, target: float, batch_size: int = 2048) -> np.ndarray:
    """Each crystal of ``dataset`` filled once by ``policy``: (G, W) element indices, blank past its sites.

    Sites are filled in the BFS order from site 0 (the crystal's first episode), all crystals together one step
    at a time, under the env's masks (:func:`rlcsp.design.fill_env.fill_masks`).
    """
    first = dataset.first_episodes()
    order, n = dataset.episode_order[first], dataset.n_sites
    types = np.full((dataset.n_crystals, order.shape[1]), dataset.blank, dtype=np.int16)
    allowed = np.ones(len(dataset.vocabulary), dtype=bool)
    targets = np.full(dataset.n_crystals, target, dtype=np.float32)
    for t in range(order.shape[1]):
        active = np.flatnonzero(n > t)
        for rows in np.array_split(active, max(1, math.ceil(len(active) / batch_size))):
            if not len(rows):
                continue
            mask = fill_masks(types[rows], allowed, dataset.max_elements)
            focus = order[rows, t]
            types[rows, focus] = policy(types[rows], focus, targets[rows], rows, mask)
    return types


# ------------------------------------------------------------------------------------------ the run


def _config(algorithm: str, settings: dict[str, Any], seed: int):
    from rlcsp.policies.bc import BCConfig
    from rlcsp.policies.cql import CQLConfig

    return {"cql": CQLConfig, "bc": BCConfig}[algorithm](seed=seed, **settings)


def _train(agent: str, algorithm: str, dataset: FillDataset, config, steps: int, out: Path, store, run_id: int,
           progress: bool, device: str) -> dict[str, Any]:
    from rlcsp.policies import bc, cql

    trained = {"cql": cql.train, "bc": bc.train}[algorithm](dataset, config, steps, out / agent, store=store,
                                                            run_id=run_id, progress=progress, device=device)
    if trained["stopped"]:
        raise TrainingStopped(f"{agent} stopped at step {trained['global_step']} of {steps} ({trained['stopped']}), "
                              "checkpointed; the same command continues it")
    return trained


def run_fill_eval(train: str | Path, test: str | Path, out: str | Path, *, target: float = 1.12,
                  agents: Sequence[str] = tuple(AGENTS), condition_range: tuple[float, float] | None = None,
                  steps: int = 200_000, settings: dict[str, Any] | None = None, seed: int = 1,
                  vocabulary: Sequence[str] = PAPER_A_VOCABULARY, train_limit: int | None = None,
                  test_limit: int | None = None, cache: str | Path | None = None, properties: bool = True,
                  gap_model: str | Path | None = None, gap_samples: int = 1000, gap_epochs: int = 300,
                  property_limit: int | None = None, formation: bool = True, dft: int = 0,
                  dft_options: dict[str, Any] | None = None, db_url: str | None = None,
                  progress: bool = True, device: str = "cpu", train_only: bool = False) -> dict[str, Any] | None:
    """Train (or resume) the agents, evaluate them on ``test`` and write the report; returns what the JSON holds.

    ``steps`` gradient steps per learning agent (paper a: 200k; more on a rerun continues the runs); ``settings``
    overrides the agents' training settings (batch_size, hidden, blocks, ...);
    ``condition_range`` draws the conditional agents' targets per episode from (low, high) instead of ``target``.
    ``device`` trains the networks there; ``train_only`` returns None once the agents are trained.
    """
    import torch

    from rlcsp.db import Store
    from rlcsp import __version__

    unknown = sorted(set(agents) - set(AGENTS))
    if unknown or not agents:
        raise ConfigError(f"unknown agents {unknown}; choose from {list(AGENTS)}")
    bad = sorted(set(settings or {}) - set(TRAIN_SETTINGS))
    if bad:
        raise ConfigError(f"unknown training settings {bad}; known: {list(TRAIN_SETTINGS)}")
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache is not None else out / "datasets"
    store = Store(db_url or os.environ.get("RLCSP_DB_URL") or f"sqlite:///{out.resolve() / 'rlcsp.db'}")
    train_set = FillDataset.from_csv(train, vocabulary, targets=target, seed=seed, limit=train_limit, cache=cache,
                                     progress=progress)
    test_set = FillDataset.from_csv(test, vocabulary, orderings=1, targets=target, seed=seed, limit=test_limit,
                                    cache=cache, progress=progress)
    conditional_set = train_set.with_targets(condition_range, seed) if condition_range else train_set
    training = {reduced_formula(train_set.symbols(g)) for g in range(train_set.n_crystals)}
    true = [test_set.symbols(g) for g in range(test_set.n_crystals)]
    results: dict[str, dict[str, Any]] = {}
    fillings: dict[str, list[list[str]]] = {}

    for agent in agents:
        label, algorithm, fixed = AGENTS[agent]
        if train_only and not algorithm:
            continue
        config = _config(algorithm, {**fixed, **(settings or {})}, seed) if algorithm else None
        conditional = config is not None and config.conditional
        run_config = {"kind": "fill-offline", "agent": agent, "train": str(Path(train).resolve()),
                      "train_limit": train_limit, "target": target,
                      "condition_range": list(condition_range) if conditional and condition_range else None,
                      "config": asdict(config) if config else {"seed": seed}, "out": str((out / agent).resolve())}
        run_id = store.find_run(run_config, which="any") or store.create_run(
            run_config, f"fill-offline-{agent}", Path(train).stem, agent, seed, "offline", __version__)
        trained: dict[str, Any] = {}
        if algorithm:
            dataset = conditional_set if conditional else train_set
            trained = _train(agent, algorithm, dataset, config, steps, out, store, run_id, progress, device)
            if train_only:
                continue
            policy: Policy = NetworkPolicy(out / agent / "checkpoint.pt", test_set)
        else:
            policy = RandomPolicy(seed)
        types = fill(policy, test_set, target)
        fillings[agent] = [test_set.symbols(g, types[g]) for g in range(test_set.n_crystals)]
        results[agent] = {"label": label, "run_id": run_id, "steps": trained.get("global_step", 0),
                          **filling_metrics(fillings[agent], true, training)}
        _record(store, run_id, agent, test_set, fillings[agent], results[agent]["_novel"], target,
                trained.get("global_step", 0))
    if train_only:
        store.close()
        return None
    results[REFERENCE] = {"label": f"{REFERENCE} crystals", **filling_metrics(true, true, training)}
    fillings[REFERENCE] = true

    distributions: dict[str, Properties] = {}
    if properties or dft:
        limit = min(test_set.n_crystals, property_limit or test_set.n_crystals)
        structures = {name: [test_set.skeleton(g).atoms(f[g]) for g in range(limit)] for name, f in fillings.items()}
        if properties:
            predictor = ModelProperties(_gap_model(train_set, train, out, gap_model, gap_samples, gap_epochs, seed,
                                                   progress), formation)
            distributions = {name: predictor(s) for name, s in _progress(structures.items(), progress, "properties")}
            for name, props in distributions.items():
                results[name].update(property_metrics(props, distributions[REFERENCE], results[name]["_novel"],
                                                      target))
        if dft:
            dft_predictor = DftProperties(dft_evaluator(dft_options or {}, store))
            dft_results = {name: dft_predictor(s[:dft]) for name, s in _progress(structures.items(), progress, "DFT")}
            for name, props in dft_results.items():
                results[name].update(property_metrics(props, dft_results[REFERENCE], results[name]["_novel"], target,
                                                      prefix="dft_"))
    for row in results.values():
        row.pop("_novel")

    report = {"target": target, "window_half_width_eV": 0.25, "train": str(train), "test": str(test),
              "train_dataset": train_set.info, "test_dataset": test_set.info, "condition_range": condition_range,
              "steps": steps, "settings": settings or {}, "seed": seed, "property_crystals":
              min(test_set.n_crystals, property_limit or test_set.n_crystals) if properties else 0,
              "dft_crystals": dft, "results": results, "db": store.url}
    (out / "fill_eval.json").write_text(json.dumps(report, indent=2, default=_json_default))
    table = table_markdown(results)
    (out / "table.md").write_text(table + "\n")
    plot_fill_eval(out, results, distributions, target, [a for a in agents if AGENTS[a][1]])
    store.close()
    return report


def filling_metrics(generated: list[list[str]], true: list[list[str]], training: set[str]) -> dict[str, Any]:
    """Paper a's Table 1 columns of one agent's fillings (``_novel``: each filling's novelty, for later columns)."""
    is_novel = novel(generated, training)
    return {"accuracy": site_accuracy(generated, true), "similarity": category_similarity(generated, true),
            "validity": validity(generated), "novelty": float(is_novel.mean()), "_novel": is_novel}


def _record(store, run_id: int, agent: str, test_set: FillDataset, generated: list[list[str]],
            is_novel: np.ndarray, target: float, step: int) -> None:
    """Every generated crystal as an episode of the agent's run, replacing the previous evaluation's."""
    store.drop_fill_after(run_id, 0, step)
    for g, symbols in enumerate(generated):
        store.record_episode(run_id, agent, g + 1, None, {"material_id": str(test_set.ids[g]), "species": symbols,
                                                          "formula": reduced_formula(symbols),
                                                          "novel": bool(is_novel[g]), "target": target})
    store.set_status(run_id, "finished")


def _progress(items, progress: bool, what: str):
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(list(items), desc=what, unit="agent")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def _gap_model(train_set: FillDataset, train: str | Path, out: Path, path: str | Path | None, samples: int,
               epochs: int, seed: int, progress: bool):
    """The gap model given, or the one this output folder trained before, or one trained on the training CSV."""
    from rlcsp.design.gap_model import GapModel, perov5_samples, train_gap_model

    saved = out / "gap_model.txt"
    if path is not None:
        return GapModel.load(path)
    if saved.exists():
        return GapModel.load(saved)
    if progress:
        print(f"training the gap model on {samples} crystals of {train} (CHGNet features)", flush=True)
    gap_column = train_set.info["columns"][1]
    model = train_gap_model(None, extra=perov5_samples(train, samples, seed, gap_column=gap_column), epochs=epochs,
                            seed=seed)
    model.save(saved)
    return model


def dft_evaluator(options: dict[str, Any], store):
    """A DFT-gap evaluator on the seed papers' settings, ``options`` overriding them as a fill script's ``dft``
    dict does; calls are cached and logged in ``store``."""
    from rlcsp.design.rewards import DftGapEvaluator
    from rlcsp.design.fill import dft_settings

    settings, runner = dft_settings({"dft": options})
    return DftGapEvaluator(settings, runner, store=store)


# ------------------------------------------------------------------------------------------ report


def table_markdown(results: dict[str, dict[str, Any]]) -> str:
    """Paper a's Table 1 layout: one row per agent, the columns that were measured."""
    columns = [c for c in COLUMNS if any(c[0] in row and row[c[0]] is not None for row in results.values())]
    lines = ["| agent | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in results.values():
        cells = []
        for key, _, scale in columns:
            value = row.get(key)
            cells.append("–" if value is None or not np.isfinite(value) else
                         f"{value * scale:.2f}" if scale == 100 else f"{value:.3f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_fill_eval(out: Path, results: dict[str, dict[str, Any]], distributions: dict[str, Properties],
                   target: float, trained: Sequence[str]) -> list[Path]:
    """metrics.png, gap_distribution.png, e_form_distribution.png and training_loss.png in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlcsp.policies.training_log import read_metrics

    paths = []
    keys = [k for k in ("accuracy", "similarity", "validity", "novelty", "in_window")
            if any(k in row for row in results.values())]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(results)
    for i, (name, row) in enumerate(results.items()):
        ax.bar(np.arange(len(keys)) + i * width, [100 * row.get(k, math.nan) for k in keys], width,
               label=row["label"])
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set(ylabel="%", title="held-out skeletons")
    ax.legend(fontsize=7)
    paths.append((fig, out / "metrics.png"))

    for attribute, unit, name in (("gap", "band gap (eV)", "gap_distribution.png"),
                                  ("e_form", "formation energy (eV/atom)", "e_form_distribution.png")):
        series = {k: getattr(p, attribute) for k, p in distributions.items() if getattr(p, attribute) is not None}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        finite = np.concatenate([v[np.isfinite(v)] for v in series.values()])
        bins = np.linspace(finite.min(), finite.max() + 1e-9, 40) if len(finite) else 10
        for k, values in series.items():
            ax.hist(values[np.isfinite(values)], bins=bins, histtype="step", label=results[k]["label"],
                    lw=2 if k == REFERENCE else 1)
        if attribute == "gap":
            ax.axvspan(target - 0.25, target + 0.25, color="k", alpha=0.1, label=f"target {target} ± 0.25 eV")
        ax.set(xlabel=unit, ylabel="crystals", title=f"predicted {unit.split(' (')[0]} of generated crystals")
        ax.legend(fontsize=7)
        paths.append((fig, out / name))

    if trained:
        fig, ax = plt.subplots(figsize=(7, 4))
        for agent in trained:
            rows = read_metrics(out / agent / "metrics.csv")
            key = "losses/bc_loss" if AGENTS[agent][1] == "bc" else "losses/loss"
            ax.plot([r["global_step"] for r in rows], [r[key] for r in rows], label=f"{results[agent]['label']}")
        ax.set(xlabel="gradient step", ylabel="loss", title="training loss (BC: cross-entropy; CQL: total)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        paths.append((fig, out / "training_loss.png"))

    for figure, path in paths:
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
    return [path for _, path in paths]
