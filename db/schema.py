"""The one schema rlcsp stores runs in, for SQLite and MySQL, with its version and migrations.

Names of tables and columns live only here. Bump SCHEMA_VERSION and append a migration when the schema changes;
a database written by a newer rlcsp is refused rather than silently misread.
"""
from __future__ import annotations

import uuid

from rlcsp.db.connection import Database, StoreError

SCHEMA_VERSION = 3

# Types per dialect: an identifier column, long text, short indexed text, and a float.
_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "text": "TEXT", "key": "TEXT", "float": "REAL",
               "ts": "REAL"},
    "mysql": {"id": "BIGINT AUTO_INCREMENT PRIMARY KEY", "text": "LONGTEXT", "key": "VARCHAR(191)",
              "float": "DOUBLE", "ts": "DOUBLE"},
}

TABLES = {
    "runs": """
        id {id}, uid {key}, name {key} NOT NULL, composition {key} NOT NULL, policy {key} NOT NULL, policy_id {key},
        seed BIGINT NOT NULL, calculator {key} NOT NULL, config {text} NOT NULL, code_version {key} NOT NULL,
        status {key} NOT NULL, best_energy {float}, gm_relaxation INTEGER, relaxations INTEGER NOT NULL,
        state {text}, created_at {ts} NOT NULL, updated_at {ts} NOT NULL""",
    "structures": """
        id {id}, run_id BIGINT NOT NULL, relaxation INTEGER NOT NULL, formula {key} NOT NULL,
        n_atoms INTEGER NOT NULL, energy {float} NOT NULL, fingerprint {key}, atoms {text} NOT NULL,
        genome {text} NOT NULL, UNIQUE (run_id, relaxation)""",
    "steps": """
        id {id}, run_id BIGINT NOT NULL, relaxation INTEGER NOT NULL, kind {key} NOT NULL, move INTEGER,
        attempts INTEGER NOT NULL, outcome {key} NOT NULL, e_new {float}, e_current {float}, e_global {float},
        temperature {float} NOT NULL, is_unique INTEGER NOT NULL, n_atoms INTEGER NOT NULL, build_s {float},
        relax_s {float}, policy_s {float}, failure {key}, reward {float}, structure_id BIGINT,
        UNIQUE (run_id, relaxation)""",
    "policy_params": """
        id {id}, policy_id {key} NOT NULL, update_no INTEGER NOT NULL, run_id BIGINT, params {text} NOT NULL,
        created_at {ts} NOT NULL, UNIQUE (policy_id, update_no)""",
    "episodes": """
        id {id}, run_id BIGINT, agent {key} NOT NULL, episode INTEGER NOT NULL, reward {float},
        data {text} NOT NULL, created_at {ts} NOT NULL""",
    "dft_calls": """
        id {id}, cache_key {key} NOT NULL, outcome {key} NOT NULL, energy {float}, band_gap {float},
        wall_s {float}, record {text} NOT NULL, created_at {ts} NOT NULL, UNIQUE (cache_key)""",
}

# Composition filling (version 2): every DFT request of a fill run (dft_calls above is the cache, one row per
# input), each version of a band-gap model, each fine-tuning step, and the agent's training metrics.
FILL_TABLES = {
    "fill_dft_calls": """
        id {id}, run_id BIGINT, episode INTEGER NOT NULL, cache_key {key}, outcome {key} NOT NULL,
        formula {key} NOT NULL, band_gap {float}, model_gap {float}, wall_s {float}, from_cache INTEGER NOT NULL,
        created_at {ts} NOT NULL""",
    "gap_models": """
        id {id}, model_id {key} NOT NULL, version INTEGER NOT NULL, run_id BIGINT, episode INTEGER,
        reason {key} NOT NULL, n_samples INTEGER NOT NULL, state {text} NOT NULL, created_at {ts} NOT NULL,
        UNIQUE (model_id, version)""",
    "finetune_steps": """
        id {id}, model_id {key} NOT NULL, version INTEGER NOT NULL, run_id BIGINT, episode INTEGER,
        step INTEGER NOT NULL, loss {float} NOT NULL, prediction {float}, label {float} NOT NULL,
        created_at {ts} NOT NULL""",
    "metrics": """
        id {id}, run_id BIGINT NOT NULL, step INTEGER NOT NULL, name {key} NOT NULL, value {float},
        created_at {ts} NOT NULL""",
}
TABLES.update(FILL_TABLES)

