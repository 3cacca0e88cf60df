"""On-disk cache in SQLite: twins and VLM labels, keyed by content hashes.

One table of ``(namespace, key) -> JSON value`` with the entry's format version, its size and its
last access time. Safe with several processes at once (WAL journal, short transactions, busy
timeout). An entry whose version is old or whose JSON does not parse is deleted and reported as a
miss: it is rebuilt, never trusted. When the total size passes ``max_bytes`` the least recently
used entries are evicted.

It is only a cache, so it never blocks a run: a damaged file (not a database, malformed) is moved
aside to ``<file>.corrupt`` and rebuilt empty, with one warning naming both files (on this module's
logger, once per file and process; a file lock keeps two processes from both repairing it). Other
SQLite failures during a lookup or a store (locked for longer than the busy timeout, disk full, a
read-only folder) are warned about and read as a miss or skipped. :meth:`SqliteCache.clear` also
deletes the moved-aside copy, so ``dtwin cache clear`` always works.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

logger = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()

CACHE_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    size INTEGER NOT NULL,
    accessed REAL NOT NULL,
    PRIMARY KEY (namespace, key)
)
"""


def is_damaged(exc: BaseException) -> bool:
    """True for SQLite errors that mean the file itself is damaged (not locked, full or read-only)."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(
        needle in text for needle in ("not a database", "malformed", "file is encrypted")
    )


def _warn_once(path: Path, kind: str, message: str) -> None:
    if (str(path), kind) not in _WARNED:
        _WARNED.add((str(path), kind))
        logger.warning(message)


def content_key(*parts: Any) -> str:
    """A sha256 key over JSON-serialisable parts (dicts are key-sorted)."""
    payload = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SqliteCache:
    """A process- and thread-safe key/value cache in one SQLite file (a damaged file is rebuilt).

    Raises:
        sqlite3.Error: when the file cannot be opened at all (an unreadable folder, a directory in
            its place); :func:`open_cache` turns that into running without a cache.
    """

    def __init__(self, path: str | Path, max_bytes: int = 512 * 2**20, version: int = CACHE_VERSION):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.version = version
        self._local = threading.local()
        self._generation = 0  # bumped by a repair: each thread then reconnects
        self._guarded(lambda conn: None)  # opens (creating the table), repairing a damaged file

    @property
    def aside(self) -> Path:
        """Where a damaged file is moved: ``<file>.corrupt``."""
        return self.path.with_name(self.path.name + ".corrupt")

    def _connect(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "conn", None) is None or local.generation != self._generation:
            if getattr(local, "conn", None) is not None:
                local.conn.close()
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)  # also after a repair started a new file
            except BaseException:
                conn.close()
                raise
            local.conn, local.generation = conn, self._generation
        return local.conn

    def _guarded(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in one IMMEDIATE transaction; a damaged file is repaired and ``work`` run again."""
        try:
            with _Tx(self._connect()) as conn:
                return work(conn)
        except sqlite3.DatabaseError as exc:
            if not is_damaged(exc):
                raise
            self._repair(exc)
        with _Tx(self._connect()) as conn:
            return work(conn)

    def _repair(self, exc: BaseException) -> None:
        """Move the damaged file aside (once, under a file lock across processes) and start afresh."""
        with FileLock(self.path.with_name(self.path.name + ".lock")):
            if getattr(self._local, "conn", None) is not None:
                self._local.conn.close()
                self._local.conn = None
            if self._still_damaged():
                for suffix in ("-wal", "-shm", "-journal"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
                self.path.replace(self.aside)
                _warn_once(
                    self.path,
                    "damaged",
                    f"the twin cache {self.path} was damaged ({exc}); moved it to {self.aside} and started "
                    "an empty one (twins are rebuilt as needed; `dtwin cache clear` deletes the copy)",
                )
            self._generation += 1

    def _still_damaged(self) -> bool:
        if not self.path.exists():
            return False
        try:
            conn = sqlite3.connect(self.path, timeout=30.0)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok"
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return is_damaged(exc)

    def _tolerant(self, action: str, work: Callable[[sqlite3.Connection], Any], default: Any) -> Any:
        """Run ``work`` (repairing a damaged file); other SQLite failures are warned about -> ``default``."""
        try:
            return self._guarded(work)
        except (sqlite3.Error, OSError) as exc:
            _warn_once(
                self.path, action, f"the twin cache {self.path} could not {action} ({exc}); going on without"
            )
            return default

    def get(self, namespace: str, key: str, validate: Callable[[Any], Any] | None = None) -> Any | None:
        """The cached value, or None when absent, stale or corrupt (bad entries are deleted).

        Args:
            namespace: e.g. ``"twin"`` or ``"label"``.
            key: the entry's key.
            validate: parses the JSON value (e.g. a pydantic ``model_validate``); an exception
                marks the entry corrupt.
        """
        return self._tolerant(
            "look up an entry", lambda conn: self._get(conn, namespace, key, validate), None
        )

    def _get(
        self, conn: sqlite3.Connection, namespace: str, key: str, validate: Callable[[Any], Any] | None
    ) -> Any | None:
        row = conn.execute(
            "SELECT version, value FROM entries WHERE namespace=? AND key=?", (namespace, key)
        ).fetchone()
        if row is None:
            return None
        version, text = row
        try:
            if version != self.version:
                raise ValueError(f"old cache version {version}")
            value = json.loads(text)
            if validate is not None:
                value = validate(value)
        except Exception:  # noqa: BLE001 - anything wrong with an entry means: rebuild it
            conn.execute("DELETE FROM entries WHERE namespace=? AND key=?", (namespace, key))
            return None
        conn.execute(
            "UPDATE entries SET accessed=? WHERE namespace=? AND key=?", (time.time(), namespace, key)
        )
        return value

    def put(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable value, then evict least recently used entries over the size limit."""
        text = json.dumps(value, ensure_ascii=False)

        def store(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (namespace, key, self.version, text, len(text.encode("utf-8")), time.time()),
            )
            self._evict(conn)

        self._tolerant("store an entry", store, None)

    def _evict(self, conn: sqlite3.Connection) -> None:
        total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        if total <= self.max_bytes:
            return
        rows = conn.execute("SELECT namespace, key, size FROM entries ORDER BY accessed ASC").fetchall()
        for namespace, key, size in rows:
            if total <= self.max_bytes:
                break
            conn.execute("DELETE FROM entries WHERE namespace=? AND key=?", (namespace, key))
            total -= size

    def info(self) -> dict[str, Any]:
        """Entry counts and bytes per namespace, and the file path (a damaged file is rebuilt first)."""
        rows = self._guarded(
            lambda conn: conn.execute(
                "SELECT namespace, COUNT(*), COALESCE(SUM(size), 0) FROM entries GROUP BY namespace"
            ).fetchall(),
        )
        return {
            "path": str(self.path),
            "max_bytes": self.max_bytes,
            "namespaces": {ns: {"entries": n, "bytes": b} for ns, n, b in rows},
            "bytes": sum(b for _, _, b in rows),
            "damaged_copy": str(self.aside) if self.aside.exists() else None,
        }

    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (or one namespace's), and any damaged copy; returns the entries deleted."""
        if namespace is None:
            self.aside.unlink(missing_ok=True)
            return self._guarded(lambda conn: conn.execute("DELETE FROM entries").rowcount)
        return self._guarded(
            lambda conn: conn.execute("DELETE FROM entries WHERE namespace=?", (namespace,)).rowcount,
        )


class _Tx:
    """``with`` wrapper running the block in one IMMEDIATE transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
            return
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:  # a damaged file may refuse even that; the first error is the one to see
            pass


def cache_path(settings: Any) -> Path:
    """The cache file ``settings.cache`` names: ``<cache.dir>/cache.sqlite``."""
    return Path(settings.cache.dir) / "cache.sqlite"


def open_cache(settings: Any, *, required: bool = False) -> SqliteCache | None:
    """The cache named by ``settings.cache`` (None when caching is disabled).

    A file that cannot be opened at all (a read-only folder, a directory in its place) is warned
    about and the run goes on without a cache (None), unless ``required`` (``dtwin cache``).

    Raises:
        sqlite3.Error, OSError: only with ``required``.
    """
    if not settings.cache.enabled:
        return None
    path = cache_path(settings)
    try:
        return SqliteCache(path, max_bytes=int(settings.cache.max_mb * 2**20))
    except (sqlite3.Error, OSError) as exc:
        if required:
            raise
        _warn_once(path, "open", f"the twin cache {path} cannot be opened ({exc}); running without a cache")
        return None
