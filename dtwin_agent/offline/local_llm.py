"""A local LLM behind llama.cpp's own OpenAI-compatible server, reached through ``ChatOpenAI``.

The runtime is `xllamacpp <https://github.com/xorbitsai/xllamacpp>`_ (MIT, prebuilt CPU wheels,
nothing to compile), whose ``Server`` runs llama.cpp's HTTP server: ``/v1/chat/completions``
with ``response_format`` ``json_schema`` (constrained decoding), so
``ChatOpenAI.with_structured_output(schema)`` works unchanged.

The server runs in a child process (``python -m dtwin_agent.offline.local_llm``) on a free port of
127.0.0.1: a crash or an abort in llama.cpp cannot take the caller down, and stopping it returns
all its memory. :func:`ensure_server` starts one per (model file, context size, threads) on first
use and reuses it while the process lives (chat sessions, the MCP server, the web page keep it
warm between turns); :func:`release_all` stops them while another big model (SAM) needs the memory,
and the next call starts one again; every server is stopped at interpreter exit, and a child whose
parent dies stops by itself.

Reading the prompt is most of the work on a CPU, so nothing read is read twice when it can be
helped: llama.cpp reuses the longest cached prefix of the slot's last prompt (``cache_prompt``) and
keeps earlier prompts in a host-memory cache (:data:`CACHE_RAM_MIB`), and :class:`SlotFiles` saves
the slot to a file once a prompt prefix (the system prompt and the twin) has been read, so the next
process (a follow-up ``dtwin segment`` on a cached twin) restores it instead of reading it again.

Threads: generation runs one token at a time, and llama.cpp's threads meet at a barrier for every
token: on a shared CPU a descheduled thread stalls the others, so generation uses
:func:`generation_threads` (1 on 2 cores) while prompt reading, which batches hundreds of tokens
per barrier, uses every usable core (``benchmarks/local_llm.py --speed`` measures both).

Example::

    from dtwin_agent.offline.local_llm import local_chat_model
    llm = local_chat_model("qwen2.5-coder-1.5b-instruct-q4_k_m")
    llm.with_structured_output(MySchema).invoke("...")
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtwin_agent.errors import ConfigError, ProviderError
from dtwin_agent.llm.usage import current_usage
from dtwin_agent.progress import emit

__all__ = [
    "LocalServer",
    "SlotFiles",
    "default_threads",
    "ensure_server",
    "generation_threads",
    "local_chat_model",
    "local_client_options",
    "release_all",
    "server_for",
    "stop_all",
]

DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
DEFAULT_CTX = 8192
START_TIMEOUT_S = 180.0
_PARSED_FALSE_ALARM = (
    r"Pydantic serializer warnings:\s+PydanticSerializationUnexpectedValue\(Expected `none` - "
    r"serialized value may not be as expected \[field_name='parsed'"
)
HEARTBEAT_S = 30.0  # llama.cpp's server sends an SSE comment this often while a streamed request runs
_READY = "DTWIN_LOCAL_LLM_READY "
STARTUP_STAGE = "local_llm_start"
"""The progress and usage stage of starting the server (model load and warm-up)."""
SLOT_FOLDER = "llm-slots"  # under cache.dir: slot files of prompt prefixes (SlotFiles)
CACHE_RAM_MIB = 512  # llama.cpp's host-memory prompt cache (its default, 8 GiB, is too much here)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 2


def default_threads() -> int:
    """Threads for reading prompts: ``$DTWIN_LLM_THREADS``, else the usable cores (at most 8)."""
    env = os.environ.get("DTWIN_LLM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(8, _usable_cores()))


def generation_threads(threads: int) -> int:
    """Threads for generating tokens when prompts are read with ``threads``.

    Half of them, at least 1 (so 1 on 2 cores): one thread per token step never waits at
    llama.cpp's barrier for a descheduled sibling, which is what made 2 threads collapse on a
    loaded 2-core machine (``benchmarks/local_llm.py --speed``). ``$DTWIN_LLM_THREADS`` sets both.
    """
    env = os.environ.get("DTWIN_LLM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, threads // 2)


@dataclass
class LocalServer:
    """A running llama.cpp server child process."""

    model_path: Path
    n_ctx: int
    threads: int
    process: subprocess.Popen[str]
    base_url: str  # http://127.0.0.1:PORT (the OpenAI API is under /v1)
    started_s: float
    log: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    slot_dir: Path | None = None  # where slot files are saved and restored (SlotFiles)

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for OpenAI clients."""
        return self.base_url + "/v1"

    def alive(self) -> bool:
        """True while the child runs."""
        return self.process.poll() is None

    def slot_action(self, action: str, filename: str, timeout: float = 120.0) -> dict[str, Any]:
        """``POST /slots/0?action=save|restore`` (llama.cpp's slot persistence); the answer as JSON.

        Raises:
            ProviderError: the server refused or could not be reached.
        """
        body = json.dumps({"filename": filename}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/slots/0?action={action}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
                return json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ProviderError(f"local LLM server: slot {action} of {filename} failed: {exc}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


_SERVERS: dict[tuple[str, int, int], LocalServer] = {}
_LOCK = threading.Lock()


def _health(base_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _pump(stream: Any, log: deque[str], ready: list[str], event: threading.Event) -> None:
    for line in stream:
        line = line.rstrip("\n")
        if line.startswith(_READY):
            ready.append(line[len(_READY) :].strip())
            event.set()
        else:
            log.append(line)
    event.set()  # EOF: the child is gone


def start_server(
    model_path: str | os.PathLike,
    *,
    n_ctx: int = DEFAULT_CTX,
    threads: int | None = None,
    timeout_s: float = START_TIMEOUT_S,
    slot_dir: str | os.PathLike | None = None,
    gen_threads: int | None = None,
) -> LocalServer:
    """Start a llama.cpp server for a GGUF file and wait until ``/health`` answers.

    ``threads`` read prompts, ``gen_threads`` (default :func:`generation_threads`) generate;
    ``slot_dir`` enables slot files there (:class:`SlotFiles`).

    Raises:
        ConfigError: xllamacpp is not installed, or the model file does not exist.
        ProviderError: the server did not become healthy within ``timeout_s`` (the child is stopped).

    """
    path = Path(model_path)
    if not path.is_file():
        raise ConfigError(f"local LLM model file not found: {path}")
    try:
        import xllamacpp  # noqa: F401  (fail here with a clear message rather than in the child)
    except ImportError as exc:
        raise ConfigError("the local LLM needs xllamacpp: pip install 'dtwin-agent[local]'") from exc
    threads = threads or default_threads()
    gen_threads = gen_threads or generation_threads(threads)
    cmd = [sys.executable, "-m", "dtwin_agent.offline.local_llm", "--model", str(path), "--ctx", str(n_ctx),
           "--threads", str(threads), "--gen-threads", str(gen_threads),
           "--parent", str(os.getpid())]  # fmt: skip
    if slot_dir is not None:
        Path(slot_dir).mkdir(parents=True, exist_ok=True)
        cmd += ["--slot-dir", str(slot_dir)]
    start = time.perf_counter()
    process = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    server = LocalServer(
        path, n_ctx, threads, process, "", 0.0, slot_dir=Path(slot_dir) if slot_dir else None
    )
    ready: list[str] = []
    event = threading.Event()
    threading.Thread(target=_pump, args=(process.stdout, server.log, ready, event), daemon=True).start()
    event.wait(timeout_s)
    deadline = start + timeout_s
    if ready:
        server.base_url = ready[0]
        while time.perf_counter() < deadline and server.alive():
            if _health(server.base_url):
                server.started_s = time.perf_counter() - start
                return server
            time.sleep(0.2)
    code = server.process.poll()
    server.stop()
    tail = " | ".join(line.strip() for line in list(server.log)[-3:]) or "no output"
    why = f"exited with code {code}" if code is not None else f"did not answer within {timeout_s:.0f} s"
    raise ProviderError(f"the local LLM server for {path.name} did not start ({why}): {tail}")


def ensure_server(
    model_path: str | os.PathLike,
    *,
    n_ctx: int = DEFAULT_CTX,
    threads: int | None = None,
    slot_dir: str | os.PathLike | None = None,
) -> LocalServer:
    """The running server for this model file, started on first use (one per file, ctx, threads).

    A start is reported as progress stage ``local_llm_start`` (start and end, with its seconds) and
    recorded under that stage in the running node's :func:`~dtwin_agent.llm.usage.current_usage`.
    """
    threads = threads or default_threads()
    key = (str(Path(model_path).resolve()), n_ctx, threads)
    with _LOCK:
        server = _SERVERS.get(key)
        if server is not None and server.alive():
            return server
        what = f"{Path(model_path).name}, {threads} threads, context {n_ctx}"
        emit(STARTUP_STAGE, "start", message=what)
        try:
            server = start_server(model_path, n_ctx=n_ctx, threads=threads, slot_dir=slot_dir)
        except ProviderError as exc:
            emit(STARTUP_STAGE, "error", message=str(exc))
            raise
        emit(STARTUP_STAGE, "end", message=what, seconds=server.started_s)
        usage = current_usage()  # the start-up is a stage of its own, not part of the node's model calls
        if usage is not None:
            usage.add(STARTUP_STAGE, calls=1, seconds=server.started_s)
        _SERVERS[key] = server
        return server


def server_for(base_url: str) -> LocalServer | None:
    """The running server of this process behind an OpenAI ``base_url`` (``.../v1``), if any."""
    with _LOCK:
        for server in _SERVERS.values():
            if server.alive() and base_url.rstrip("/") in (server.base_url, server.openai_base_url):
                return server
    return None


def release_all() -> int:
    """Stop every server of this process to give its memory back (the next call starts one again).

    The twin's proposal stage calls this before SAM loads, so the two models are never resident
    together. Returns how many servers were stopped.
    """
    with _LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()
    return len(servers)


@atexit.register
def stop_all() -> None:
    """Stop every server this process started."""
    release_all()


class SlotFiles:
    """Slot files of one server: a prompt prefix read once is restored, not read again, by later processes.

    The file of a prefix is named by the sha256 of the model file's name and the prefix text (the
    system prompt and the twin, which every step and every query on that twin begin with). At most
    ``keep`` files stay (the least recently used go first). Each process restores a prefix's file
    at most once, before its first call with that prefix, and saves it once, after that call.

    Args:
        server: a server started with a ``slot_dir``.
        keep: how many slot files to keep.
    """

    def __init__(self, server: LocalServer, keep: int = 4):
        if server.slot_dir is None:
            raise ValueError("the server was started without a slot folder")
        self.server = server
        self.folder = server.slot_dir
        self.keep = keep

    def name(self, prefix: str) -> str:
        """The file name of ``prefix``'s slot."""
        import hashlib

        digest = hashlib.sha256(f"{self.server.model_path.name}\n{prefix}".encode()).hexdigest()[:32]
        return f"prefix-{digest}.bin"

    def before(self, prefix: str) -> bool:
        """Restore ``prefix``'s slot file when it exists and this server has not read it yet."""
        name = self.name(prefix)
        with _LOCK:
            if name in _RESTORED.setdefault(id(self.server), set()):
                return False
            _RESTORED[id(self.server)].add(name)
        path = self.folder / name
        if not path.is_file():
            return False
        try:
            self.server.slot_action("restore", name)
        except ProviderError:
            path.unlink(missing_ok=True)  # a damaged or foreign file: read the prompt instead
            return False
        os.utime(path)
        return True

    def after(self, prefix: str) -> None:
        """Save the slot (it now holds ``prefix``) unless this process saved it already."""
        name = self.name(prefix)
        with _LOCK:
            saved = _SAVED.setdefault(id(self.server), set())
            if name in saved:
                return
            saved.add(name)
        try:
            self.server.slot_action("save", name)
        except ProviderError:
            return  # a cache, never a failure
        files = sorted(self.folder.glob("prefix-*.bin"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.keep :]:
            old.unlink(missing_ok=True)


_RESTORED: dict[int, set[str]] = {}
_SAVED: dict[int, set[str]] = {}


def local_chat_model(model_name: str = DEFAULT_MODEL, settings: Any = None, **kwargs: Any) -> Any:
    """A ``ChatOpenAI`` talking to a local llama.cpp server for ``model_name`` (started if needed).

    Answers are streamed, with llama.cpp's prompt progress: the tokens read and written are reported as
    progress events while a call runs (:mod:`dtwin_agent.llm.llamacpp`). Reading a long prompt on a CPU
    legitimately takes minutes before the first token, but llama.cpp's server sends a heartbeat (an SSE
    comment) every :data:`HEARTBEAT_S` seconds meanwhile, so the read timeout is the longest silence
    allowed, ``models.local_stall_s``: a working server is never cut off however long the prompt, a
    stalled one is detected within that time. The work of one call is bounded anyway (the context size,
    ``max_tokens``). The client never re-sends on its own (``max_retries=0``): retries happen in
    :mod:`dtwin_agent.llm.retry`, counted in ``usage``. The model is named ``local:NAME`` in messages.

    Args:
        model_name: a registered GGUF model (``dtwin models list``) or a path to a ``.gguf`` file.
        settings: :class:`~dtwin_agent.config.Settings`; read for ``models.temperature``,
            ``models.local_stall_s``, the store folder and ``cache.dir`` (slot files under
            ``llm-slots``, when the cache is enabled).
        **kwargs: ``n_ctx`` / ``threads`` for the server; anything else goes to ``ChatOpenAI``.

    Raises:
        ConfigError: the model is not fetched, or xllamacpp / langchain-openai is missing.
        ProviderError: the server did not start.

    """
    from dtwin_agent.weights import store

    try:
        from dtwin_agent.llm.llamacpp import LlamaCppChatOpenAI
    except ImportError as exc:
        raise ConfigError("the local LLM needs langchain-openai: pip install 'dtwin-agent[local]'") from exc
    path = store.resolve_model(model_name, settings)
    spec = store.MODELS.get(model_name)
    n_ctx = int(kwargs.pop("n_ctx", None) or (spec.extra.get("n_ctx") if spec else None) or DEFAULT_CTX)
    cache = getattr(settings, "cache", None)
    slot_dir = Path(cache.dir) / SLOT_FOLDER if cache is not None and cache.enabled else None
    server = ensure_server(path, n_ctx=n_ctx, threads=kwargs.pop("threads", None), slot_dir=slot_dir)
    options = local_client_options(server.openai_base_url, model_name if spec else path.name, settings)
    options.update(kwargs)
    return LlamaCppChatOpenAI(**options)


def local_client_options(base_url: str, model: str, settings: Any = None) -> dict[str, Any]:
    """The ``ChatOpenAI`` options for a llama.cpp server at ``base_url`` (see :func:`local_chat_model`)."""
    import openai

    # langchain-openai dumps the SDK's stream events with model_dump(), whose ``parsed`` field is
    # typed None while it holds the answer: a false alarm printed once per process
    # (langchain-ai/langchain#35538, fixed upstream for non-streamed answers only)
    warnings.filterwarnings("ignore", message=_PARSED_FALSE_ALARM, category=UserWarning)

    models = getattr(settings, "models", None)
    stall = float(getattr(models, "local_stall_s", 0.0) or 90.0)
    return {
        "model": model,
        "name": f"local:{model}",
        "base_url": base_url,
        "api_key": "local",
        "temperature": getattr(models, "temperature", 0.0),
        "streaming": True,
        "stream_usage": True,
        # connect: the server is up or not; read: the longest silence between two chunks
        "timeout": openai.Timeout(connect=10.0, read=stall, write=60.0, pool=stall),
        "max_retries": 0,
    }


# ------------------------------------------------------------------------------ the child process


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _serve(argv: list[str] | None = None) -> int:
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        description="llama.cpp OpenAI-compatible server for one GGUF (dtwin-agent)"
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--ctx", type=int, default=DEFAULT_CTX)
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads reading prompts")
    parser.add_argument(
        "--gen-threads", type=int, default=0, help="threads generating (0: half of --threads)"
    )
    parser.add_argument("--slot-dir", default="", help="folder for slot save/restore (off when empty)")
    parser.add_argument("--cache-ram", type=int, default=CACHE_RAM_MIB, help="host prompt cache, MiB")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.n_batch = 512  # = n_ubatch: the same compute; prompt progress is streamed every 512 tokens
    params.port = args.port
    params.hostnames = ["127.0.0.1"]
    params.cpuparams.n_threads = args.gen_threads or generation_threads(args.threads)
    params.cpuparams_batch.n_threads = args.threads
    params.cache_ram_mib = args.cache_ram
    if args.slot_dir:
        params.slot_save_path = os.path.join(args.slot_dir, "")  # llama.cpp appends the file name
    params.verbosity = 0
    params.warmup = True
    server = xlc.Server(params)
    if args.parent:
        threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(_READY + server.listening_address, flush=True)
    threads = {"threads": args.threads, "gen_threads": params.cpuparams.n_threads}
    print(json.dumps({"model": args.model, "ctx": args.ctx, **threads}), flush=True)
    while not stop.wait(1.0):
        pass
    del server
    return 0


if __name__ == "__main__":  # pragma: no cover - the server child
    sys.exit(_serve())
