"""A client of the Bazel HTTP remote cache protocol: `<url>/ac/<key>` and `<url>/cas/<sha256>`.

GET fetches (404 is a miss), HEAD asks, PUT uploads; any server that stores what is
PUT and serves it back works (nginx with `dav_methods PUT`, see docs/cache.md).

Guarantees, relied on by `StepCache`:
- Secrets stay secret: the optional header (`Name: value`, from BUILDLIB_REMOTE_HEADER)
  and a password in the URL are sent with every request and appear in no message or
  exception: `display_url` has no userinfo and every error text goes through `_redact`.
- Every request has a total deadline: `timeout` seconds for connecting, sending the
  headers and reading the answer's headers, plus one second per MiB of body
  (`BODY_RATE`) for the bytes sent or announced. A server that trickles one byte at a
  time cannot stretch it: at the deadline a watcher thread shuts the socket down.
- `abort` (on SIGINT or SIGTERM) shuts down every request in flight and refuses new
  ones, so a build never waits on the network to stop.
- The first failure switches the client off for good: unreachable, timed out, 5xx or a
  refused read turns off `reads` and `writes`, a refused upload (4xx on PUT) turns off
  `writes`; a switched-off direction raises at once without touching the network. So a
  dead remote costs one deadline per build, not one per step.
- No digests are checked here: the receiving side does (`LocalStore.receive`, `unseal`).
- Requests go straight to the host: http.client does not use the *_proxy variables.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import http.client
import re
import socket
import ssl
import threading
import time
import weakref
from pathlib import Path
from typing import BinaryIO
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from buildlib.cache.cas import Area, Sink
from buildlib.core.errors import UserError

CHUNK = 1 << 20
ENTRY_LIMIT = 64 << 20  # an ac entry larger than this is not ours
BODY_RATE = 1 << 20  # bytes per second of body a request's deadline allows for
ERROR_EXCERPT = 300  # bytes of an error answer's body quoted in the message
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


MIN_REDACTED = 4


class RemoteFailure(enum.Enum):
    UNAVAILABLE = "unavailable"  # reads and writes are off
    UPLOAD_REFUSED = "upload refused"  # writes are off
    INTERRUPTED = "interrupted"  # aborted by a signal: everything is off, nothing to report


class RemoteError(Exception):
    """A request failed; the message is redacted and names the remote and the cause."""

    def __init__(
        self,
        failure: RemoteFailure,
        message: str,
        *,
        status: int | None = None,
        area: Area | None = None,
    ) -> None:
        self.failure = failure
        self.status = status
        self.area = area
        super().__init__(message)


class _Deadlines:
    """One thread that shuts down the socket of every request still running at its deadline.

    A socket timeout bounds each recv, not a request: a server sending a byte every
    second keeps http.client reading forever. Shutting the socket down from outside
    wakes the reading thread at once with an error.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: dict[int, tuple[float, socket.socket]] = {}
        self._expired: set[int] = set()
        self._next = 0
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            self._next += 1
            self._active[self._next] = (deadline, sock)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="remote-deadlines"
                )
                self._thread.start()
            self._cond.notify()
            return self._next

    def extend(self, token: int, deadline: float) -> None:
        with self._cond:
            if token in self._active:
                self._active[token] = (deadline, self._active[token][1])

    def release(self, token: int) -> bool:
        """Stop watching; True when the deadline had passed and the socket was shut down."""
        with self._cond:
            self._active.pop(token, None)
            expired = token in self._expired
            self._expired.discard(token)
            return expired

    def expire_all(self) -> None:
        with self._cond:
            for token, (_deadline, sock) in self._active.items():
                self._expired.add(token)
                _shutdown(sock)
            self._active.clear()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, sock) in list(self._active.items()):
                    if deadline <= now:
                        del self._active[token]
                        self._expired.add(token)
                        _shutdown(sock)
                soonest = min((d for d, _s in self._active.values()), default=None)
                self._cond.wait(None if soonest is None else max(0.0, soonest - now))


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def parse_header(text: str) -> tuple[str, str]:
    """Split `Name: value`. The error names the variables, never the value."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    valid = (
        bool(colon)
        and bool(TOKEN.match(name))
        and bool(value)
        and not any(c in value for c in "\r\n\0")
    )
    if valid:
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            valid = False
    if not valid:
        raise UserError(
            "the remote cache header (BUILDLIB_REMOTE_HEADER or the variable named "
            "by [cache].remote_header_env) is not a valid 'Name: value' header",
            fix="set it to e.g. 'Authorization: Bearer <token>' (one line, latin-1)",
        )
    return name, value


def check_url(url: str) -> tuple[SplitResult, int | None]:
    """The parts of a remote cache's URL and its port, or a UserError (never a ValueError
    from deep in a step: the build checks the URL before any step starts)."""
    url = url.strip()  # a CI secret often ends in a newline: urlsplit drops it too
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # "http://[::1", a port that is no number
        parts, port = None, -1
    host = parts.hostname if parts is not None else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not host
        or port == -1
        or any(c.isspace() or not c.isprintable() for c in url)
    ):
        shown = _display(parts) if parts is not None else url
        if any(c.isspace() or not c.isprintable() for c in url):
            shown = url  # its repr shows what is wrong with it
        raise UserError(
            f"remote cache URL {shown!r} is not an http(s) URL",
            fix="use e.g. http://cache.example:8080/buildlib in --remote-cache, "
            "BUILDLIB_REMOTE_CACHE or [cache].remote",
        )
    return parts, port


def _display(parts: SplitResult) -> str:
    """The URL without its user and password."""
    return urlunsplit((parts.scheme, _host_port(parts.netloc), parts.path, "", ""))


class HttpRemote:
    """One remote cache for one build; thread-safe (one keep-alive connection per thread)."""

    def __init__(
        self, url: str, *, header: str | None, timeout: float, read_only: bool = False
    ) -> None:
        parts, port = check_url(url)
        host = parts.hostname or ""
        self.display_url = _display(parts)
        self._https = parts.scheme == "https"
        self._host, self._port = host, port
        self._prefix = parts.path.rstrip("/")
        self._headers: dict[str, str] = {}
        self._secrets: list[str] = []
        if parts.username is not None or parts.password is not None:
            user, password = unquote(parts.username or ""), unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
            self._secrets += [token, password, parts.password or ""]
        if header:
            name, value = parse_header(header)
            self._headers[name] = value
            self._secrets.append(value)
        self.timeout = timeout
        self.reads = True
        self.writes = not read_only
        self.requests = 0  # sent so far, for tests and the report
        self._aborted = False
        self._deadlines = _Deadlines()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        # Sockets of idle keep-alive connections are closed when the client goes away,
        # whichever thread opened them (their thread-local slots may outlive us).
        weakref.finalize(self, _close_all, self._connections)

    # -- CacheBackend --------------------------------------------------------------------

    def fetch(self, area: Area, name: str, sink: Sink) -> bool:
        """Stream the blob to `sink`; False on 404. Raises RemoteError on any failure."""
        self._require(reading=True)
        return self._read_status(self._exchange("GET", area, name, sink=sink), "GET")

    def contains(self, area: Area, name: str) -> bool:
        self._require(reading=True)
        return self._read_status(self._exchange("HEAD", area, name), "HEAD")

    def store(self, area: Area, name: str, source: Path) -> None:
        self._require(reading=False)
        with source.open("rb") as handle:
            size = source.stat().st_size
            answer = self._exchange("PUT", area, name, body=handle, length=size)
        self._write_status(answer, area)

    # -- conveniences --------------------------------------------------------------------

    def get_bytes(self, area: Area, name: str, limit: int = ENTRY_LIMIT) -> bytes | None:
        chunks: list[bytes] = []
        received = 0

        def sink(chunk: bytes) -> None:
            nonlocal received
            received += len(chunk)
            if received > limit:
                raise RemoteError(
                    RemoteFailure.UNAVAILABLE,
                    f"{self.display_url}: {area.value}/{name} is larger than {limit} bytes",
                )
            chunks.append(chunk)

        return b"".join(chunks) if self.fetch(area, name, sink) else None

    def put_bytes(self, area: Area, name: str, data: bytes) -> None:
        self._require(reading=False)
        self._write_status(self._exchange("PUT", area, name, body=data, length=len(data)), area)

    def close(self) -> None:
        with self._lock:
            _close_all(self._connections)

    def abort(self) -> None:
        """Fail every request in flight now and every later one at once (thread-safe)."""
        with self._lock:
            self._aborted = True
            self.reads = self.writes = False
        self._deadlines.expire_all()

    # -- requests ------------------------------------------------------------------------

    def _require(self, *, reading: bool) -> None:
        if self._aborted:
            raise RemoteError(RemoteFailure.INTERRUPTED, f"{self.display_url}: interrupted")
        if not (self.reads if reading else self.writes):
            raise RemoteError(
                RemoteFailure.UNAVAILABLE if reading else RemoteFailure.UPLOAD_REFUSED,
                f"{self.display_url}: switched off for this build",
            )

    def _read_status(self, answer: tuple[int, str], method: str) -> bool:
        status, excerpt = answer
        if status == 200:
            return True
        if status == 404:
            return False
        raise self._fail(RemoteFailure.UNAVAILABLE, f"HTTP {status} on {method}{excerpt}")

    def _write_status(self, answer: tuple[int, str], area: Area) -> None:
        status, excerpt = answer
        if status in (200, 201, 204):
            return
        failure = RemoteFailure.UNAVAILABLE if status >= 500 else RemoteFailure.UPLOAD_REFUSED
        error = self._fail(failure, f"HTTP {status} on PUT /{area.value}/{excerpt}")
        error.status, error.area = status, area
        raise error

    def _exchange(
        self,
        method: str,
        area: Area,
        name: str,
        *,
        sink: Sink | None = None,
        body: bytes | BinaryIO | None = None,
        length: int = 0,
    ) -> tuple[int, str]:
        """Send one request and consume its answer: (status, excerpt of an error's body).

        A keep-alive connection the server closed meanwhile is retried once on a new one
        (every method used here is idempotent); anything else is a failure. The whole
        exchange, retry included, holds to one deadline (see the module's docstring).
        """
        path = f"{self._prefix}/{area.value}/{name}"
        headers = dict(self._headers)
        if method == "PUT":
            headers["Content-Length"] = str(length)
        deadline = time.monotonic() + self.timeout + length / BODY_RATE
        for attempt in (1, 2):
            self._require(reading=method != "PUT")
            connection, reused = self._connection()
            with self._lock:
                self.requests += 1
            token: int | None = None
            try:
                token = self._watch(connection, deadline)
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                announced = response.getheader("Content-Length", "")
                if announced.isdigit():
                    self._deadlines.extend(token, deadline + int(announced) / BODY_RATE)
                answer = self._consume(response, sink if method == "GET" else None)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if self._expired(token):
                    raise self._late() from None
                closed = isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                )
                if not (closed and reused and attempt == 1):
                    raise self._fail(RemoteFailure.UNAVAILABLE, exc) from None
                if not isinstance(body, (bytes, type(None))):
                    body.seek(0)
                continue
            finally:
                if token is not None:
                    self._deadlines.release(token)
            if self._expired(token):  # the watcher cut the answer short
                raise self._late()
            return answer
        raise AssertionError("unreachable")

    def _watch(self, connection: http.client.HTTPConnection, deadline: float) -> int:
        """Connect if needed (bounded by what is left of the deadline), then hand the
        socket to the deadline watcher; its own timeout is only a backstop behind it."""
        if connection.sock is None:
            connection.timeout = max(0.01, deadline - time.monotonic())
            connection.connect()
            connection.timeout += 1.0
        sock = connection.sock
        assert sock is not None
        sock.settimeout(connection.timeout)
        return self._deadlines.watch(sock, deadline)

    def _expired(self, token: int | None) -> bool:
        return token is not None and self._deadlines.release(token)

    def _late(self) -> RemoteError:
        if self._aborted:
            return RemoteError(RemoteFailure.INTERRUPTED, f"{self.display_url}: interrupted")
        return self._fail(
            RemoteFailure.UNAVAILABLE,
            f"no complete answer within {self.timeout:g}s (plus 1s per MiB of body)",
        )

    def _consume(self, response: http.client.HTTPResponse, sink: Sink | None) -> tuple[int, str]:
        status = response.status
        complete = False
        excerpt = b""
        try:
            while chunk := _read(response):
                if status == 200 and sink is not None:
                    sink(chunk)  # the receiver's own errors (disk full...) pass through
                elif status >= 400 and len(excerpt) < ERROR_EXCERPT:
                    excerpt += chunk[: ERROR_EXCERPT - len(excerpt)]
            if response.length:  # read1 ends quietly where the connection did
                raise http.client.IncompleteRead(b"", response.length)
            # read1, unlike read, leaves an answer it has read to the end open (and a
            # HEAD's always): closing it frees the connection for the next request.
            response.close()
            complete = True
        finally:
            if not complete or response.will_close:
                self._drop()
        text = " ".join(excerpt.decode("utf-8", "replace").split())
        return status, (f": {text!r}" if text else "")

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection, False

    def _drop(self) -> None:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def _fail(self, failure: RemoteFailure, cause: BaseException | str) -> RemoteError:
        """Switch off what `failure` says and return the (redacted) error to raise."""
        with self._lock:
            self.writes = False
            if failure is RemoteFailure.UNAVAILABLE:
                self.reads = False
        return RemoteError(failure, self._redact(f"{self.display_url}: {self._describe(cause)}"))

    def _describe(self, cause: BaseException | str) -> str:
        if isinstance(cause, str):
            return cause
        if isinstance(cause, TimeoutError):
            return f"no answer within {self.timeout:g}s"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        return f"{type(cause).__name__}: {cause}"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            # A secret of a few characters ("p") would be found all over the text, and
            # shown URLs never hold the password anyway.
            if len(secret) >= MIN_REDACTED:
                text = text.replace(secret, "***")
        return text


def _read(response: http.client.HTTPResponse) -> bytes:
    """At most CHUNK bytes, from at most one recv: the deadline is checked between them."""
    return response.read1(CHUNK)


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    for connection in connections:
        connection.close()
    connections.clear()


def _host_port(netloc: str) -> str:
    return netloc.rpartition("@")[2]
