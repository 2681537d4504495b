"""The run store: every run, step, new structure, policy update and DFT call, one transaction per step.

A step's transaction holds its step row, the structure row when the structure is new, and the walker's full
state (genome, energies, counters, RNG and policy state), so a killed run resumes from its last committed step
and continues exactly as if it had never stopped.
"""
from __future__ import annotations

import base64
import json
import re
import struct
import time
from dataclasses import asdict
from typing import Any, Callable

import numpy as np
from ase import Atoms

from rlcsp.db.connection import Database, StoreError
from rlcsp.db.schema import create_schema, new_uid

STEP_COLUMNS = ("relaxation", "kind", "move", "attempts", "outcome", "e_new", "e_current", "e_global",
                "temperature", "is_unique", "n_atoms", "build_s", "relax_s", "policy_s", "failure", "reward")


PACKED = "f64:"  # the packed form's prefix; JSON (older rows and checkpoints) starts with "{"


def atoms_to_text(atoms: Atoms) -> str:
    """A periodic structure, bit for bit, in about a third of its JSON: species, periodicity, cell and positions as
    little-endian bytes (float64), base64-encoded so that any text column and JSON document can hold it."""
    numbers = atoms.numbers
    if numbers.size and (numbers.min() < 0 or numbers.max() > 255):
        raise ValueError(f"atomic numbers must lie in 0..255 to be stored, got {numbers.min()}..{numbers.max()}")
    data = b"".join((struct.pack("<I", len(atoms)), np.asarray(atoms.pbc, "<u1").tobytes(),
                     numbers.astype("<u1").tobytes(), np.asarray(atoms.cell.array, "<f8").tobytes(),
                     np.asarray(atoms.positions, "<f8").tobytes()))
    return PACKED + base64.b64encode(data).decode("ascii")


def atoms_from_text(text: str) -> Atoms:
    """A structure stored by atoms_to_text, or as the JSON of schema versions 1-2."""
    if not text.startswith(PACKED):
        data = json.loads(text)
        return Atoms(numbers=data["numbers"], cell=data["cell"], positions=data["positions"], pbc=data["pbc"])
    data = base64.b64decode(text[len(PACKED):])
    n = struct.unpack_from("<I", data)[0]
    pbc = np.frombuffer(data, "<u1", 3, 4).astype(bool)
    numbers = np.frombuffer(data, "<u1", n, 7).astype(int)
    cell = np.frombuffer(data, "<f8", 9, 7 + n).reshape(3, 3)
    positions = np.frombuffer(data, "<f8", 3 * n, 7 + n + 72).reshape(n, 3)
    return Atoms(numbers=numbers, cell=cell, positions=positions, pbc=pbc)


