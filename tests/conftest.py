"""Shared fixtures: every test runs with a clean DTWIN_* environment and a private cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith("DTWIN_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DTWIN_CACHE_DIR", str(tmp_path_factory.mktemp("dtwin-cache")))
    # unit tests never pick up real models fetched on this machine; integration tests opt in
    monkeypatch.setenv("DTWIN_MODELS_DIR", str(tmp_path_factory.mktemp("dtwin-models")))


@pytest.fixture
def shared_image():
    """Path of a photo in ../shared/images, or skip when the folder is absent."""

    def _get(name: str) -> Path:
        path = SHARED_IMAGES / name
        if not path.is_file():
            pytest.skip(f"{path} not present")
        return path

    return _get
