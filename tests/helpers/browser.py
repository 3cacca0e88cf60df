"""Helpers of the browser tests of ``dtwin ui``: Debian's chromium driven by Playwright (no browser download).

``.ci/run`` installs chromium with apt. The tests skip cleanly when Playwright or
``/usr/bin/chromium`` (or ``$DTWIN_CHROMIUM``) is absent. Each test starts ``dtwin ui`` on a free
127.0.0.1 port in a subprocess, with a private cache folder (sessions database, session folders).

Screenshots: a failed step saves one to ``ui-test-failures/<test>/``; with
``DTWIN_UI_SCREENSHOTS=DIR`` every step of every test is saved under ``DIR/<test>/`` (how the
README's pictures in docs/ui/ were made).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path(os.environ.get("DTWIN_CHROMIUM", "/usr/bin/chromium"))
# the flags this machine's closed network needs (ENVIRONMENT: chromium's background connections are refused)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
FAILURES = REPO / "ui-test-failures"
START_TIMEOUT_S = 120.0
# read at import, before the autouse fixture of tests/conftest.py removes every DTWIN_* variable
SCREENSHOTS = os.environ.get("DTWIN_UI_SCREENSHOTS")
STEP_TIMEOUT_S = float(os.environ.get("DTWIN_UI_STEP_TIMEOUT_S", "90"))
LOCAL_TIMEOUT_S = float(os.environ.get("DTWIN_UI_LOCAL_TIMEOUT_S", "1800"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running ``dtwin ui``: its address, cache folder, and what it printed."""

    url: str
    cache: Path
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "".join(self.output)


def start_ui(env: dict[str, str], *args: str) -> Server:
    """Start ``dtwin ui ARGS`` and wait until it prints its address."""
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from dtwin_agent.cli import app; app()",
        "ui",
        "--port",
        str(port),
        *args,
    ]
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    output: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            found = re.search(r"dtwin ui: (http://127\.0\.0\.1:\d+/?)", line)
            if found and not ready.is_set():
                url.append(found.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(START_TIMEOUT_S) or not url:
        process.kill()
        raise RuntimeError(f"dtwin ui did not start: {''.join(output)[-2000:]}")
    return Server(url=url[0], cache=Path(env["DTWIN_CACHE_DIR"]), process=process, output=output)


def stop_ui(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a server: no DTWIN_* of the user's, a private cache, the keyword reasoner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTWIN_", "GRADIO_"))}
    env.update(
        {
            "DTWIN_CACHE_DIR": str(tmp / "cache"),
            "DTWIN_MODELS_DIR": str(tmp / "models"),  # no fetched weights: the embedded offline profile
            "DTWIN_LLM": "offline:lexical",
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            **extra,
        }
    )
    return env


class Steps:
    """Named steps of a browser test: a screenshot when one fails (and of every one when asked)."""

    def __init__(self, name: str):
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.keep = Path(SCREENSHOTS) / self.name if SCREENSHOTS else None
        self.count = 0

    @contextmanager
    def step(self, page: object, label: str) -> Iterator[None]:
        self.count += 1
        stem = f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}"
        try:
            yield
        except BaseException:
            folder = FAILURES / self.name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{stem}-FAILED.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                print(f"screenshot of the failed step: {path}")
            except Exception as exc:  # noqa: BLE001 - the step's own error matters more
                print(f"no screenshot of the failed step ({exc})")
            raise
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(self.keep / f"{stem}.png"), full_page=True)
