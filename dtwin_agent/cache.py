"""On-disk cache in SQLite: twins and VLM labels, keyed by content hashes.

One table of ``(namespace, key) -> JSON value`` with the entry's format version, its size and its
last access time. Safe with several processes at once (WAL journal, short transactions, busy
timeout). An entry whose version is old or whose JSON does not parse is deleted and reported as a
miss: it is rebuilt, never trusted. When the total size passes ``max_bytes`` the least recently
used entries are evicted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def content_key(*parts: Any) -> str:
    """A sha256 key over JSON-serialisable parts (dicts are key-sorted)."""
    payload = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SqliteCache:
    """A process- and thread-safe key/value cache in one SQLite file."""

    def __init__(self, path: str | Path, max_bytes: int = 512 * 2**20, version: int = CACHE_VERSION):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.version = version
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return _Tx(conn)  # type: ignore[return-value]

    def get(self, namespace: str, key: str, validate: Callable[[Any], Any] | None = None) -> Any | None:
        """The cached value, or None when absent, stale or corrupt (bad entries are deleted).

        Args:
            namespace: e.g. ``"twin"`` or ``"label"``.
            key: the entry's key.
            validate: parses the JSON value (e.g. a pydantic ``model_validate``); an exception
                marks the entry corrupt.
        """
        with self._conn() as conn:
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
        with self._conn() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                (namespace, key, self.version, text, len(text.encode("utf-8")), time.time()),
            )
            self._evict(conn)

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
        """Entry counts and bytes per namespace, and the file path."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT namespace, COUNT(*), COALESCE(SUM(size), 0) FROM entries GROUP BY namespace"
            ).fetchall()
        return {
            "path": str(self.path),
            "max_bytes": self.max_bytes,
            "namespaces": {ns: {"entries": n, "bytes": b} for ns, n, b in rows},
            "bytes": sum(b for _, _, b in rows),
        }

    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (or one namespace's); returns how many were deleted."""
        with self._conn() as conn:
            if namespace is None:
                return conn.execute("DELETE FROM entries").rowcount
            return conn.execute("DELETE FROM entries WHERE namespace=?", (namespace,)).rowcount


class _Tx:
    """``with`` wrapper running the block in one IMMEDIATE transaction."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def open_cache(settings: Any) -> SqliteCache | None:
    """The cache named by ``settings.cache`` (None when caching is disabled)."""
    if not settings.cache.enabled:
        return None
    return SqliteCache(
        Path(settings.cache.dir) / "cache.sqlite", max_bytes=int(settings.cache.max_mb * 2**20)
    )
