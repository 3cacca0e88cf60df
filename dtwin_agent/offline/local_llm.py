"""A local LLM behind llama.cpp's own OpenAI-compatible server, reached through ``ChatOpenAI``.

The runtime is `xllamacpp <https://github.com/xorbitsai/xllamacpp>`_ (MIT, prebuilt CPU wheels,
nothing to compile), whose ``Server`` runs llama.cpp's HTTP server: ``/v1/chat/completions``
with ``response_format`` ``json_schema`` (constrained decoding), so
``ChatOpenAI.with_structured_output(schema)`` works unchanged.

The server runs in a child process (``python -m dtwin_agent.offline.local_llm``) on a free port of
127.0.0.1: a crash or an abort in llama.cpp cannot take the caller down, and stopping it returns
all its memory. :func:`ensure_server` starts one per (model file, context size, threads) and
reuses it; every server is stopped at interpreter exit, and a child whose parent dies stops by
itself.

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
    "default_threads",
    "ensure_server",
    "local_chat_model",
    "local_client_options",
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


def default_threads() -> int:
    """Threads for llama.cpp: ``$DTWIN_LLM_THREADS``, else the usable cores (at most 8)."""
    env = os.environ.get("DTWIN_LLM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 2
    return max(1, min(8, cores))


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

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for OpenAI clients."""
        return self.base_url + "/v1"

    def alive(self) -> bool:
        """True while the child runs."""
        return self.process.poll() is None

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
) -> LocalServer:
    """Start a llama.cpp server for a GGUF file and wait until ``/health`` answers.

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
    cmd = [sys.executable, "-m", "dtwin_agent.offline.local_llm", "--model", str(path), "--ctx", str(n_ctx),
           "--threads", str(threads), "--parent", str(os.getpid())]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    server = LocalServer(path, n_ctx, threads, process, "", 0.0)
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
    model_path: str | os.PathLike, *, n_ctx: int = DEFAULT_CTX, threads: int | None = None
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
            server = start_server(model_path, n_ctx=n_ctx, threads=threads)
        except ProviderError as exc:
            emit(STARTUP_STAGE, "error", message=str(exc))
            raise
        emit(STARTUP_STAGE, "end", message=what, seconds=server.started_s)
        usage = current_usage()  # the start-up is a stage of its own, not part of the node's model calls
        if usage is not None:
            usage.add(STARTUP_STAGE, calls=1, seconds=server.started_s)
        _SERVERS[key] = server
        return server


@atexit.register
def stop_all() -> None:
    """Stop every server this process started."""
    with _LOCK:
        for server in _SERVERS.values():
            server.stop()
        _SERVERS.clear()


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
            ``models.local_stall_s`` and the store folder.
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
    server = ensure_server(path, n_ctx=n_ctx, threads=kwargs.pop("threads", None))
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
    parser.add_argument("--threads", type=int, default=default_threads())
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
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.verbosity = 0
    params.warmup = True
    server = xlc.Server(params)
    if args.parent:
        threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(_READY + server.listening_address, flush=True)
    print(json.dumps({"model": args.model, "ctx": args.ctx, "threads": args.threads}), flush=True)
    while not stop.wait(1.0):
        pass
    del server
    return 0


if __name__ == "__main__":  # pragma: no cover - the server child
    sys.exit(_serve())
