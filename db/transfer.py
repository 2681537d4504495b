"""Copy runs between stores, so that walkers can move to a machine that cannot reach the shared database and back.

A GPU machine starts bare and exchanges only files with the one that holds the campaign's database: the walkers go
there in an SQLite file (``rlcsp copy DB carry.db --lean``), continue into it, and what they added comes back
(``rlcsp copy carry.db DB``). A run is the same run in every store by its ``uid``. Copying brings the
destination's copy up to the source's: a run it lacks arrives whole; one it holds receives the steps, structures
and policy parameters after its last stored relaxation, then the source's checkpoint, counters, status and config
(a larger budget). A destination that is as far as or ahead of its source is left alone, so copying an old file
back never rolls a run back, and a source run without the steps it counts (a lean copy's finished run) never
makes or moves one. Each run moves in one transaction. Composition-design runs (episodes, DFT calls, gap models)
are not copied: they are counted as skipped.

A copy ``after`` an older state of the source holds only what the source added since (a campaign's delta: the
rows after each run's relaxations there, the policy versions after its last one there), so that a campaign's
history is kept as one small file per slice; copied in order into an empty store, the deltas make the whole store
again. A run whose rows begin after the destination's last relaxation (a delta copied out of order) is left out
as a gap.
"""
from __future__ import annotations

from collections.abc import Collection

from rlcsp.db.connection import StoreError
from rlcsp.db.store import STEP_COLUMNS, Store

RUN_COLUMNS = ("uid", "name", "composition", "policy", "policy_id", "seed", "calculator", "config", "code_version",
               "status", "best_energy", "gm_relaxation", "relaxations", "state", "created_at", "updated_at")
PROGRESS = ("config", "code_version", "status", "best_energy", "gm_relaxation", "relaxations", "state", "updated_at")
STRUCTURE_COLUMNS = ("relaxation", "formula", "n_atoms", "energy", "fingerprint", "atoms", "genome")
TIMINGS = {STEP_COLUMNS.index(c) for c in ("build_s", "relax_s", "policy_s")}


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def rows_to_carry(run: dict) -> str:
    """What a lean copy takes of a run: 'run' (the row alone: a finished run, which its walker only needs to see
    finished), 'steps' (no structures: FUSE's energy uniqueness rebuilds from the steps, rlcsp.csp.uniqueness) or
    'all' (StructureMatcher uniqueness resumes from every stored structure)."""
    import json

    from rlcsp.csp.quirks import resolve

    if run["status"] == "finished":
        return "run"
    data = json.loads(run["config"])
    return "steps" if "energy_uniqueness" in resolve(data.get("fuse"), data.get("quirks"), data.get("without")) \
        else "all"


def copy_runs(source: Store, dest: Store, lean: bool = False, progress: bool = False,
              after: Store | None = None, runs: Collection[int] | None = None) -> dict[str, int]:
    """Bring ``dest`` up to ``source`` for every run of ``source``: how many runs were new, brought forward,
    already as far, left out (composition design; a run whose source lacks its steps, or whose rows begin after the
    destination's last), and how many rows moved.

    ``lean`` takes of each run only what its walker needs to go on (rows_to_carry): a carry that comes back to the
    store it came from, which holds the rest. ``after`` (an older state of ``source``) takes only what the source
    added since. ``runs`` (ids in ``source``) copies only those: a campaign too large for one carry walks in parts.
    """
    if source.url == dest.url:
        raise StoreError(f"copying {source.url} into itself; name another destination")
    if lean and after is not None:
        raise StoreError("a lean copy goes on walking, a copy after an older store keeps history: choose one")
    wanted = None if runs is None else set(runs)
    chosen = [dict(zip(("id", *RUN_COLUMNS), row)) for row in source.db.query(
        f"SELECT id, {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id") if wanted is None or row[0] in wanted]
    if wanted is not None and len(chosen) < len(wanted):
        missing = sorted(wanted - {run["id"] for run in chosen})
        raise StoreError(f"no run {', '.join(map(str, missing[:10]))} in {source.url} (list them with `rlcsp runs`)")
    design = {row[0] for table in ("episodes", "fill_dft_calls") for row in source.db.query(
        f"SELECT DISTINCT run_id FROM {table} WHERE run_id IS NOT NULL")}
    step_span = {run_id: (first, last) for run_id, first, last in source.db.query(
        "SELECT run_id, MIN(relaxation), MAX(relaxation) FROM steps GROUP BY run_id")}
    older = {}  # uid: (relaxations, last version of its own policy, of its shared one) in ``after``
    if after is not None:
        versions = dict(after.db.query("SELECT policy_id, MAX(update_no) FROM policy_params GROUP BY policy_id"))
        older = {uid: (relaxations, versions.get(f"run{run_id}", 0), versions.get(shared, 0)) for run_id, uid,
                 relaxations, shared in after.db.query("SELECT id, uid, relaxations, policy_id FROM runs")}
    counts = dict.fromkeys(("new", "forward", "current", "skipped", "partial", "gap", "steps", "structures",
                            "policy_params"), 0)
    from tqdm import tqdm

    for run in tqdm(chosen, unit="run", disable=not progress, desc=f"copy to {dest.url}"):
        if run["id"] in design:
            counts["skipped"] += 1
            continue
        first, last = step_span.get(run["id"], (1, 0))
        run["complete"], run["first"] = last == run["relaxations"], first
        run["older"] = older.get(run["uid"], (0, 0, 0))
        if run["relaxations"] <= run["older"][0]:
            counts["current"] += 1
            continue
        rows = rows_to_carry(run) if lean else "all"
        dest.db.run(lambda tx: _copy_run(source, tx, run, rows, counts, lean), lock=True,
                    what=f"copy run {run['uid']}")
    return counts


