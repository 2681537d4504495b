"""Offline trajectory datasets for composition filling (seed paper a): expert fillings of known crystals.

Each crystal of a CDVAE/MP-20 CSV (``material_id, cif, ...`` plus label columns) becomes a skeleton (its CrystalNN
multigraph, :mod:`rlcsp.design.skeleton`) and up to five episodes, one per BFS root 0..4 (paper a's five orderings). An
episode's actions are the crystal's true elements as indices into the vocabulary (the env's action space,
:data:`rlcsp.design.fill_env.PAPER_A_VOCABULARY` by default); its reward is 0 until the last site, which carries
paper a's ``a1 exp(-E_form/b1) + a2 exp(-(E_g - p_hat)^2/b2)`` of the crystal's labels
(:func:`rlcsp.design.rewards.paper_a_reward`). Labels: MP-20's ``formation_energy_per_atom`` and ``band_gap``,
perov_5's ``heat_ref`` (eV/atom) and ``ind_gap`` (eV), or any pair of columns. Episodes that online agents logged
in the store (``episodes`` table, with their run's skeleton) become trajectories the same way. The target p_hat is
one value for every episode, or drawn uniformly from a range per episode (rewards relabelled to match), so a
conditional policy sees many targets.

Skipped, with a :class:`SkippedRows` warning that counts them: rows whose CIF cannot be read, rows without labels,
crystals with an element outside the vocabulary or more distinct elements than the env allows. An empty result
raises :class:`~rlcsp.exceptions.EmptyDataset`; a dataset met by an env, checkpoint or episode of another
vocabulary raises :class:`~rlcsp.exceptions.VocabularyMismatch`.

Cache format (building costs one CrystalNN analysis per crystal, ~50 ms; loading is instant). ``from_csv(...,
cache=DIR)`` writes two files named ``<csv stem>-<key>`` where ``key`` is the first 16 hex digits of the SHA-256 of
the inputs (CSV bytes, label columns, vocabulary, orderings, limit, max_elements, format version):

- ``.json`` manifest: ``format`` ("rlcsp-fill-dataset"), ``version`` (1), ``key``, ``inputs`` (what was hashed),
  ``vocabulary``, ``max_elements``, ``counts`` (rows read and skipped, by reason), ``arrays`` (dtype and shape of
  each array below).
- ``.npz`` arrays; G crystals, T episodes, W the widest crystal (site arrays are padded: types with the blank
  index V = len(vocabulary), site indices with -1):
  ``ids`` (G,) str; ``cell`` (G,3,3) Angstrom; ``frac`` (G,W,3); ``n_sites``, ``spacegroup`` (G,);
  ``species`` (G,W) true types (blank where unknown); ``edges`` (E,5) CrystalNN rows (source, target, image)
  of every crystal, crystal g's rows at ``edge_ptr[g]:edge_ptr[g+1]``; ``gap``, ``e_form`` (G,) labels (NaN when
  unknown); ``episode_graph`` (T,) its crystal; ``episode_order`` (T,W) site order; ``episode_types`` (T,W) the
  final filling by site; ``episode_gap``, ``episode_e_form``, ``episode_target``, ``episode_reward`` (T,).
  Targets and rewards are recomputed on load from the labels, so one cached file serves every target.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from rlcsp.design.rewards import PAPER_A, paper_a_reward
from rlcsp.exceptions import ConfigError, DatasetError, EmptyDataset, VocabularyMismatch
from rlcsp.design.fill_env import PAPER_A_VOCABULARY, fill_masks
from rlcsp.design.skeleton import Skeleton, make_skeleton

csv.field_size_limit(sys.maxsize)

FORMAT, VERSION = "rlcsp-fill-dataset", 1
ORDERINGS = 5  # paper a: BFS from start nodes 0..4
LABEL_COLUMNS = (("formation_energy_per_atom", "band_gap"), ("heat_ref", "ind_gap"))  # MP-20, perov_5
Targets = float | tuple[float, float]


class SkippedRows(UserWarning):
    """Some input rows or episodes did not become trajectories; the message counts them by reason."""


@dataclass
class FillDataset:
    """Crystals (skeletons with their true elements and labels) and expert episodes over them; see the module."""

    vocabulary: tuple[str, ...]
    max_elements: int
    ids: np.ndarray
    cell: np.ndarray
    frac: np.ndarray
    n_sites: np.ndarray
    spacegroup: np.ndarray
    species: np.ndarray
    edges: np.ndarray
    edge_ptr: np.ndarray
    gap: np.ndarray
    e_form: np.ndarray
    episode_graph: np.ndarray
    episode_order: np.ndarray
    episode_types: np.ndarray
    episode_gap: np.ndarray
    episode_e_form: np.ndarray
    episode_target: np.ndarray
    episode_reward: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    ARRAYS = ("ids", "cell", "frac", "n_sites", "spacegroup", "species", "edges", "edge_ptr", "gap", "e_form",
              "episode_graph", "episode_order", "episode_types", "episode_gap", "episode_e_form", "episode_target",
              "episode_reward")

    @property
    def blank(self) -> int:
        return len(self.vocabulary)

    @property
    def n_crystals(self) -> int:
        return len(self.ids)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_graph)

    def skeleton(self, g: int) -> Skeleton:
        n = int(self.n_sites[g])
        symbols = tuple(self.vocabulary[t] if t < self.blank else "X" for t in self.species[g, :n])
        return Skeleton(cell=self.cell[g], frac_coords=self.frac[g, :n], species=symbols,
                        edges=self.edges[self.edge_ptr[g]:self.edge_ptr[g + 1]], spacegroup=int(self.spacegroup[g]),
                        name=str(self.ids[g]))

    def skeletons(self) -> list[Skeleton]:
        return [self.skeleton(g) for g in range(self.n_crystals)]

    def symbols(self, g: int, types: np.ndarray | None = None) -> list[str]:
        """Element symbols of crystal g's sites under ``types`` (its true elements by default)."""
        row = self.species[g] if types is None else types
        return [self.vocabulary[int(t)] for t in row[:int(self.n_sites[g])]]

    def first_episodes(self) -> np.ndarray:
        """Index of each crystal's first episode (BFS root 0): the order a held-out crystal is evaluated in."""
        _, first = np.unique(self.episode_graph, return_index=True)
        return first

    def check_vocabulary(self, vocabulary: Sequence[str], what: str) -> None:
        """VocabularyMismatch unless ``vocabulary`` (of an env, checkpoint or other dataset) is this one's."""
        if tuple(vocabulary) != self.vocabulary:
            missing = sorted(set(self.vocabulary) - set(vocabulary))
            extra = sorted(set(vocabulary) - set(self.vocabulary))
            raise VocabularyMismatch(
                f"the {what} has a vocabulary of {len(vocabulary)} elements, the dataset {len(self.vocabulary)}"
                f" (dataset only: {missing or 'none'}; {what} only: {extra or 'none'}"
                f"{'; same elements in another order' if not missing and not extra else ''}); actions would mean"
                " other elements: build the dataset with the same vocabulary")

    def check_env(self, env) -> None:
        """The env's action space must be this dataset's vocabulary (same elements, same order)."""
        self.check_vocabulary(env.vocabulary, "environment")

    # -- trajectories -----------------------------------------------------------------------------------

    def with_targets(self, targets: Targets, seed: int = 0,
                     params: tuple[float, float, float, float] = PAPER_A) -> FillDataset:
        """The same episodes with target p_hat = ``targets`` (a float) or drawn uniformly from (low, high) per
        episode, and paper a's terminal reward recomputed from each episode's labels for that target."""
        missing = np.isnan(self.episode_gap) | np.isnan(self.episode_e_form)
        if missing.any():
            raise DatasetError(f"{int(missing.sum())} episodes lack a gap or formation energy, so their reward "
                               "cannot be recomputed for another target; keep their logged rewards")
        if isinstance(targets, (tuple, list)):
            low, high = map(float, targets)
            if not low <= high:
                raise ConfigError(f"a target range needs low <= high, got {targets}")
            target = np.random.default_rng(seed).uniform(low, high, self.n_episodes)
        else:
            target = np.full(self.n_episodes, float(targets))
        reward = np.array([paper_a_reward(e, g, p, params) for e, g, p in
                           zip(self.episode_e_form, self.episode_gap, target)])
        info = {**self.info, "targets": list(targets) if isinstance(targets, (tuple, list)) else float(targets),
                "target_seed": seed, "reward": {"formula": "paper-a", "params": list(params)}}
        return replace(self, episode_target=target, episode_reward=reward, info=info)

    def transitions(self) -> dict[str, np.ndarray]:
        """Every step of every episode, in the layout of :class:`rlcsp.policies.dqn.ReplayBuffer` plus ``graph`` (the
        crystal) and ``episode``; ordered by step, then episode."""
        n = self.n_sites[self.episode_graph]
        width = self.episode_order.shape[1]
        rank = np.full(self.episode_order.shape, width)
        episode, step = np.nonzero(self.episode_order >= 0)
        rank[episode, self.episode_order[episode, step]] = step
        allowed = np.ones(len(self.vocabulary), dtype=bool)
        parts: list[dict[str, np.ndarray]] = []
        for t in range(width):
            e = np.flatnonzero(n > t)
            if not len(e):
                break
            last = n[e] == t + 1
            focus = self.episode_order[e, t]
            next_types = np.where(rank[e] <= t, self.episode_types[e], self.blank).astype(np.int16)
            parts.append({
                "episode": e, "graph": self.episode_graph[e], "target": self.episode_target[e].astype(np.float32),
                "types": np.where(rank[e] < t, self.episode_types[e], self.blank).astype(np.int16),
                "focus": focus, "action": self.episode_types[e, focus].astype(np.int64),
                "reward": np.where(last, self.episode_reward[e], 0.0).astype(np.float32),
                "next_types": next_types,
                "next_focus": np.where(last, n[e], self.episode_order[e, min(t + 1, width - 1)]),
                "done": last.astype(np.float32), "next_mask": fill_masks(next_types, allowed, self.max_elements)})
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    # -- persistence ------------------------------------------------------------------------------------

    def save(self, stem: str | Path, key: str = "", inputs: dict[str, Any] | None = None) -> None:
        """``stem.npz`` (arrays) and ``stem.json`` (manifest), written whole or not at all."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in self.ARRAYS}
        tmp = stem.with_name(stem.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        manifest = {"format": FORMAT, "version": VERSION, "key": key, "inputs": inputs or {},
                    "vocabulary": list(self.vocabulary), "max_elements": self.max_elements, "info": self.info,
                    "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()}}
        tmp.replace(stem.with_suffix(".npz"))
        stem.with_suffix(".json").write_text(json.dumps(manifest, indent=1, default=float))

    @classmethod
    def load(cls, stem: str | Path) -> FillDataset:
        stem = Path(stem)
        try:
            manifest = json.loads(stem.with_suffix(".json").read_text())
            data = np.load(stem.with_suffix(".npz"))
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot read the dataset {stem}(.json, .npz): {err}") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise DatasetError(f"{stem}.json is not an {FORMAT} v{VERSION} manifest")
        return cls(vocabulary=tuple(manifest["vocabulary"]), max_elements=manifest["max_elements"],
                   info=manifest["info"], **{name: data[name] for name in cls.ARRAYS})

    # -- builders ---------------------------------------------------------------------------------------

    @classmethod
    def from_crystals(cls, crystals: Iterable[tuple[str, Any, float, float]],
                      vocabulary: Sequence[str] = PAPER_A_VOCABULARY, orderings: int = ORDERINGS,
                      targets: Targets = 1.12, seed: int = 0, max_elements: int = 5,
                      params: tuple[float, float, float, float] = PAPER_A, source: str = "crystals",
                      skipped: Counter | None = None) -> FillDataset:
        """Expert episodes of ``(id, structure, E_form, gap)`` items; a structure is anything
        :func:`rlcsp.design.skeleton.make_skeleton` reads (CIF text or file, Atoms, Structure, CSV row)."""
        vocabulary = tuple(vocabulary)
        index = {el: i for i, el in enumerate(vocabulary)}
        skipped = Counter() if skipped is None else skipped
        examples: dict[str, str] = {}
        kept: list[tuple[str, Skeleton, list[int], float, float]] = []
        for crystal_id, source_item, e_form, gap in crystals:
            try:
                skeleton = make_skeleton(source_item, name=crystal_id, origin=f"{source} row {crystal_id}")
            except ConfigError as err:
                skipped["unreadable structure"] += 1
                examples.setdefault("unreadable structure", f"{crystal_id}: {err}")
                continue
            outside = sorted(set(skeleton.species) - set(index))
            if outside:
                skipped["element outside the vocabulary"] += 1
                examples.setdefault("element outside the vocabulary", f"{crystal_id}: {outside}")
                continue
            if len(set(skeleton.species)) > max_elements:
                skipped[f"more than {max_elements} elements"] += 1
                continue
            kept.append((crystal_id, skeleton, [index[s] for s in skeleton.species], e_form, gap))
        if skipped:
            detail = "; ".join(f"{n} {reason}" + (f" (e.g. {examples[reason]})" if reason in examples else "")
                               for reason, n in skipped.items())
            warnings.warn(f"{source}: skipped {sum(skipped.values())} of {len(kept) + sum(skipped.values())} "
                          f"crystals: {detail}", SkippedRows, stacklevel=2)
        if not kept:
            raise EmptyDataset(f"{source}: no crystal became a trajectory ({dict(skipped) or 'no input'})")
        dataset = cls._assemble(vocabulary, max_elements, kept, orderings)
        dataset.info = {"source": source, "counts": {"crystals": len(kept), "episodes": dataset.n_episodes,
                                                     "skipped": dict(skipped)}, "orderings": orderings}
        return dataset.with_targets(targets, seed, params)

    @classmethod
    def _assemble(cls, vocabulary: tuple[str, ...], max_elements: int,
                  kept: list[tuple[str, Skeleton, list[int], float, float]], orderings: int,
                  fillings: list[list[tuple[list[int], float | None, float | None, float, float]]] | None = None
                  ) -> FillDataset:
        """Arrays of crystals and their episodes: each crystal's own filling (expert data) under ``orderings`` BFS
        roots, or the given ``fillings`` per crystal (types, gap, E_form, target, reward) under each root."""
        blank, g_count = len(vocabulary), len(kept)
        width = max(s.n_sites for _, s, _, _, _ in kept)
        species = np.full((g_count, width), blank, dtype=np.int16)
        frac = np.zeros((g_count, width, 3))
        episodes: list[tuple[int, list[int], list[int], float, float, float, float]] = []
        for g, (_, skeleton, types, e_form, gap) in enumerate(kept):
            species[g, :skeleton.n_sites] = types
            frac[g, :skeleton.n_sites] = skeleton.frac_coords
            roots = range(min(orderings, skeleton.n_sites))
            crystal_fillings = [(types, gap, e_form, math.nan, math.nan)] if fillings is None else fillings[g]
            for filled, f_gap, f_e_form, target, reward in crystal_fillings:
                for root in roots:
                    episodes.append((g, skeleton.bfs_order(root), filled, f_gap, f_e_form, target, reward))
        order = np.full((len(episodes), width), -1, dtype=np.int64)
        filled_types = np.full((len(episodes), width), blank, dtype=np.int16)
        for e, (_, sites, filled, *_rest) in enumerate(episodes):
            order[e, :len(sites)] = sites
            filled_types[e, :len(filled)] = filled
        edges = [s.edges for _, s, _, _, _ in kept]

        def column(i: int) -> np.ndarray:
            return np.array([math.nan if ep[i] is None else ep[i] for ep in episodes], dtype=float)

        return cls(vocabulary=vocabulary, max_elements=max_elements,
                   ids=np.array([c for c, _, _, _, _ in kept]), cell=np.stack([s.cell for _, s, _, _, _ in kept]),
                   frac=frac, n_sites=np.array([s.n_sites for _, s, _, _, _ in kept]),
                   spacegroup=np.array([s.spacegroup for _, s, _, _, _ in kept]), species=species,
                   edges=np.concatenate(edges).astype(np.int64),
                   edge_ptr=np.concatenate([[0], np.cumsum([len(e) for e in edges])]).astype(np.int64),
                   gap=np.array([g for *_, g in kept], dtype=float),
                   e_form=np.array([e for _, _, _, e, _ in kept], dtype=float),
                   episode_graph=np.array([ep[0] for ep in episodes], dtype=np.int64), episode_order=order,
                   episode_types=filled_types, episode_gap=column(3), episode_e_form=column(4),
                   episode_target=column(5), episode_reward=column(6))

    @classmethod
    def from_csv(cls, path: str | Path, vocabulary: Sequence[str] = PAPER_A_VOCABULARY,
                 orderings: int = ORDERINGS, targets: Targets = 1.12, seed: int = 0,
                 columns: tuple[str, str] | None = None, limit: int | None = None, max_elements: int = 5,
                 params: tuple[float, float, float, float] = PAPER_A, cache: str | Path | None = None,
                 progress: bool = False) -> FillDataset:
        """Expert episodes of a CDVAE/MP-20 CSV (first ``limit`` rows); ``columns`` = (E_form, gap) label columns,
        found by name for MP-20 and perov_5. With ``cache`` the crystals are built once and read back after."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no CSV file {path}")
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), [])
        if columns is None:
            columns = next((pair for pair in LABEL_COLUMNS if set(pair) <= set(header)), None)
        if "cif" not in header or columns is None or not set(columns) <= set(header):
            raise ConfigError(f"{path} needs a 'cif' column and label columns (E_form, gap) {columns or LABEL_COLUMNS}"
                              f"; its columns are {header}")
        inputs = {"csv_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "columns": list(columns),
                  "vocabulary": list(vocabulary), "orderings": orderings, "limit": limit,
                  "max_elements": max_elements, "format": FORMAT, "version": VERSION}
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
        stem = Path(cache) / f"{path.stem}-{key}" if cache is not None else None
        if stem is not None and stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            return cls.load(stem).with_targets(targets, seed, params)

        skipped: Counter = Counter()

        def crystals():
            with open(path, newline="") as handle:
                rows = csv.DictReader(handle)
                if progress:
                    from tqdm import tqdm

                    with open(path, newline="") as again:
                        total = sum(1 for _ in csv.reader(again)) - 1
                    rows = tqdm(rows, desc=f"skeletons of {path.name}", unit="crystal",
                                total=total if limit is None else min(limit, total))
                for i, row in enumerate(rows):
                    if limit is not None and i >= limit:
                        break
                    try:
                        e_form, gap = float(row[columns[0]]), float(row[columns[1]])
                    except (TypeError, ValueError):
                        skipped["missing labels"] += 1
                        continue
                    if math.isnan(e_form) or math.isnan(gap):
                        skipped["missing labels"] += 1
                        continue
                    yield row.get("material_id") or str(i), row, e_form, gap

        dataset = cls.from_crystals(crystals(), vocabulary, orderings, targets, seed, max_elements, params,
                                    source=str(path), skipped=skipped)
        dataset.info["columns"] = list(columns)
        if stem is not None:
            dataset.save(stem, key, inputs)
        return dataset

    @classmethod
    def from_store(cls, store, run_ids: Sequence[int], vocabulary: Sequence[str] | None = None,
                   skeleton: Any = None, orderings: int = 1, targets: Targets | None = None, seed: int = 0,
                   max_elements: int = 5, params: tuple[float, float, float, float] = PAPER_A) -> FillDataset:
        """Episodes online agents logged (``rlcsp fill`` runs): each final filling under ``orderings`` BFS roots.

        The skeleton is the run script's (or ``skeleton``), the vocabulary the script's (or ``vocabulary``). The
        agent's own site order is not logged; the terminal reward depends only on the final filling, so any BFS
        order of it is a valid trajectory. Rewards are the logged ones under the run's target, or with
        ``targets`` paper a's reward of each episode's gap and formation energy (episodes without them skipped).
        """
        from rlcsp.design.fill import load_fill_script
        from rlcsp.design.fill_env import PAPER_B_VOCABULARY

        kept, fillings, skipped = [], [], Counter()
        for run_id in run_ids:
            config = store.run_info(run_id)["config"]
            if config.get("kind") != "fill":
                raise DatasetError(f"run {run_id} is not a fill run (its config has kind {config.get('kind')!r})")
            script = load_fill_script(config["script"]) if skeleton is None else {}
            run_skeleton = make_skeleton(skeleton if skeleton is not None else script["skeleton"])
            run_vocabulary = tuple(vocabulary or script.get("vocabulary", PAPER_B_VOCABULARY))
            if vocabulary is None and kept and run_vocabulary != kept[0][0]:
                raise VocabularyMismatch(f"run {run_id} uses another vocabulary than run {run_ids[0]}; pass "
                                         "vocabulary= to map both onto one")
            index = {el: i for i, el in enumerate(run_vocabulary)}
            rows = []
            for episode in store.episodes(run_id):
                symbols = episode.get("species") or []
                if len(symbols) != run_skeleton.n_sites:
                    raise DatasetError(f"run {run_id} episode {episode['episode']} fills {len(symbols)} sites, "
                                       f"the skeleton {run_skeleton.name} has {run_skeleton.n_sites}")
                outside = sorted(set(symbols) - set(index))
                if outside:
                    raise VocabularyMismatch(f"run {run_id} episode {episode['episode']} places {outside}, which "
                                             f"the vocabulary {list(run_vocabulary)} lacks")
                has_labels = episode.get("gap") is not None and episode.get("e_form") is not None
                if targets is not None and not has_labels:
                    skipped["no gap or formation energy to relabel"] += 1
                    continue
                rows.append(([index[s] for s in symbols], episode.get("gap"), episode.get("e_form"),
                             float(config.get("target", math.nan)), float(episode["reward"])))
            if rows:
                kept.append((run_vocabulary, f"run{run_id}", run_skeleton))
                fillings.append(rows)
        if skipped:
            warnings.warn(f"store {store.url}: skipped {sum(skipped.values())} episodes: {dict(skipped)}",
                          SkippedRows, stacklevel=2)
        if not kept:
            raise EmptyDataset(f"no logged episodes in runs {list(run_ids)} of {store.url}")
        run_vocabulary = kept[0][0]
        blank_types = [[len(run_vocabulary)] * s.n_sites for _, _, s in kept]
        dataset = cls._assemble(run_vocabulary, max_elements, [(name, s, types, math.nan, math.nan)
                                 for (_, name, s), types in zip(kept, blank_types)], orderings, fillings)
        dataset.info = {"source": f"{store.url} runs {list(run_ids)}", "orderings": orderings,
                        "counts": {"crystals": len(kept), "episodes": dataset.n_episodes, "skipped": dict(skipped)},
                        "reward": {"formula": "logged"}}
        return dataset if targets is None else dataset.with_targets(targets, seed, params)
