"""Database connections for SQLite (embedded default) and MySQL/MariaDB (shared server), behind one small API.

SQL is written once with ``?`` placeholders and always parameterised; for MySQL the placeholders become ``%s``.
Table and column names come only from the schema module, never from user input. A lost MySQL connection is
re-opened with back-off, so a server restart mid-run costs time, not data.
"""
from __future__ import annotations

import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

from rlcsp.exceptions import RlcspError

SQLITE_WAIT_S = 60.0  # how long a SQLite connection waits for another's lock, the switch to WAL included


class StoreError(RlcspError):
    """The database cannot be used as configured (bad URL, credentials, unreachable, newer schema)."""


class StoreUnavailable(StoreError):
    """The database stayed unreachable for longer than the configured outage tolerance."""


@dataclass(frozen=True)
class DatabaseURL:
    dialect: str  # 'sqlite' or 'mysql'
    database: str  # file path for sqlite, schema name for mysql
    user: str | None = None
    host: str | None = None
    port: int | None = None
    password: str | None = None

    def redacted(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:///{self.database}"
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


URL_HELP = "use sqlite:///path/to/rlcsp.db or mysql://user@host:3306/database (password in RLCSP_DB_PASSWORD)"


def parse_url(url: str) -> DatabaseURL:
    """Parse a database URL; the password never comes from the URL's text in input scripts, only the environment."""
    if not isinstance(url, str) or "://" not in url:
        raise StoreError(f"malformed database URL {url!r}; {URL_HELP}")
    parts = urlparse(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db and sqlite:////absolute/path.db
        rest = url.split("://", 1)[1]
        path = rest[1:] if rest.startswith("/") else ""
        if not path:
            raise StoreError(f"malformed SQLite URL {url!r}: no file path; {URL_HELP}")
        return DatabaseURL("sqlite", path)
    if scheme in ("mysql", "mariadb"):
        name = parts.path.lstrip("/")
        if not parts.hostname or not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise StoreError(f"malformed MySQL URL {url!r}: need a host and a database name of letters, digits "
                             f"and underscores; {URL_HELP}")
        try:
            port = parts.port or 3306
        except ValueError:
            raise StoreError(f"malformed MySQL URL {url!r}: bad port; {URL_HELP}") from None
        password = os.environ.get("RLCSP_DB_PASSWORD")
        if password is None and parts.password is not None:
            password = unquote(parts.password)
        return DatabaseURL("mysql", name, unquote(parts.username or "root"), parts.hostname, port, password)
    raise StoreError(f"unsupported database URL scheme {parts.scheme!r}; {URL_HELP}")


def default_url(run_dir: str | Path | None = None) -> str:
    """RLCSP_DB_URL if set, else an SQLite file in the run directory (or the current one)."""
    env = os.environ.get("RLCSP_DB_URL")
    if env:
        return env
    return f"sqlite:///{Path(run_dir or '.').resolve() / 'rlcsp.db'}"


class Database:
    """One open connection with transactions that survive MySQL outages (retried, idempotent by design)."""

    def __init__(self, url: str, outage_s: float = 120.0, connect_timeout: float = 5.0, create: bool = True):
        """``create=False`` opens only a database that exists, read-only for SQLite, as ``rlcsp runs`` and
        ``show`` need: they must never leave a new database behind."""
        self.url = parse_url(url)
        self.create = create
        self.dialect = self.url.dialect
        self.outage_s = outage_s
        self.connect_timeout = connect_timeout
        self._conn = None
        self._connect(first=True)

    # -- connecting ----------------------------------------------------------------------------------

    def _connect(self, first: bool = False) -> None:
        if self.dialect == "sqlite":
            path = Path(self.url.database)
            if not path.parent.exists():
                raise StoreError(f"SQLite database folder {str(path.parent)!r} does not exist")
            if not self.create:
                if not path.is_file():
                    raise StoreError(f"no rlcsp database at {str(path)!r}")
                # With no writer (no -wal file) the file cannot change while we read: immutable leaves no -shm
                # behind; with one, a plain read-only connection sees its committed steps.
                live = Path(f"{path}-wal").exists()
                self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?{'mode=ro' if live else 'immutable=1'}",
                                             uri=True, timeout=SQLITE_WAIT_S, isolation_level=None)
                return
            self._conn = sqlite3.connect(path, timeout=SQLITE_WAIT_S, isolation_level=None)
            deadline = time.monotonic() + SQLITE_WAIT_S
            while True:  # two processes opening a new file together: the switch to WAL fails at once, unwaited
                try:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as err:
                    if "locked" not in str(err) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            return
        import mysql.connector
        from mysql.connector import errorcode

        u = self.url
        kwargs: dict[str, Any] = dict(user=u.user, host=u.host, port=u.port, connection_timeout=self.connect_timeout,
                                      autocommit=True, charset="utf8mb4")
        if u.password is not None:
            kwargs["password"] = u.password
        option_file = Path.home() / ".my.cnf"
        if u.password is None and option_file.exists():
            kwargs["option_files"] = str(option_file)
        try:
            conn = mysql.connector.connect(**kwargs)
        except mysql.connector.Error as err:
            if err.errno == errorcode.ER_ACCESS_DENIED_ERROR:
                raise StoreError(f"access denied for {u.redacted()}: check the user and set RLCSP_DB_PASSWORD "
                                 "(or a [client] password in ~/.my.cnf)") from None
            if first and err.errno in (2003, 2005, 2002, 2013):
                raise StoreError(f"cannot reach the MySQL server at {u.host}:{u.port} ({err.msg}); start it or "
                                 "fix the host/port in the URL") from None
            raise
        cursor = conn.cursor()
        if self.create:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{u.database}` CHARACTER SET utf8mb4")  # name validated
        try:
            cursor.execute(f"USE `{u.database}`")
        except mysql.connector.Error as err:
            conn.close()
            if err.errno == errorcode.ER_BAD_DB_ERROR:
                raise StoreError(f"no database {u.database!r} on {u.host}:{u.port}") from None
            raise
        cursor.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,ANSI_QUOTES'")
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.close()
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # Client/server error numbers that mean the connection or the server went away (not a bad statement).
    _LOST = {1053, 1927, 2002, 2003, 2006, 2013, 2026, 2055, 4031}

    def _is_connection_error(self, err: Exception) -> bool:
        if self.dialect == "sqlite":
            return False
        import mysql.connector

        if getattr(err, "errno", None) in self._LOST:
            return True
        return isinstance(err, (mysql.connector.errors.OperationalError, mysql.connector.errors.InterfaceError))

    # -- running SQL ----------------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "mysql" else sql

    @contextmanager
    def transaction(self, lock: bool = False) -> Iterator["Transaction"]:
        """One atomic unit; ``lock`` takes SQLite's write lock at once (MySQL locks rows FOR UPDATE)."""
        cur = self._conn.cursor()
        if self.dialect == "sqlite":
            cur.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
        else:
            cur.execute("START TRANSACTION")
        try:
            yield Transaction(self, cur)
        except BaseException:
            try:
                self._conn.rollback() if self.dialect == "mysql" else cur.execute("ROLLBACK")
            except Exception:
                pass
            raise
        else:
            if self.dialect == "sqlite":
                cur.execute("COMMIT")
            else:
                self._conn.commit()
        finally:
            cur.close()

    def run(self, work, lock: bool = False, what: str = "database write"):
        """Run ``work(tx)`` in a transaction, reconnecting and retrying through a MySQL outage.

        ``work`` must be idempotent (check before insert), because a commit can succeed on the server while its
        acknowledgement is lost with the connection.
        """
        deadline = None
        delay = 0.5
        while True:
            try:
                if self._conn is None:
                    self._connect()
                with self.transaction(lock=lock) as tx:
                    return work(tx)
            except Exception as err:
                if not self._is_connection_error(err):
                    raise
                self.close()
                now = time.monotonic()
                deadline = deadline or now + self.outage_s
                if now >= deadline:
                    raise StoreUnavailable(f"{what}: {self.url.redacted()} unreachable for {self.outage_s:.0f} s "
                                           f"({err}); the run stopped with every committed step kept") from err
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.run(lambda tx: tx.all(sql, params), what="database read")


class Transaction:
    def __init__(self, db: Database, cursor):
        self.db = db
        self.cursor = cursor

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.cursor.execute(self.db._sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self.cursor.executemany(self.db._sql(sql), rows)

    def all(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.execute(sql, params)
        return list(self.cursor.fetchall())

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def insert(self, sql: str, params: tuple = ()) -> int:
        self.execute(sql, params)
        return int(self.cursor.lastrowid)
