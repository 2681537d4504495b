"""Copy runs between stores, so that walkers can move to a machine that cannot reach the shared database and back.

A GPU machine starts bare and exchanges only files with the one that holds the campaign's database: the
unfinished runs go there in an SQLite file (``rlcsp copy DB carry.db --unfinished``), the walkers continue into
it, and what they added comes back (``rlcsp copy carry.db DB``). A run is the same run in every store by its
``uid``. Copying brings the destination's copy up to the source's: a run it lacks arrives whole; one it holds
receives the steps, structures and policy parameters after its last stored relaxation, then the source's
checkpoint, counters, status and config (a larger budget). A destination that is as far as or ahead of its source
is left alone, so copying an old file back never rolls a run back. Each run moves in one transaction.
Composition-design runs (episodes, DFT calls, gap models) are not copied: they are counted as skipped.
"""
from __future__ import annotations

from rlcsp.db.connection import StoreError
from rlcsp.db.store import Store

RUN_COLUMNS = ("uid", "name", "composition", "policy", "policy_id", "seed", "calculator", "config", "code_version",
               "status", "best_energy", "gm_relaxation", "relaxations", "state", "created_at", "updated_at")
PROGRESS = ("config", "code_version", "status", "best_energy", "gm_relaxation", "relaxations", "state", "updated_at")
STRUCTURE_COLUMNS = ("relaxation", "formula", "n_atoms", "energy", "fingerprint", "atoms", "genome")
STEP_COLUMNS = ("relaxation", "kind", "move", "attempts", "outcome", "e_new", "e_current", "e_global",
                "temperature", "is_unique", "n_atoms", "build_s", "relax_s", "policy_s", "failure", "reward")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def needs_structures(config: str) -> bool:
    """Whether a run resumes from its stored structures: not when its uniqueness is FUSE's energy rule, which a
    resumed run rebuilds from its steps (rlcsp.csp.uniqueness.EnergyIndex)."""
    import json

    from rlcsp.csp.quirks import resolve

    data = json.loads(config)
    return "energy_uniqueness" not in resolve(data.get("fuse"), data.get("quirks"), data.get("without"))


def copy_runs(source: Store, dest: Store, unfinished: bool = False, lean: bool = False) -> dict[str, int]:
    """Bring ``dest`` up to ``source`` for every run of ``source`` (only those not finished with ``unfinished``);
    how many runs were new, brought forward, already current, skipped, and how many rows moved.

    ``lean`` leaves out the structures of runs that do not resume from them (needs_structures): a carry for
    walkers that goes back to the store it came from, which holds them.
    """
    if source.url == dest.url:
        raise StoreError(f"copying {source.url} into itself; name another destination")
    where = " WHERE status <> 'finished'" if unfinished else ""
    runs = [dict(zip(("id", *RUN_COLUMNS), row)) for row in source.db.query(
        f"SELECT id, {', '.join(RUN_COLUMNS)} FROM runs{where} ORDER BY id")]
    design = {row[0] for table in ("episodes", "fill_dft_calls") for row in source.db.query(
        f"SELECT DISTINCT run_id FROM {table} WHERE run_id IS NOT NULL")}
    counts = dict.fromkeys(("new", "forward", "current", "skipped", "steps", "structures", "policy_params"), 0)
    for run in runs:
        if run["id"] in design:
            counts["skipped"] += 1
            continue
        structures = not lean or needs_structures(run["config"])
        dest.db.run(lambda tx: _copy_run(source, tx, run, structures, counts), lock=True,
                    what=f"copy run {run['uid']}")
    return counts


def _copy_run(source: Store, tx, run: dict, with_structures: bool, counts: dict[str, int]) -> None:
    """One run, in the destination's transaction ``tx`` (idempotent: it re-reads what the destination holds)."""
    held = tx.one("SELECT id, relaxations FROM runs WHERE uid = ?", (run["uid"],))
    if held is None:
        run_id, since, what = tx.insert(_insert("runs", RUN_COLUMNS), tuple(run[c] for c in RUN_COLUMNS)), 0, "new"
    elif held[1] >= run["relaxations"]:
        counts["current"] += 1
        return
    else:
        run_id, what = held[0], "forward"
        since = tx.one("SELECT MAX(relaxation) FROM steps WHERE run_id = ?", (run_id,))[0] or 0
        tx.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in PROGRESS)} WHERE id = ?",
                   (*(run[c] for c in PROGRESS), run_id))
    structures = source.db.query(f"SELECT {', '.join(STRUCTURE_COLUMNS)} FROM structures "
                                 "WHERE run_id = ? AND relaxation > ? ORDER BY relaxation",
                                 (run["id"], since)) if with_structures else []
    tx.executemany(_insert("structures", ("run_id", *STRUCTURE_COLUMNS)), [(run_id, *row) for row in structures])
    ids = dict(tx.all("SELECT relaxation, id FROM structures WHERE run_id = ? AND relaxation > ?", (run_id, since)))
    steps = source.db.query(f"SELECT {', '.join(STEP_COLUMNS)}, structure_id FROM steps "
                            "WHERE run_id = ? AND relaxation > ? ORDER BY relaxation", (run["id"], since))
    # a step's structure is the one stored at the same relaxation
    tx.executemany(_insert("steps", ("run_id", *STEP_COLUMNS, "structure_id")),
                   [(run_id, *row[:-1], ids.get(row[0]) if row[-1] is not None else None) for row in steps])
    # A walker's own policy is named by its run id; a shared one (runs.policy_id) keeps its name, and its versions
    # written by other runs come along with the first of them copied.
    moved = 0
    for own, theirs in ((f"run{run['id']}", f"run{run_id}"), (run["policy_id"], run["policy_id"])):
        if own is None:
            continue
        last = tx.one("SELECT MAX(update_no) FROM policy_params WHERE policy_id = ?", (theirs,))[0] or 0
        params = source.db.query("SELECT p.update_no, p.params, p.created_at, r.uid FROM policy_params p "
                                 "LEFT JOIN runs r ON r.id = p.run_id WHERE p.policy_id = ? AND p.update_no > ? "
                                 "ORDER BY p.update_no", (own, last))
        writers = {uid: row[0] for uid in {p[3] for p in params}
                   if (row := tx.one("SELECT id FROM runs WHERE uid = ?", (uid,)))}
        tx.executemany(_insert("policy_params", ("policy_id", "update_no", "run_id", "params", "created_at")),
                       [(theirs, number, writers.get(uid), text, at) for number, text, at, uid in params])
        moved += len(params)
    counts[what] += 1
    counts["structures"] += len(structures)
    counts["steps"] += len(steps)
    counts["policy_params"] += moved
