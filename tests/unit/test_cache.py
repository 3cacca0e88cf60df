import multiprocessing as mp
import sqlite3

from dtwin_agent.cache import SqliteCache, content_key


def test_put_get_and_miss(tmp_path):
    c = SqliteCache(tmp_path / "c.sqlite")
    assert c.get("twin", "k") is None
    c.put("twin", "k", {"a": [1, 2]})
    assert c.get("twin", "k") == {"a": [1, 2]}
    assert c.info()["namespaces"]["twin"]["entries"] == 1
    assert c.clear() == 1 and c.get("twin", "k") is None


def test_old_version_and_corrupt_entries_are_rebuilt(tmp_path):
    path = tmp_path / "c.sqlite"
    SqliteCache(path, version=0).put("twin", "old", {"x": 1})
    c = SqliteCache(path)
    assert c.get("twin", "old") is None  # old version: never trusted
    c.put("twin", "bad", {"x": 1})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE entries SET value='{not json' WHERE key='bad'")
    assert c.get("twin", "bad") is None
    c.put("twin", "v", {"x": "y"})

    def reject(value):
        raise ValueError("schema changed")

    assert c.get("twin", "v", validate=reject) is None
    assert c.info()["namespaces"] == {}


def test_lru_eviction(tmp_path):
    c = SqliteCache(tmp_path / "c.sqlite", max_bytes=2500)
    for i in range(5):
        c.put("label", str(i), "x" * 1000)
        c.get("label", "0")  # keep 0 recently used
    kept = {k for k in map(str, range(5)) if c.get("label", k) is not None}
    assert "0" in kept and "4" in kept and len(kept) == 2


def _writer(path, start):
    c = SqliteCache(path)
    for i in range(start, start + 40):
        c.put("label", str(i), {"i": i})


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "c.sqlite"
    SqliteCache(path)
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, s)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = SqliteCache(path)
    assert c.info()["namespaces"]["label"]["entries"] == 80


def test_content_key_is_order_independent_for_dicts():
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1}) != content_key({"a": 2, "b": 1})
