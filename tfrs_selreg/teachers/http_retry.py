"""One JSON POST to a model server: retries by ``urllib3.Retry``, a deadline per attempt, attempts counted.

:class:`JsonPoster` sends with a ``urllib3.PoolManager`` whose ``Retry`` (:func:`retry_policy`) retries
HTTP 429, HTTP 5xx, timeouts and connection errors, at most ``max_retries`` times, with urllib3's
back-off: no wait before the first retry, then ``backoff_base * 2 ** (n - 1)`` plus a jitter drawn from
``U(0, backoff_base)``, at most ``backoff_max``; a ``Retry-After`` (on 429 and 503) replaces the back-off
and is cut to ``backoff_max``. The body is read inside urllib3's retry loop (``preload_content``), so an
answer cut off half-way is retried like a refused one. urllib3's read timeout bounds each silent read;
the deadline here bounds each whole attempt (connecting, headers and body): a server that trickles its
answer is cut off after ``timeout`` seconds too. Every connection taken from the pool is one attempt, so
the count of model calls includes each retry.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import threading
import urllib.parse

import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

FAIL_HTTP_429 = "http_429"
FAIL_HTTP_5XX = "http_5xx"
FAIL_HTTP_4XX = "http_4xx"
FAIL_TIMEOUT = "timeout"
FAIL_CONNECTION_ERROR = "connection_error"

RETRY_STATUSES = (429, *range(500, 600))


def is_loopback(base_url: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Retry(urllib3.Retry):
    """urllib3's ``Retry``; a ``Retry-After`` it cannot parse (e.g. ``2.5``) means the back-off, not an error."""

    def get_retry_after(self, response):
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None


def retry_policy(max_retries: int, backoff_base: float, backoff_max: float) -> urllib3.Retry:
    """The ``Retry`` of every call (see the module docstring)."""
    return _Retry(total=max_retries, allowed_methods=None, status_forcelist=RETRY_STATUSES,
                  backoff_factor=backoff_base, backoff_jitter=backoff_base, backoff_max=backoff_max,
                  retry_after_max=backoff_max, respect_retry_after_header=True, raise_on_status=False)


@dataclasses.dataclass
class Reply:
    """One call's outcome after its retries: HTTP 200's body, or a failure with what the server said."""

    attempts: int
    body: bytes | None = None
    failure: str | None = None
    raw: str | None = None


class _Attempts:
    """The attempts of one call in this thread: each gets a timer that shuts its socket down at the deadline."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.count = 0
        self.expired = threading.Event()
        self._timer: threading.Timer | None = None

    def start(self, conn) -> None:
        self.stop()
        self.count += 1
        expired = self.expired = threading.Event()

        def cut() -> None:
            expired.set()
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

        self._timer = threading.Timer(self.seconds, cut)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


_IN_FLIGHT = threading.local()


class _CountingPoolMixin:
    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)
        attempts = getattr(_IN_FLIGHT, "attempts", None)
        if attempts is not None:
            attempts.start(conn)
        return conn


class _HTTPPool(_CountingPoolMixin, urllib3.HTTPConnectionPool):
    pass


class _HTTPSPool(_CountingPoolMixin, urllib3.HTTPSConnectionPool):
    pass


class JsonPoster:
    """POSTs JSON to ``url`` (thread-safe; ``concurrency`` connections kept alive per host).

    Args:
      url: the endpoint.
      timeout: the deadline of one attempt, in seconds (also urllib3's connect and read timeouts).
      max_retries, backoff_base, backoff_max: :func:`retry_policy`.
      concurrency: connections kept per host.
      max_raw_chars: the server's text kept in :attr:`Reply.raw`.
    """

    def __init__(self, url: str, *, timeout: float, max_retries: int, backoff_base: float, backoff_max: float,
                 concurrency: int, max_raw_chars: int):
        self.url = url
        self.timeout = timeout
        self.retry = retry_policy(max_retries, backoff_base, backoff_max)
        self.max_raw_chars = max_raw_chars
        self._pool = urllib3.PoolManager(maxsize=concurrency, retries=self.retry)
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def post(self, payload: dict, headers: dict[str, str]) -> Reply:
        """Sends ``payload`` with retries; never raises for HTTP or network trouble."""
        attempts = _Attempts(self.timeout)
        _IN_FLIGHT.attempts = attempts
        error = None
        try:
            response = self._pool.request(
                    "POST", self.url, body=json.dumps(payload).encode("utf-8"),
                    headers={"Content-Type": "application/json", **headers},
                    timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout), preload_content=True)
        except MaxRetryError as e:
            error = e.reason or e
        except (HTTPError, OSError) as e:
            error = e
        finally:
            attempts.stop()
            _IN_FLIGHT.attempts = None
        reply = Reply(attempts=max(1, attempts.count))
        if error is not None:
            # urllib3's NewConnectionError is a ConnectTimeoutError by class, but a refusal, not a timeout.
            timed_out = attempts.expired.is_set() or (isinstance(error, Urllib3Timeout)
                                                      and not isinstance(error, NewConnectionError))
            reply.failure = FAIL_TIMEOUT if timed_out else FAIL_CONNECTION_ERROR
            reply.raw = (f"no complete answer within {self.timeout} s" if attempts.expired.is_set()
                         else f"{type(error).__name__}: {error}")
            return reply
        reply.raw = response.data.decode("utf-8", "replace")[:self.max_raw_chars]
        if response.status == 200:
            reply.body = response.data
        elif response.status == 429:
            reply.failure = FAIL_HTTP_429
        elif response.status >= 500:
            reply.failure = FAIL_HTTP_5XX
        else:
            reply.failure = FAIL_HTTP_4XX
        return reply
