"""The one schema rlcsp stores runs in, for SQLite and MySQL, with its version and migrations.

Names of tables and columns live only here. Bump SCHEMA_VERSION and append a migration when the schema changes;
a database written by a newer rlcsp is refused rather than silently misread.
"""
from __future__ import annotations

from db.connection import Database, StoreError

SCHEMA_VERSION = 1

# Types per dialect: an identifier column, long text, short indexed text, and a float.
_TYPES = {
    "sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "text": "TEXT", "key": "TEXT", "float": "REAL",
               "ts": "REAL"},
    "mysql": {"id": "BIGINT AUTO_INCREMENT PRIMARY KEY", "text": "LONGTEXT", "key": "VARCHAR(191)",
              "float": "DOUBLE", "ts": "DOUBLE"},
}

TABLES = {
    "runs": """
        id {id}, name {key} NOT NULL, composition {key} NOT NULL, policy {key} NOT NULL, policy_id {key},
        seed BIGINT NOT NULL, calculator {key} NOT NULL, config {text} NOT NULL, code_version {key} NOT NULL,
        status {key} NOT NULL, best_energy {float}, gm_relaxation INTEGER, relaxations INTEGER NOT NULL,
        state {text}, created_at {ts} NOT NULL, updated_at {ts} NOT NULL""",
    "structures": """
        id {id}, run_id BIGINT NOT NULL, relaxation INTEGER NOT NULL, formula {key} NOT NULL,
        n_atoms INTEGER NOT NULL, energy {float} NOT NULL, fingerprint {key}, atoms {text} NOT NULL,
        cif {text} NOT NULL, genome {text} NOT NULL, UNIQUE (run_id, relaxation)""",
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

INDEXES = {
    "runs_lookup": ("runs", "composition, policy, seed"),
    "steps_run": ("steps", "run_id, kind"),
    "structures_energy": ("structures", "run_id, energy"),
    "episodes_run": ("episodes", "run_id, episode"),
}

MIGRATIONS: dict[int, list[str]] = {}  # version -> statements taking the schema from version-1 to version


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
                tx.execute(statement.format(**types))
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    db.run(work, lock=True, what="schema set-up")
