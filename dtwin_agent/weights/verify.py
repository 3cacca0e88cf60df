"""Model files on disk: where they live, their sha256, the stamp that spares re-hashing, verification.

Files land in :func:`models_dir` (``settings.models.models_dir``, else ``$DTWIN_MODELS_DIR``, else
``~/.cache/dtwin/models``). A ``.sha256`` stamp beside each file (hash, size, mtime) lets
:func:`is_fetched` trust a file without hashing it again; :func:`verify` always hashes the whole
file. A file whose sha256 does not match is refused and removed (:func:`check`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dtwin_agent.errors import ChecksumError
from dtwin_agent.weights.registry import ModelSpec, get_spec

__all__ = [
    "ENV_DIR",
    "Progress",
    "VerifyResult",
    "check",
    "is_fetched",
    "model_path",
    "models_dir",
    "remove",
    "sha256_file",
    "stamp_path",
    "status",
    "verify",
]

ENV_DIR = "DTWIN_MODELS_DIR"
CHUNK = 1 << 20
# (label, bytes done, bytes total or None); called often, the callee throttles
Progress = Callable[[str, int, "int | None"], None]


def models_dir(settings: Any = None, environ: dict[str, str] | None = None) -> Path:
    """The store folder: ``settings.models.models_dir``, else ``$DTWIN_MODELS_DIR``, else the default.

    The default is ``~/.cache/dtwin/models``.
    """
    configured = getattr(getattr(settings, "models", None), "models_dir", None)
    if configured:
        return Path(configured).expanduser()
    env = (os.environ if environ is None else environ).get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dtwin" / "models"


def model_path(spec: ModelSpec, directory: Path) -> Path:
    """Where ``spec``'s file lives in the store."""
    return directory / spec.filename


def stamp_path(path: Path) -> Path:
    """The ``.sha256`` stamp beside a stored file."""
    return path.with_name(path.name + ".sha256")


def sha256_file(path: Path, progress: Progress | None = None, label: str = "verify") -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(label, done, total)
    return digest.hexdigest()


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    stamp = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    stamp_path(path).write_text(json.dumps(stamp), encoding="utf-8")


def _stamp_ok(path: Path, spec: ModelSpec) -> bool:
    try:
        stamp = json.loads(stamp_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (
        stamp.get("sha256") == spec.sha256
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def remove(path: Path) -> None:
    """Remove a stored file and its stamp (either may be missing)."""
    for p in (path, stamp_path(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def is_fetched(spec: ModelSpec, directory: Path) -> bool:
    """True when the file is in the store and its stamp matches (no hashing, no network)."""
    path = model_path(spec, directory)
    if not path.is_file():
        return False
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    return _stamp_ok(path, spec)


def check(path: Path, spec: ModelSpec, progress: Progress | None) -> None:
    """Hash ``path``; stamp it when it matches, else remove it and raise ChecksumError."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        remove(path)
        raise ChecksumError(
            f"{spec.name}: {path.name} has {size} bytes, expected {spec.size}; "
            "the file was refused and removed"
        )
    digest = sha256_file(path, progress, label=f"{spec.name}: sha256")
    if digest != spec.sha256:
        remove(path)
        raise ChecksumError(
            f"{spec.name}: sha256 {digest} does not match the pinned {spec.sha256}; "
            "the file was refused and removed"
        )
    _write_stamp(path, digest)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify` for one model."""

    name: str
    status: Literal["ok", "missing", "mismatch"]
    path: Path
    sha256: str | None
    size: int | None
    seconds: float

    def line(self) -> str:
        """One line for the CLI."""
        if self.status == "ok":
            where = f"{self.size} B  {self.path}  ({self.seconds:.1f} s)"
            return f"OK        {self.name}  sha256={self.sha256}  {where}"
        if self.status == "missing":
            return f"MISSING   {self.name}  {self.path}  (run: dtwin models fetch {self.name})"
        return f"MISMATCH  {self.name}  sha256={self.sha256}  refused and removed: {self.path}"


def verify(
    name: str,
    *,
    settings: Any = None,
    directory: Path | None = None,
    progress: Progress | None = None,
    registry: Mapping[str, ModelSpec] | None = None,
) -> VerifyResult:
    """Hash the stored file of ``name`` in full against its pinned sha256; a mismatch is removed."""
    spec = get_spec(name, registry)
    directory = models_dir(settings) if directory is None else directory
    path = model_path(spec, directory)
    start = time.perf_counter()
    if not path.is_file():
        return VerifyResult(name, "missing", path, None, None, 0.0)
    size = path.stat().st_size
    digest = sha256_file(path, progress, label=f"{name}: sha256")
    seconds = time.perf_counter() - start
    if digest != spec.sha256 or (spec.size is not None and size != spec.size):
        remove(path)
        return VerifyResult(name, "mismatch", path, digest, size, seconds)
    _write_stamp(path, digest)
    return VerifyResult(name, "ok", path, digest, size, seconds)


def status(spec: ModelSpec, directory: Path) -> str:
    """``fetched`` / ``unverified`` (present, not stamped) / ``missing``, without hashing."""
    if is_fetched(spec, directory):
        return "fetched"
    return "unverified" if model_path(spec, directory).is_file() else "missing"
