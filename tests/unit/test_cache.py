import logging
import multiprocessing as mp
import os
import sqlite3
import threading
from pathlib import Path

import pytest

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


def damage(path):
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(os.urandom(8192))


def test_a_damaged_file_is_moved_aside_and_rebuilt_with_one_warning(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    SqliteCache(path).put("twin", "k", {"x": 1})
    damage(path)
    with caplog.at_level(logging.WARNING, logger="dtwin_agent.cache"):
        c = SqliteCache(path)
        assert c.get("twin", "k") is None
        c.put("twin", "k", {"x": 2})
        assert c.get("twin", "k") == {"x": 2}
        damage(path)
        SqliteCache(path)  # damaged again in the same process: repaired, not warned twice
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0] and str(c.aside) in warnings[0]
    assert c.aside.is_file() and c.aside.name == "cache.sqlite.corrupt"
    assert SqliteCache(path).info()["damaged_copy"] == str(c.aside)


def test_damage_found_in_the_middle_of_a_run_is_repaired(tmp_path):
    path = tmp_path / "cache.sqlite"
    c = SqliteCache(path)
    c.put("twin", "k", {"x": 1})
    damage(path)

    def in_a_new_thread(result):
        result.append(c.get("twin", "k"))  # a new connection meets the damaged file
        c.put("twin", "k2", {"y": 1})
        result.append(c.get("twin", "k2"))

    result: list = []
    thread = threading.Thread(target=in_a_new_thread, args=(result,))
    thread.start()
    thread.join(30)
    assert result == [None, {"y": 1}] and c.aside.is_file()


def test_clear_always_works_and_deletes_the_damaged_copy(tmp_path):
    path = tmp_path / "cache.sqlite"
    SqliteCache(path).put("twin", "k", {"x": 1})
    damage(path)
    c = SqliteCache(path)
    assert c.aside.is_file()
    assert c.clear() == 0 and not c.aside.exists()
    damage(path)
    assert SqliteCache(path).clear() == 0


def _open_damaged(path, queue):
    c = SqliteCache(path)
    c.put("label", str(os.getpid()), {"ok": True})
    queue.put(c.info()["namespaces"]["label"]["entries"] >= 1)


def test_two_processes_meeting_a_damaged_file_repair_it_once(tmp_path):
    path = tmp_path / "cache.sqlite"
    SqliteCache(path).put("twin", "k", {"x": 1})
    damage(path)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_damaged, args=(path, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert [queue.get(timeout=5), queue.get(timeout=5)] == [True, True]
    assert SqliteCache(path).info()["namespaces"]["label"]["entries"] == 2  # both writes kept


def test_an_unopenable_cache_means_running_without_one(tmp_path, caplog):
    from dtwin_agent.cache import open_cache
    from dtwin_agent.config import resolve_settings

    settings = resolve_settings(overrides={"cache.dir": str(tmp_path)})
    (tmp_path / "cache.sqlite").mkdir()  # a directory where the file should be
    with caplog.at_level(logging.WARNING, logger="dtwin_agent.cache"):
        assert open_cache(settings) is None
    assert "cannot be opened" in caplog.text and str(tmp_path / "cache.sqlite") in caplog.text
    with pytest.raises(sqlite3.Error):
        open_cache(settings, required=True)
