"""The heap policy of everything mode on a CPU (glibc mallopt), with a recording stand-in and for real."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers.tiny_sam import build_tiny_sam, synthetic_image

from dtwin_agent.config import Settings
from dtwin_agent.perception import memory
from dtwin_agent.perception.sam import SamProposer


class RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.refuse = False

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 0 if self.refuse else 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def libc(monkeypatch) -> RecordingLibc:
    fake = RecordingLibc()
    monkeypatch.setattr(memory, "_glibc", lambda: fake)
    for name in (*memory.ENVIRONMENT, "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    return fake


KEEP = [("mallopt", memory.M_MMAP_MAX, 0), ("mallopt", memory.M_TRIM_THRESHOLD, memory.KEEP_TRIM_THRESHOLD)]
RESTORE = [
    ("mallopt", memory.M_MMAP_MAX, memory.DEFAULT_MMAP_MAX),
    ("mallopt", memory.M_MMAP_THRESHOLD, 32 * 2**20),  # where glibc's dynamic policy ends up
    ("mallopt", memory.M_TRIM_THRESHOLD, 64 * 2**20),
    ("malloc_trim", 0),
]


def test_the_heap_is_kept_inside_and_given_back_after(libc) -> None:
    with memory.reuse_freed_memory() as active:
        assert active and libc.calls == KEEP
    assert libc.calls == KEEP + RESTORE


def test_nested_and_concurrent_scopes_restore_once_when_the_last_ends(libc) -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with memory.reuse_freed_memory():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with memory.reuse_freed_memory():
        thread.start()
        inside.wait(5)
        with memory.reuse_freed_memory():
            pass
    assert libc.calls == KEEP  # the other thread's scope is still open
    release.set()
    thread.join(5)
    assert libc.calls == KEEP + RESTORE


def test_an_error_inside_still_gives_the_heap_back(libc) -> None:
    with pytest.raises(RuntimeError), memory.reuse_freed_memory():
        raise RuntimeError("decoder failed")
    assert libc.calls == KEEP + RESTORE


def test_a_refused_setting_is_reported_and_still_undone(libc) -> None:
    libc.refuse = True
    with memory.reuse_freed_memory() as active:
        assert not active
    assert libc.calls == KEEP + RESTORE


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MALLOC_TRIM_THRESHOLD_", "1000000"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0"),
        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ],
)
def test_an_allocator_the_environment_configured_is_left_alone(libc, monkeypatch, name, value) -> None:
    monkeypatch.setenv(name, value)
    with memory.reuse_freed_memory() as active:
        assert not active
    assert libc.calls == []


def test_disabled_or_without_glibc_it_does_nothing(libc, monkeypatch) -> None:
    with memory.reuse_freed_memory(enabled=False) as active:
        assert not active
    assert libc.calls == []
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    with memory.reuse_freed_memory() as active:
        assert not active


def test_the_proposer_uses_it_on_a_cpu_and_the_masks_do_not_change(monkeypatch) -> None:
    model, image = build_tiny_sam(), synthetic_image()
    seen: list[bool] = []
    real = memory.reuse_freed_memory

    def spy(enabled: bool = True):
        seen.append(enabled)
        return real(enabled)

    monkeypatch.setattr("dtwin_agent.perception.sam.reuse_freed_memory", spy)
    runs = {}
    for reuse in (True, False):
        settings = Settings.model_validate(
            {"perception": {"points_per_side": 4, "policy": "sam_only", "reuse_memory": reuse}}
        )
        runs[reuse] = [p.mask for p in SamProposer(settings, model=model).propose(image, "part")]
    assert seen == [True, False]
    assert len(runs[True]) == len(runs[False]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(runs[True], runs[False], strict=True))


@pytest.mark.skipif(
    not memory.supported() or memory.configured_by_environment(),
    reason="not glibc, or the environment configured the allocator",
)
def test_real_glibc_accepts_the_settings() -> None:
    with memory.reuse_freed_memory() as active:
        assert active  # glibc's mallopt returned 1 for both settings
        block = bytearray(64 * 2**20)  # above glibc's largest mmap threshold: from the heap now
        del block
    assert memory._active == 0