def _copy_run(source: Store, tx, run: dict, rows: str, counts: dict[str, int], lean: bool = False) -> None:
    """One run, in the destination's transaction ``tx`` (idempotent: it re-reads what the destination holds).

    Lean, a policy travels as its newest version alone: a walker resumes its own policy from its checkpoint and a
    shared one from the newest version, and the versions before are history (half a campaign's carry, where
    RLCSP's REINFORCE writes one every relaxation), which the store the carry returns to holds; and the steps'
    timings travel to the millisecond (the store keeps them whole: a carry brings back only the steps after)."""
    held = tx.one("SELECT id, relaxations FROM runs WHERE uid = ?", (run["uid"],))
    if held is not None and held[1] >= run["relaxations"]:
        counts["current"] += 1
        return
    if not run["complete"]:  # a lean copy's finished run: its row alone, which must not make or move a run
        counts["partial"] += 1
        return
    since = 0 if held is None else tx.one("SELECT MAX(relaxation) FROM steps WHERE run_id = ?", (held[0],))[0] or 0
    # what is copied starts after both the destination's last row and ``after``'s: a source that is itself a delta
    # (a device walk's) copies ``after`` its store into an empty file
    since = max(since, run["older"][0])
    if run["first"] > since + 1:  # a delta copied before the one before it
        counts["gap"] += 1
        return
    if held is None:
        run_id, what = tx.insert(_insert("runs", RUN_COLUMNS), tuple(run[c] for c in RUN_COLUMNS)), "new"
    else:
        run_id, what = held[0], "forward"
        tx.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in PROGRESS)} WHERE id = ?",
                   (*(run[c] for c in PROGRESS), run_id))
    if rows == "run":
        counts[what] += 1
        return
    structures = source.db.query(f"SELECT {', '.join(STRUCTURE_COLUMNS)} FROM structures "
                                 "WHERE run_id = ? AND relaxation > ? ORDER BY relaxation",
                                 (run["id"], since)) if rows == "all" else []
    tx.executemany(_insert("structures", ("run_id", *STRUCTURE_COLUMNS)), [(run_id, *row) for row in structures])
    ids = dict(tx.all("SELECT relaxation, id FROM structures WHERE run_id = ? AND relaxation > ?", (run_id, since)))
    steps = source.db.query(f"SELECT {', '.join(STEP_COLUMNS)}, structure_id FROM steps "
                            "WHERE run_id = ? AND relaxation > ? ORDER BY relaxation", (run["id"], since))
    if lean:  # the timings, to the millisecond: full precision was half the carry's steps packed
        steps = [tuple(round(v, 3) if k in TIMINGS and v is not None else v for k, v in enumerate(row))
                 for row in steps]
    # a step's structure is the one stored at the same relaxation
    tx.executemany(_insert("steps", ("run_id", *STEP_COLUMNS, "structure_id")),
                   [(run_id, *row[:-1], ids.get(row[0]) if row[-1] is not None else None) for row in steps])
    # A walker's own policy is named by its run id; a shared one (runs.policy_id) keeps its name, and its versions
    # written by other runs come along with the first of them copied.
    moved = 0
    for own, theirs, older in ((f"run{run['id']}", f"run{run_id}", run["older"][1]),
                               (run["policy_id"], run["policy_id"], run["older"][2])):
        if own is None:
            continue
        last = max(older, tx.one("SELECT MAX(update_no) FROM policy_params WHERE policy_id = ?", (theirs,))[0] or 0)
        params = source.db.query("SELECT p.update_no, p.params, p.created_at, r.uid FROM policy_params p "
                                 "LEFT JOIN runs r ON r.id = p.run_id WHERE p.policy_id = ? AND p.update_no > ? "
                                 + ("ORDER BY p.update_no DESC LIMIT 1" if lean else "ORDER BY p.update_no"),
                                 (own, last))
        writers = {uid: row[0] for uid in {p[3] for p in params}
                   if (row := tx.one("SELECT id FROM runs WHERE uid = ?", (uid,)))}
        tx.executemany(_insert("policy_params", ("policy_id", "update_no", "run_id", "params", "created_at")),
                       [(theirs, number, writers.get(uid), text, at) for number, text, at, uid in params])
        moved += len(params)
    counts[what] += 1
    counts["structures"] += len(structures)
    counts["steps"] += len(steps)
    counts["policy_params"] += moved
