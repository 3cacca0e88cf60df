"""No test touches the user's home: the suite's fixtures run with a fresh HOME and leave it empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# the tests that build settings, caches, sessions, models folders and images: where a default
# ("~/.cache/dtwin") would reach the home folder if a test bypassed the isolating fixture
SUITE = [
    "tests/unit/graph",
    "tests/unit/cli",
    "tests/unit/integrations/test_chat.py",
    "tests/unit/integrations/test_tool.py",
    "tests/unit/llm/test_openai_server.py",
    "tests/unit/test_api_images.py",
    "tests/unit/test_cache.py",
    "tests/unit/test_config.py",
    "tests/unit/test_files_unmanaged.py",
    "tests/unit/weights",
]


@pytest.mark.slow
def test_the_suite_leaves_a_fresh_home_empty(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTWIN_", "XDG_"))}
    env |= {"HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow and not integration",
            *SUITE,
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert left == [], f"tests wrote into HOME: {left[:20]}"
