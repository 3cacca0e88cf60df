"""Shared fixtures of the web page's unit tests: settings with a private cache, a scene, a pool."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.scenes import ColourProposer, scene_settings, write_scene

from dtwin_agent.config import Settings
from dtwin_agent.integrations.ui.pool import SessionPool

MB = 2**20


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return scene_settings(tmp_path / "cache", **{"models.llm": "offline:lexical"})


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    write_scene(folder / "scene.png")
    return folder


@pytest.fixture
def proposer() -> ColourProposer:
    return ColourProposer()


@pytest.fixture
def pool(settings: Settings, photos: Path, proposer: ColourProposer):
    opened = SessionPool(settings, [photos], max_bytes=MB, proposer=proposer)
    yield opened
    opened.close()
