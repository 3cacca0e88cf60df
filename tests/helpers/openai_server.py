"""An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 for tests, scripted per request.

``OpenAIServer(behave)`` calls ``behave(n, handler, body)`` for the n-th request (1-based) with the
decoded JSON body; ``behave`` answers with :func:`send_completion` (a plain JSON answer) or
:func:`send_stream` (server-sent events as llama.cpp's server streams them: SSE comments while it
reads the prompt, the content chunks, then a last chunk with ``usage`` and no choices), may sleep
first, or send anything else. Every request body is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behave = Callable[[int, BaseHTTPRequestHandler, dict], None]


class OpenAIServer:
    """The server; ``url`` is the ``base_url`` for OpenAI clients. Use as a context manager."""

    def __init__(self, behave: Behave) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                try:
                    behave(len(outer.requests), self, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on this request
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _usage(tokens: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": tokens[0], "completion_tokens": tokens[1], "total_tokens": sum(tokens)}


def send_completion(
    handler: BaseHTTPRequestHandler,
    content: str,
    *,
    model: str,
    tokens: tuple[int, int] = (50, 9),
    finish_reason: str = "stop",
    cached: int = 0,
) -> None:
    """Answer with one ``chat.completion`` carrying ``content`` and ``(prompt, completion)`` tokens.

    ``finish_reason="length"`` is an answer cut off by the token limit; ``cached`` prompt tokens are
    reported as served from the server's prompt cache.
    """
    message = {"role": "assistant", "content": content}
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            **_usage(tokens),
            **({"prompt_tokens_details": {"cached_tokens": cached}} if cached else {}),
        },
    }
    data = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def send_stream(
    handler: BaseHTTPRequestHandler,
    content: str,
    *,
    model: str,
    tokens: tuple[int, int] = (50, 9),
    heartbeats: int = 0,
    every: float = 0.0,
) -> None:
    """Stream ``content`` as llama.cpp does, after ``heartbeats`` SSE comments ``every`` seconds apart."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()

    def send(text: str) -> None:
        handler.wfile.write(text.encode())
        handler.wfile.flush()

    for _ in range(heartbeats):
        time.sleep(every)
        send(":\n\n")
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
    half = len(content) // 2
    deltas = [{"role": "assistant", "content": ""}, {"content": content[:half]}, {"content": content[half:]}]
    choices = [[{"index": 0, "delta": delta, "finish_reason": None}] for delta in deltas]
    choices.append([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    for choice in choices:
        send(f"data: {json.dumps({**base, 'choices': choice})}\n\n")
    send(f"data: {json.dumps({**base, 'choices': [], 'usage': _usage(tokens)})}\n\n")
    send("data: [DONE]\n\n")
