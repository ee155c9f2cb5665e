"""A scripted OpenAI-compatible server on loopback, for fault-injection tests of the ``openai`` teacher.

It answers ``POST /v1/chat/completions`` with whatever a *responder* returns for the n-th request
(:class:`Reply`: status, body, headers, delay), and records every request it received (path,
headers, JSON body). It binds 127.0.0.1 only, caps every delay at ``max_delay`` seconds and stops
with its ``with`` block, so a test cannot hang on it.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Self


@dataclasses.dataclass(frozen=True)
class Reply:
    """One scripted answer. ``delay`` seconds pass before anything is sent; with ``trickle`` the whole
    answer (status line, headers, body) is sent one byte every ``trickle`` seconds."""

    status: int = 200
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    trickle: float = 0.0


def completion(content: str, *, logprobs: list[tuple[str, float]] | None = None, prompt_tokens: int = 11,
               completion_tokens: int = 7, delay: float = 0.0) -> Reply:
    """An HTTP 200 chat completion whose message is ``content``.

    ``logprobs``: the top log-probabilities of the first answer token as ``(token, logprob)``; the
    first entry is the chosen token.
    """
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
    if logprobs is not None:
        token, logprob = logprobs[0]
        choice["logprobs"] = {"content": [{"token": token, "logprob": logprob, "top_logprobs": [
            {"token": t, "logprob": lp} for t, lp in logprobs]}]}
    body = {"id": "chatcmpl-fault", "object": "chat.completion", "model": "fault", "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
    return Reply(body=json.dumps(body), delay=delay)


def error(status: int, *, retry_after: str | None = None, body: str = '{"error": "scripted"}',
          delay: float = 0.0) -> Reply:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return Reply(status=status, body=body, headers=headers, delay=delay)


def sequence(*replies: Reply) -> Callable[[int, dict, dict], Reply]:
    """A responder that plays ``replies`` in order, then repeats the last one forever."""
    return lambda n, payload, headers: replies[min(n, len(replies) - 1)]


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict
    payload: dict


class FaultServer:
    """``with FaultServer(responder) as server:`` then point a teacher at ``server.base_url``.

    ``responder(n, payload, headers) -> Reply`` is called for the n-th request (0-based), from the
    server's threads (one per connection).
    """

    def __init__(self, responder: Callable[[int, dict, dict], Reply] | Sequence[Reply], *,
                 max_delay: float = 5.0):
        self.responder = sequence(*responder) if isinstance(responder, (list, tuple)) else responder
        self.max_delay = max_delay
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                headers = dict(self.headers.items())
                with server._lock:
                    n = len(server.received)
                    server.received.append(Received(self.path, headers, payload))
                reply = server.responder(n, payload, headers)
                time.sleep(min(reply.delay, server.max_delay))
                body = reply.body.encode("utf-8")
                if reply.trickle:
                    head = (f"HTTP/1.1 {reply.status} OK\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii")
                    try:
                        for byte in head + body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client's deadline cut the connection
                    self.close_connection = True
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing left to answer

            def log_message(self, *args):
                pass

        return Handler