class Store:
    """High-level access to the rlcsp schema; ``url`` is ``sqlite:///path`` or ``mysql://user@host/db``."""

    def __init__(self, url: str, outage_s: float = 120.0, create: bool = True):
        """``create=False``: open an existing store to read it, changing nothing (no database, file or schema)."""
        self.db = Database(url, outage_s=outage_s, create=create)
        if create:
            create_schema(self.db)

    @property
    def url(self) -> str:
        return self.db.url.redacted()

    def close(self) -> None:
        self.db.close()

    # -- runs -----------------------------------------------------------------------------------------

    def create_run(self, config: dict[str, Any], name: str, composition: str, policy: str, seed: int,
                   calculator: str, code_version: str, policy_id: str | None = None) -> int:
        now = time.time()
        return self.db.run(lambda tx: tx.insert(
            "INSERT INTO runs (uid, name, composition, policy, policy_id, seed, calculator, config, code_version, "
            "status, relaxations, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', 0, ?, ?)",
            (new_uid(), name, composition, policy, policy_id, seed, calculator, json.dumps(config, sort_keys=True),
             code_version, now, now)), what="create run")

    def find_run(self, config: dict[str, Any], which: str = "unfinished") -> int | None:
        """The newest run with exactly this configuration: ``which`` is 'unfinished' (to rerun into the same
        store), 'finished' (a comparison skips it) or 'any' (a fill run asked for more episodes continues it)."""
        status = {"unfinished": " AND status <> 'finished'", "finished": " AND status = 'finished'", "any": ""}
        if which not in status:
            raise ValueError(f"which must be one of {sorted(status)}, got {which!r}")
        row = self.db.query(f"SELECT id FROM runs WHERE config = ?{status[which]} ORDER BY id DESC",
                            (json.dumps(config, sort_keys=True),))
        return row[0][0] if row else None

    def run_info(self, run_id: int) -> dict[str, Any]:
        rows = self.db.query("SELECT id, name, composition, policy, policy_id, seed, calculator, config, status, "
                             "best_energy, gm_relaxation, relaxations, state, created_at, updated_at, code_version "
                             "FROM runs WHERE id = ?", (run_id,))
        if not rows:
            known = [r[0] for r in self.db.query("SELECT id FROM runs ORDER BY id DESC LIMIT 10")]
            raise StoreError(f"no run {run_id} in {self.url}; recent run ids: {known or 'none'} "
                             "(list them with `rlcsp runs`)")
        keys = ("id", "name", "composition", "policy", "policy_id", "seed", "calculator", "config", "status",
                "best_energy", "gm_relaxation", "relaxations", "state", "created_at", "updated_at", "code_version")
        info = dict(zip(keys, rows[0]))
        info["config"] = _in_formula_order(json.loads(info["config"]), info["composition"])
        info["state"] = json.loads(info["state"]) if info["state"] else None
        return info

    def list_runs(self) -> list[dict[str, Any]]:
        keys = ("id", "name", "composition", "policy", "seed", "status", "best_energy", "gm_relaxation",
                "relaxations")
        rows = self.db.query("SELECT id, name, composition, policy, seed, status, best_energy, gm_relaxation, "
                             "relaxations FROM runs ORDER BY id")
        return [dict(zip(keys, row)) for row in rows]

    def add_code_version(self, run_id: int, version: str) -> None:
        """A resumed run notes the code that continues it after the code that ran it so far: 'a > b'. Past 191
        characters (MySQL's key length) the middle ones give way to '...'."""
        def work(tx) -> None:
            old = tx.one("SELECT code_version FROM runs WHERE id = ?", (run_id,))[0]
            versions = old.split(" > ")
            if versions[-1] == version:
                return
            versions.append(version)
            while len(" > ".join(versions)) > 191 and len(versions) > 3:
                del versions[2 if versions[1] == "..." else 1]
                if versions[1] != "...":
                    versions.insert(1, "...")
            tx.execute("UPDATE runs SET code_version = ? WHERE id = ?", (" > ".join(versions), run_id))

        self.db.run(work, lock=True, what="record code version")

    def set_status(self, run_id: int, status: str) -> None:
        self.db.run(lambda tx: tx.execute("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?",
                                          (status, time.time(), run_id)), what="update run status")

    # -- steps ----------------------------------------------------------------------------------------

    def record_step(self, run_id: int, record, state: dict[str, Any], structure: dict[str, Any] | None = None,
                    reward: float | None = None, best_energy: float | None = None,
                    gm_relaxation: int | None = None, policy_params: dict[str, Any] | None = None) -> None:
        """One step, its new structure, changed policy parameters and the walker state, atomically.

        Safe to retry after a lost commit: a step already stored is left alone.
        """
        row = asdict(record)
        row["is_unique"] = int(row.pop("unique"))
        row["reward"] = reward
        values = tuple(row[c] for c in STEP_COLUMNS)
        state_json = json.dumps(state)

        def work(tx) -> None:
            if tx.one("SELECT 1 FROM steps WHERE run_id = ? AND relaxation = ?", (run_id, record.relaxation)):
                return  # committed before the connection dropped
            structure_id = None
            if structure is not None:
                structure_id = tx.insert(
                    "INSERT INTO structures (run_id, relaxation, formula, n_atoms, energy, fingerprint, atoms, "
                    "genome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, record.relaxation, structure["atoms"].get_chemical_formula(),
                     len(structure["atoms"]), structure["energy"], structure.get("fingerprint"),
                     atoms_to_text(structure["atoms"]), json.dumps(structure["genome"], separators=(",", ":"))))
            tx.execute(f"INSERT INTO steps (run_id, {', '.join(STEP_COLUMNS)}, structure_id) "
                       f"VALUES (?, {', '.join('?' * len(STEP_COLUMNS))}, ?)", (run_id, *values, structure_id))
            if policy_params is not None:
                policy_id = f"run{run_id}"
                row = tx.one("SELECT MAX(update_no) FROM policy_params WHERE policy_id = ?", (policy_id,))
                tx.execute("INSERT INTO policy_params (policy_id, update_no, run_id, params, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", (policy_id, (row[0] or 0) + 1, run_id,
                                                      json.dumps(policy_params), time.time()))
            tx.execute("UPDATE runs SET relaxations = ?, state = ?, best_energy = ?, gm_relaxation = ?, "
                       "updated_at = ? WHERE id = ?",
                       (record.relaxation, state_json, best_energy, gm_relaxation, time.time(), run_id))

        # Take SQLite's write lock up front: a read-then-write transaction in WAL mode fails at once, busy
        # timeout or not, when another walker commits in between.
        self.db.run(work, lock=True, what=f"record step {record.relaxation}")

    def steps(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.db.query(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE run_id = ? ORDER BY relaxation",
                             (run_id,))
        return [dict(zip(STEP_COLUMNS, row)) for row in rows]

    def structures(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT relaxation, energy, atoms, genome FROM structures WHERE run_id = ? "
                             "ORDER BY relaxation", (run_id,))
        return [{"relaxation": r[0], "energy": r[1], "atoms": atoms_from_text(r[2]), "genome": json.loads(r[3])}
                for r in rows]

    def count(self, table: str, run_id: int) -> int:
        if table not in ("steps", "structures"):
            raise ValueError(f"not a per-run table: {table!r}")
        return self.db.query(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,))[0][0]

    # -- shared policies ------------------------------------------------------------------------------

    def latest_params(self, policy_id: str) -> tuple[int, dict[str, Any]] | None:
        rows = self.db.query("SELECT update_no, params FROM policy_params WHERE policy_id = ? "
                             "ORDER BY update_no DESC LIMIT 1", (policy_id,))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    def update_params(self, policy_id: str, update: Callable[[dict[str, Any] | None], dict[str, Any]],
                      run_id: int | None = None) -> int:
        """Read the newest parameters, apply ``update`` and write the result as the next version, atomically.

        Concurrent writers serialise on the newest row (FOR UPDATE in MySQL, the write lock in SQLite), and the
        UNIQUE (policy_id, update_no) key turns any remaining race into a retry, so no update is lost.
        """
        lock = " FOR UPDATE" if self.db.dialect == "mysql" else ""

        def work(tx) -> int:
            row = tx.one(f"SELECT update_no, params FROM policy_params WHERE policy_id = ? "
                         f"ORDER BY update_no DESC LIMIT 1{lock}", (policy_id,))
            number, params = (row[0], json.loads(row[1])) if row else (0, None)
            tx.execute("INSERT INTO policy_params (policy_id, update_no, run_id, params, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (policy_id, number + 1, run_id, json.dumps(update(params)),
                                                  time.time()))
            return number + 1

        for _ in range(100):
            try:
                return self.db.run(work, lock=True, what="policy update")
            except Exception as err:  # a duplicate update_no from a concurrent writer: read again
                if "UNIQUE" not in str(err) and "Duplicate" not in str(err) and "Deadlock" not in str(err):
                    raise
        raise StoreError(f"policy {policy_id!r}: could not apply an update after 100 conflicting attempts")

    def param_history(self, policy_id: str) -> list[tuple[int, dict[str, Any]]]:
        rows = self.db.query("SELECT update_no, params FROM policy_params WHERE policy_id = ? ORDER BY update_no",
                             (policy_id,))
        return [(r[0], json.loads(r[1])) for r in rows]

    # -- DFT cache ------------------------------------------------------------------------------------

    def dft_get(self, key: str) -> dict[str, Any] | None:
        rows = self.db.query("SELECT record FROM dft_calls WHERE cache_key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def dft_put(self, key: str, record: dict[str, Any]) -> None:
        values = (str(record.get("outcome", "")), record.get("energy"), record.get("band_gap"), record.get("wall_s"),
                  json.dumps(record), time.time())

        def work(tx) -> None:
            if tx.one("SELECT 1 FROM dft_calls WHERE cache_key = ?", (key,)):  # the newest record wins
                tx.execute("UPDATE dft_calls SET outcome = ?, energy = ?, band_gap = ?, wall_s = ?, record = ?, "
                           "created_at = ? WHERE cache_key = ?", (*values, key))
                return
            tx.execute("INSERT INTO dft_calls (cache_key, outcome, energy, band_gap, wall_s, record, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (key, *values))

        self.db.run(work, lock=True, what="record DFT call")

    # calculators.espresso's DftCache protocol: a Store is a cache shared by every process using the database.
    get = dft_get
    put = dft_put

    # -- composition filling --------------------------------------------------------------------------

    def record_episode(self, run_id: int | None, agent: str, episode: int, reward: float | None,
                       data: dict[str, Any]) -> None:
        self.db.run(lambda tx: tx.execute(
            "INSERT INTO episodes (run_id, agent, episode, reward, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, agent, episode, reward, json.dumps(data), time.time())), what=f"record episode {episode}")

    def episodes(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT agent, episode, reward, data FROM episodes WHERE run_id = ? ORDER BY id",
                             (run_id,))
        return [{"agent": r[0], "episode": r[1], "reward": r[2], **json.loads(r[3])} for r in rows]

    def log_dft_call(self, run_id: int | None, episode: int, formula: str, result,
                     model_gap: float | None = None) -> None:
        """One DFT request of a fill run (``result`` a calculators.espresso.DftResult), cache hit or not."""
        self.db.run(lambda tx: tx.execute(
            "INSERT INTO fill_dft_calls (run_id, episode, cache_key, outcome, formula, band_gap, model_gap, wall_s, "
            "from_cache, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, episode, result.key or None, result.outcome.value, formula, result.band_gap, model_gap,
             result.wall_s, int(result.from_cache), time.time())), what="log DFT call")

    def fill_dft_calls(self, run_id: int | None) -> list[dict[str, Any]]:
        keys = ("episode", "cache_key", "outcome", "formula", "band_gap", "model_gap", "wall_s", "from_cache")
        where, args = ("run_id = ?", (run_id,)) if run_id is not None else ("run_id IS NULL", ())
        rows = self.db.query(f"SELECT {', '.join(keys)} FROM fill_dft_calls WHERE {where} ORDER BY id", args)
        return [dict(zip(keys, r)) for r in rows]

    def add_gap_model(self, model_id: str, version: int, reason: str, n_samples: int, state: str,
                      run_id: int | None = None, episode: int | None = None) -> None:
        self.db.run(lambda tx: tx.execute(
            "INSERT INTO gap_models (model_id, version, run_id, episode, reason, n_samples, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (model_id, version, run_id, episode, reason, n_samples, state,
                                                time.time())), what=f"record gap model {model_id} v{version}")

    def gap_models(self, model_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT version, reason, n_samples, state FROM gap_models WHERE model_id = ? "
                             "ORDER BY version", (model_id,))
        return [{"version": r[0], "reason": r[1], "n_samples": r[2], "state": r[3]} for r in rows]

    def log_finetune(self, model_id: str, version: int, run_id: int | None, episode: int | None,
                     losses: list[float], predictions: list[float], label: float) -> None:
        now = time.time()

        def work(tx) -> None:
            for step, (loss, prediction) in enumerate(zip(losses, predictions), start=1):
                tx.execute("INSERT INTO finetune_steps (model_id, version, run_id, episode, step, loss, prediction, "
                           "label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (model_id, version, run_id, episode, step, loss, prediction, label, now))

        self.db.run(work, what=f"log fine-tuning of {model_id} v{version}")

    def finetune_steps(self, model_id: str) -> list[dict[str, Any]]:
        keys = ("version", "episode", "step", "loss", "prediction", "label")
        rows = self.db.query(f"SELECT {', '.join(keys)} FROM finetune_steps WHERE model_id = ? ORDER BY id",
                             (model_id,))
        return [dict(zip(keys, r)) for r in rows]

    def drop_fill_after(self, run_id: int, episode: int, step: int) -> None:
        """Forget a fill run's rows after ``episode`` (and agent ``step``): a resumed run replays them."""
        def work(tx) -> None:
            for table in ("episodes", "fill_dft_calls", "finetune_steps", "gap_models"):
                tx.execute(f"DELETE FROM {table} WHERE run_id = ? AND episode > ?", (run_id, episode))
            tx.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))

        self.db.run(work, lock=True, what=f"drop rows of run {run_id} after episode {episode}")

    def log_metrics(self, run_id: int, step: int, values: dict[str, float]) -> None:
        now = time.time()

        def work(tx) -> None:
            for name, value in values.items():
                tx.execute("INSERT INTO metrics (run_id, step, name, value, created_at) VALUES (?, ?, ?, ?, ?)",
                           (run_id, step, name, value, now))

        self.db.run(work, what="log metrics")

    def metrics(self, run_id: int, name: str) -> list[tuple[int, float]]:
        rows = self.db.query("SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY id",
                             (run_id, name))
        return [(r[0], r[1]) for r in rows]


def _in_formula_order(config: dict[str, Any], formula: str | None) -> dict[str, Any]:
    """The stored config with its composition's elements back in the order of the run's formula.

    Configs are stored as sorted JSON (so equal searches compare equal), which puts Y2Ti2O7's elements in the
    order O, Ti, Y; the element order is the formula unit's (genomes, labels), so a resumed run takes it back from
    the formula stored beside the config instead of calling itself O7Ti2Y2.
    """
    composition = config.get("composition")
    order = re.findall(r"[A-Z][a-z]?", formula or "")
    if isinstance(composition, dict) and sorted(order) == sorted(composition):
        config["composition"] = {element: composition[element] for element in order}
    return config
