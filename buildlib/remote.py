"""A client of the Bazel HTTP remote cache protocol: `<url>/ac/<key>` and `<url>/cas/<sha256>`.

GET fetches (404 is a miss), HEAD asks, PUT uploads; any server that stores what is
PUT and serves it back works (nginx with `dav_methods PUT`, see docs/cache.md).

Guarantees, relied on by `StepCache`:
- Secrets stay secret: the optional header (`Name: value`, from BUILDLIB_REMOTE_HEADER)
  and a password in the URL are sent with every request and appear in no message or
  exception: `display_url` has no userinfo and every error text goes through `_redact`.
- Every request is bounded by `timeout` seconds to connect and per read.
- The first failure switches the client off for good: unreachable, timed out, 5xx or a
  refused read turns off `reads` and `writes`, a refused upload (4xx on PUT) turns off
  `writes`; a switched-off direction raises at once without touching the network. So a
  dead remote costs one timeout per build, not one per step.
- No digests are checked here: the receiving side does (`LocalStore.receive`, `unseal`).
- Requests go straight to the host: http.client does not use the *_proxy variables.
"""

from __future__ import annotations

import base64
import enum
import http.client
import re
import ssl
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit

from buildlib.casstore import Area, Sink
from buildlib.errors import UserError

CHUNK = 1 << 20
ENTRY_LIMIT = 64 << 20  # an ac entry larger than this is not ours
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class RemoteFailure(enum.Enum):
    UNAVAILABLE = "unavailable"  # reads and writes are off
    UPLOAD_REFUSED = "upload refused"  # writes are off


class RemoteError(Exception):
    """A request failed; the message is redacted and names the remote and the cause."""

    def __init__(self, failure: RemoteFailure, message: str) -> None:
        self.failure = failure
        super().__init__(message)


def parse_header(text: str) -> tuple[str, str]:
    """Split `Name: value`. The error names the variables, never the value."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    valid = bool(colon) and bool(TOKEN.match(name)) and bool(value) and not any(
        c in value for c in "\r\n\0")
    if valid:
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            valid = False
    if not valid:
        raise UserError("the remote cache header (BUILDLIB_REMOTE_HEADER or the variable named "
                        "by [cache].remote_header_env) is not a valid 'Name: value' header",
                        fix="set it to e.g. 'Authorization: Bearer <token>' (one line, latin-1)")
    return name, value


class HttpRemote:
    """One remote cache for one build; thread-safe (one keep-alive connection per thread)."""

    def __init__(self, url: str, *, header: str | None, timeout: float,
                 read_only: bool = False) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        self.display_url = urlunsplit((parts.scheme, _host_port(parts.netloc), parts.path, "", ""))
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not host or port == -1:
            raise UserError(f"remote cache URL {self.display_url!r} is not an http(s) URL",
                            fix="use e.g. http://cache.example:8080/buildlib in --remote-cache, "
                                "BUILDLIB_REMOTE_CACHE or [cache].remote")
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
        status = self._exchange("GET", area, name, sink=sink)
        return self._read_status(status, "GET")

    def contains(self, area: Area, name: str) -> bool:
        self._require(reading=True)
        return self._read_status(self._exchange("HEAD", area, name), "HEAD")

    def store(self, area: Area, name: str, source: Path) -> None:
        self._require(reading=False)
        with source.open("rb") as handle:
            size = source.stat().st_size
            status = self._exchange("PUT", area, name, body=handle, length=size)
        self._write_status(status)

    # -- conveniences --------------------------------------------------------------------

    def get_bytes(self, area: Area, name: str, limit: int = ENTRY_LIMIT) -> bytes | None:
        chunks: list[bytes] = []
        received = 0

        def sink(chunk: bytes) -> None:
            nonlocal received
            received += len(chunk)
            if received > limit:
                raise RemoteError(RemoteFailure.UNAVAILABLE,
                                  f"{self.display_url}: {area.value}/{name} is larger than "
                                  f"{limit} bytes")
            chunks.append(chunk)

        return b"".join(chunks) if self.fetch(area, name, sink) else None

    def put_bytes(self, area: Area, name: str, data: bytes) -> None:
        self._require(reading=False)
        self._write_status(self._exchange("PUT", area, name, body=data, length=len(data)))

    def close(self) -> None:
        with self._lock:
            _close_all(self._connections)

    # -- requests ------------------------------------------------------------------------

    def _require(self, *, reading: bool) -> None:
        if not (self.reads if reading else self.writes):
            raise RemoteError(RemoteFailure.UNAVAILABLE if reading else
                              RemoteFailure.UPLOAD_REFUSED,
                              f"{self.display_url}: switched off for this build")

    def _read_status(self, status: int, method: str) -> bool:
        if status == 200:
            return True
        if status == 404:
            return False
        raise self._fail(RemoteFailure.UNAVAILABLE, f"HTTP {status} on {method}")

    def _write_status(self, status: int) -> None:
        if status in (200, 201, 204):
            return
        failure = RemoteFailure.UNAVAILABLE if status >= 500 else RemoteFailure.UPLOAD_REFUSED
        raise self._fail(failure, f"HTTP {status} on PUT")

    def _exchange(self, method: str, area: Area, name: str, *, sink: Sink | None = None,
                  body: bytes | BinaryIO | None = None, length: int = 0) -> int:
        """Send one request and consume its response; returns the status.

        A keep-alive connection the server closed meanwhile is retried once on a new one
        (every method used here is idempotent); anything else is a failure.
        """
        path = f"{self._prefix}/{area.value}/{name}"
        headers = dict(self._headers)
        if method == "PUT":
            headers["Content-Length"] = str(length)
        for attempt in (1, 2):
            connection, reused = self._connection()
            with self._lock:
                self.requests += 1
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop()
                if reused and attempt == 1:
                    if not isinstance(body, (bytes, type(None))):
                        body.seek(0)
                    continue
                raise self._fail(RemoteFailure.UNAVAILABLE, exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise self._fail(RemoteFailure.UNAVAILABLE, exc) from None
            return self._consume(response, sink if method == "GET" else None)
        raise AssertionError("unreachable")

    def _consume(self, response: http.client.HTTPResponse, sink: Sink | None) -> int:
        status = response.status
        complete = False
        try:
            while chunk := _read(response, self._fail):
                if status == 200 and sink is not None:
                    sink(chunk)  # the receiver's own errors (disk full...) pass through
            complete = True
        finally:
            if not complete or response.will_close:
                self._drop()
        return status

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                     context=ssl.create_default_context())
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
            if secret:
                text = text.replace(secret, "***")
        return text


def _read(response: http.client.HTTPResponse,
          fail: Callable[[RemoteFailure, BaseException], RemoteError]) -> bytes:
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise fail(RemoteFailure.UNAVAILABLE, exc) from None


def _close_all(connections: list[http.client.HTTPConnection]) -> None:
    for connection in connections:
        connection.close()
    connections.clear()


def _host_port(netloc: str) -> str:
    return netloc.rpartition("@")[2]