INDEXES = {
    "runs_lookup": ("runs", "composition, policy, seed"),
    "runs_uid": ("runs", "uid"),
    "steps_run": ("steps", "run_id, kind"),
    "structures_energy": ("structures", "run_id, energy"),
    "episodes_run": ("episodes", "run_id, episode"),
}
FILL_INDEXES = {
    "fill_dft_run": ("fill_dft_calls", "run_id, episode"),
    "finetune_model": ("finetune_steps", "model_id, version"),
    "metrics_run": ("metrics", "run_id, name, step"),
}
INDEXES.update(FILL_INDEXES)


def _has_column(tx, dialect: str, table: str, column: str) -> bool:
    if dialect == "sqlite":
        return any(row[1] == column for row in tx.all(f"PRAGMA table_info({table})"))
    return bool(tx.one("SELECT 1 FROM information_schema.columns WHERE table_schema = DATABASE() "
                       "AND table_name = ? AND column_name = ?", (table, column)))


def _drop_structure_cif(tx, dialect: str) -> None:
    """Version 3 keeps no CIF per structure (3 of a structure row's 5 KB; ``rlcsp export`` writes CIFs), and
    new rows hold their atoms packed (rlcsp.db.store.atoms_to_text); rows of older versions still read."""
    if _has_column(tx, dialect, "structures", "cif"):
        tx.execute("ALTER TABLE structures DROP COLUMN cif")


def _add_run_uid(tx, dialect: str) -> None:
    """Version 3 names every run by a uid, the same in every store it is copied to (rlcsp.db.transfer)."""
    if not _has_column(tx, dialect, "runs", "uid"):
        tx.execute(f"ALTER TABLE runs ADD COLUMN uid {_TYPES[dialect]['key']}")
        tx.execute("CREATE INDEX runs_uid ON runs (uid)")
    for (run_id,) in tx.all("SELECT id FROM runs WHERE uid IS NULL"):
        tx.execute("UPDATE runs SET uid = ? WHERE id = ?", (new_uid(), run_id))


def new_uid() -> str:
    return uuid.uuid4().hex


# version -> what takes the schema from version-1 to version: statements, or a function of (transaction, dialect)
MIGRATIONS: dict[int, list] = {
    2: [f"CREATE TABLE IF NOT EXISTS {name} ({body})" for name, body in FILL_TABLES.items()]
       + [f"CREATE INDEX {index} ON {table} ({columns})" for index, (table, columns) in FILL_INDEXES.items()],
    3: [_drop_structure_cif, _add_run_uid],
}


def create_schema(db: Database) -> None:
    """Create the tables on first use; refuse a newer schema; apply pending migrations."""
    types = _TYPES[db.dialect]

    def work(tx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = tx.one("SELECT MAX(version) FROM schema_version")
        current = row[0] if row and row[0] is not None else None
        if current is None:
            for name, body in TABLES.items():
                tx.execute(f"CREATE TABLE IF NOT EXISTS {name} ({body.format(**types)})")
            for index, (table, columns) in INDEXES.items():
                if db.dialect == "sqlite":
                    tx.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({columns})")
                elif not tx.one("SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
                                "AND table_name = ? AND index_name = ?", (table, index)):
                    tx.execute(f"CREATE INDEX {index} ON {table} ({columns})")
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            return
        if current > SCHEMA_VERSION:
            raise StoreError(f"{db.url.redacted()} has schema version {current}, newer than this rlcsp's "
                             f"{SCHEMA_VERSION}; upgrade rlcsp (pip install -U rlcsp) or use another database")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS.get(version, []):
                if callable(statement):
                    statement(tx, db.dialect)
                else:
                    tx.execute(statement.format(**types))
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    db.run(work, lock=True, what="schema set-up")
