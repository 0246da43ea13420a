"""The HTTP remote cache against a real nginx, and against servers that fail in each way."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import KEY1, KEY2, KEY3, SCOPE, digest_of, free_port, make_output_tree
from nginx_server import Nginx, running_nginx

from buildlib.cache.cas import Area, CacheBackend, LocalStore
from buildlib.cache.config import CacheConfig
from buildlib.cache.remote import HttpRemote, RemoteError, RemoteFailure, parse_header
from buildlib.cache.store import CacheSource, StepCache
from buildlib.core.errors import UserError

pytestmark = pytest.mark.nginx
SECRET = "s3cr3t-T0KEN-4242"
BASIC = base64.b64encode(f"ci:{SECRET}".encode()).decode()
HEADER = f"Authorization: Basic {BASIC}"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    with running_nginx(tmp_path / "nginx") as server:
        yield server


def cache_for(
    directory: Path,
    url: str | None,
    *,
    read_only: bool = False,
    header: str | None = None,
    timeout: float = 5.0,
) -> StepCache:
    return StepCache(
        CacheConfig(
            local_dir=directory,
            remote_url=url,
            remote_header=header,
            remote_read_only=read_only,
            remote_timeout=timeout,
        )
    )


def save(cache: StepCache, root: Path, key: str, paths: list[str]) -> str | None:
    return cache.save("app", key, root, paths, root / "logs/step.log", {}, scope=SCOPE)


def logged(server: Nginx, *caches: StepCache) -> list[tuple[str, str, int]]:
    """The server's log, once it holds every request these caches sent."""
    sent = sum(c.remote.requests for c in caches if c.remote is not None)
    return server.requests(sent)


def methods(server: Nginx, *caches: StepCache) -> list[str]:
    return [method for method, _uri, _status in logged(server, *caches)]


# -- the backend contract, run against both implementations --------------------------------


class BackendContract:
    """What StepCache relies on from any CacheBackend."""

    def test_absent_blob_is_a_miss(self, backend: CacheBackend) -> None:
        chunks: list[bytes] = []
        assert backend.fetch(Area.CAS, "a" * 64, chunks.append) is False
        assert chunks == []
        assert backend.contains(Area.CAS, "a" * 64) is False

    def test_blob_round_trip(self, backend: CacheBackend, tmp_path: Path) -> None:
        data = bytes(range(256)) * 5000
        source = tmp_path / "blob"
        source.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        backend.store(Area.CAS, digest, source)
        chunks: list[bytes] = []
        assert backend.fetch(Area.CAS, digest, chunks.append) is True
        assert b"".join(chunks) == data
        assert backend.contains(Area.CAS, digest) is True

    def test_entry_round_trip_and_overwrite(self, backend: CacheBackend, tmp_path: Path) -> None:
        source = tmp_path / "entry"
        for text in (b'{"first": 1}', b'{"second": 2}'):
            source.write_bytes(text)
            backend.store(Area.AC, KEY1, source)
            chunks: list[bytes] = []
            assert backend.fetch(Area.AC, KEY1, chunks.append)
            assert b"".join(chunks) == text


class TestLocalStore(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> CacheBackend:
        return LocalStore(tmp_path / "store")


class TestHttpRemote(BackendContract):
    @pytest.fixture
    def backend(self, nginx: Nginx) -> Iterator[CacheBackend]:
        remote = HttpRemote(nginx.url + "/prefix", header=None, timeout=5)
        yield remote
        remote.close()


# -- sharing a cache ---------------------------------------------------------------------


def test_two_local_caches_share_results_through_nginx(tmp_path: Path, nginx: Nginx) -> None:
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    paths = make_output_tree(ws1)
    (ws1 / "out/big.bin").write_bytes(bytes(range(256)) * 20_000)
    paths.append("out/big.bin")
    first = cache_for(tmp_path / "cache1", nginx.url)
    assert save(first, ws1, KEY1, paths) is None
    # the entry goes last, after its blobs
    assert logged(nginx, first)[-1] == ("PUT", f"/ac/{KEY1}", 201)

    second = cache_for(tmp_path / "cache2", nginx.url)
    entry = second.lookup("app", KEY1)
    assert entry is not None and entry.source is CacheSource.REMOTE
    assert second.restore(entry, ws2, SCOPE)
    for rel in ("out/bin/app", "out/share/data.txt", "out/big.bin"):
        assert digest_of(ws2 / rel) == digest_of(ws1 / rel)
    assert (ws2 / "out/app").readlink() == Path("bin/app")
    assert second.log_text(entry) == "compiling \ndone\n"
    assert second.warnings == []

    offline = cache_for(tmp_path / "cache2", None)  # the hit was copied into the local store
    local = offline.lookup("app", KEY1)
    assert local is not None and local.source is CacheSource.LOCAL

    before = len(logged(nginx, first, second))
    assert save(first, ws1, KEY2, paths) is None  # same blobs: only HEADs and the new entry
    new = logged(nginx, first, second)[before:]
    puts = [uri.split("/")[1] for m, uri, _s in new if m == "PUT"]
    assert puts == ["cas", "ac"]  # the sealed entry (its body), then its action result
    assert new[-1] == ("PUT", f"/ac/{KEY2}", 201)


def test_read_only_mode_never_uploads(tmp_path: Path, nginx: Nginx) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = cache_for(tmp_path / "cache", nginx.url, read_only=True)
    assert cache.lookup("app", KEY1) is None
    assert save(cache, ws, KEY1, paths) is None
    assert cache.lookup("app", KEY1) is not None  # stored locally all the same
    assert methods(nginx, cache) == ["GET"]
    writer = cache_for(tmp_path / "writer", nginx.url)
    save(writer, ws, KEY2, paths)
    reader = cache_for(tmp_path / "reader", nginx.url, read_only=True)
    assert reader.lookup("app", KEY2) is not None  # read-only still fetches


def test_corrupt_remote_blob_is_not_used(tmp_path: Path, nginx: Nginx) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    save(cache_for(tmp_path / "cache1", nginx.url), ws, KEY1, paths)
    blob = nginx.data / "cas" / digest_of(ws / "out/share/data.txt")
    blob.write_bytes(blob.read_bytes().upper())
    fresh = cache_for(tmp_path / "cache2", nginx.url)
    assert fresh.lookup("app", KEY1) is None
    assert len(fresh.warnings) == 1 and "does not match its sha256" in fresh.warnings[0]
    assert not LocalStore(tmp_path / "cache2").contains(Area.CAS, blob.name)
    assert not LocalStore(tmp_path / "cache2").contains(Area.AC, KEY1)
    assert fresh.remote is not None and fresh.remote.reads  # bad data is not an outage


def test_truncated_remote_entry_is_a_miss_with_a_warning(tmp_path: Path, nginx: Nginx) -> None:
    ws = tmp_path / "ws"
    save(cache_for(tmp_path / "cache1", nginx.url), ws, KEY1, make_output_tree(ws))
    entry = nginx.data / "ac" / KEY1
    entry.write_bytes(entry.read_bytes()[:100])
    fresh = cache_for(tmp_path / "cache2", nginx.url)
    assert fresh.lookup("app", KEY1) is None
    assert len(fresh.warnings) == 1 and "corrupt" in fresh.warnings[0]


def test_remote_entry_with_a_lost_blob_is_a_miss(tmp_path: Path, nginx: Nginx) -> None:
    ws = tmp_path / "ws"
    save(cache_for(tmp_path / "cache1", nginx.url), ws, KEY1, make_output_tree(ws))
    (nginx.data / "cas" / digest_of(ws / "out/bin/app")).unlink()
    fresh = cache_for(tmp_path / "cache2", nginx.url)
    assert fresh.lookup("app", KEY1) is None
    assert fresh.warnings == []


# -- failures cost one timeout and one warning -------------------------------------------


def test_remote_down_is_one_failure_and_one_warning(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    paths = make_output_tree(ws)
    cache = cache_for(tmp_path / "cache", f"http://127.0.0.1:{free_port()}", timeout=2)
    for key in (KEY1, KEY2, KEY3):
        assert cache.lookup("app", key) is None
    for key in (KEY1, KEY2):
        assert save(cache, ws, key, paths) is None
    assert cache.remote is not None and cache.remote.requests == 1
    assert len(cache.warnings) == 1
    assert "remote cache unavailable" in cache.warnings[0]
    assert "connection refused" in cache.warnings[0]
    assert cache.lookup("app", KEY1) is not None  # the local cache goes on


class SilentServer:
    """Accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self.held.append(connection)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for connection in self.held:
            connection.close()
        self.sock.close()


def test_server_that_never_answers_costs_one_timeout(tmp_path: Path) -> None:
    server = SilentServer()
    try:
        ws = tmp_path / "ws"
        paths = make_output_tree(ws)
        cache = cache_for(tmp_path / "cache", f"http://127.0.0.1:{server.port}", timeout=0.5)
        for key in (KEY1, KEY2, KEY3):
            assert cache.lookup("app", key) is None
        assert save(cache, ws, KEY1, paths) is None
        assert server.accepted == 1
        assert cache.remote is not None and cache.remote.requests == 1
        assert len(cache.warnings) == 1 and "no complete answer within 0.5s" in cache.warnings[0]
    finally:
        server.close()


def test_server_errors_switch_the_remote_off(tmp_path: Path) -> None:
    with running_nginx(tmp_path / "nginx", extra="            return 503;") as server:
        ws = tmp_path / "ws"
        paths = make_output_tree(ws)
        cache = cache_for(tmp_path / "cache", server.url)
        for key in (KEY1, KEY2):
            assert cache.lookup("app", key) is None
            assert save(cache, ws, key, paths) is None
        assert logged(server, cache) == [("GET", f"/ac/{KEY1}", 503)]
        assert len(cache.warnings) == 1 and "HTTP 503" in cache.warnings[0]


class ClosingServer:
    """Answers each request on a connection, then closes it without saying so (no
    `Connection: close`), as a server does when its keep-alive timeout passes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                self.requests += 1
                connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def test_a_keep_alive_connection_closed_by_the_server_is_retried(tmp_path: Path) -> None:
    server = ClosingServer()
    try:
        remote = HttpRemote(f"http://127.0.0.1:{server.port}", header=None, timeout=5)
        for key in (KEY1, KEY2, KEY3):
            assert remote.get_bytes(Area.AC, key) is None
        assert remote.reads and server.requests == 3
        assert remote.requests == 5  # the 2nd and 3rd each retried once on a new connection
    finally:
        server.close()


# -- who may write, and secrets -------------------------------------------------------------


def test_limit_except_get_denies_uploads_once_and_reads_go_on(tmp_path: Path) -> None:
    """The docs' nginx setup: anyone may read, nobody may PUT from here."""
    with running_nginx(
        tmp_path / "nginx", extra="            limit_except GET { deny all; }"
    ) as server:
        ws = tmp_path / "ws"
        paths = make_output_tree(ws)
        (server.data / "ac").mkdir()
        cache = cache_for(tmp_path / "cache", server.url)
        assert save(cache, ws, KEY1, paths) is None
        assert save(cache, ws, KEY2, paths) is None
        assert len(cache.warnings) == 1 and "refused an upload" in cache.warnings[0]
        assert "HTTP 403" in cache.warnings[0]
        assert [s for m, _u, s in logged(server, cache) if m == "PUT"] == [403]
        assert cache.remote is not None and cache.remote.reads and not cache.remote.writes
        assert cache.lookup("app", KEY3) is None
        assert logged(server, cache)[-1] == ("GET", f"/ac/{KEY3}", 404)


def auth_nginx(base: Path) -> Iterator[Nginx]:
    """Reads are open; PUT needs the CI's basic-auth credentials (docs/cache.md)."""
    base.mkdir(parents=True)
    (base / "htpasswd").write_text(f"ci:{{PLAIN}}{SECRET}\n")
    extra = (
        "            limit_except GET {\n"
        '                auth_basic "buildlib cache";\n'
        f"                auth_basic_user_file {base}/htpasswd;\n"
        "            }"
    )
    with running_nginx(base, extra=extra) as server:
        yield server


def test_header_is_sent_and_lets_trusted_ci_upload(tmp_path: Path) -> None:
    for server in auth_nginx(tmp_path / "nginx"):
        ws = tmp_path / "ws"
        paths = make_output_tree(ws)
        ci = cache_for(tmp_path / "ci", server.url, header=HEADER)
        assert save(ci, ws, KEY1, paths) is None
        assert ci.warnings == []
        assert logged(server, ci)[-1] == ("PUT", f"/ac/{KEY1}", 201)
        developer = cache_for(tmp_path / "dev", server.url)
        assert developer.lookup("app", KEY1) is not None
        assert save(developer, ws, KEY2, paths) is None
        assert len(developer.warnings) == 1 and "HTTP 401" in developer.warnings[0]


def test_secrets_never_appear_in_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    wrong = f"Authorization: Basic {base64.b64encode(b'ci:wrong-' + SECRET.encode()).decode()}"
    for server in auth_nginx(tmp_path / "nginx"):
        ws = tmp_path / "ws"
        paths = make_output_tree(ws)
        for n, (url, header) in enumerate(
            [
                (server.url, wrong),  # refused upload
                (f"http://ci:{SECRET}@127.0.0.1:{free_port()}", HEADER),  # down
                (f"http://127.0.0.1:{free_port()}/x", HEADER),
            ]
        ):
            cache = cache_for(tmp_path / f"cache{n}", url, header=header, timeout=1)
            cache.lookup("app", KEY1)
            save(cache, ws, KEY1, paths)
            texts += cache.warnings
            assert cache.remote is not None
            texts.append(cache.remote.display_url)
            with pytest.raises(RemoteError) as caught:
                cache.remote.put_bytes(Area.AC, KEY1, b"{}")
            texts += [str(caught.value), repr(caught.value)]
        remote = HttpRemote(f"http://127.0.0.1:{free_port()}", header=HEADER, timeout=1)
        with pytest.raises(RemoteError) as direct:
            remote.get_bytes(Area.AC, KEY1)
        texts += [
            str(direct.value),
            repr(direct.value),
            str(direct.value.__cause__),
            str(direct.value.__context__),
        ]
        with pytest.raises(UserError) as bad:
            parse_header(f"Authorization {SECRET}")
        texts.append(str(bad.value))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, caplog.text]
    assert any("refused an upload" in t for t in texts)
    assert any("unavailable" in t for t in texts)
    for text in texts:
        assert SECRET not in text
        assert BASIC not in text
        assert "wrong-" not in text


@pytest.mark.parametrize(
    "header",
    [
        "no colon HIDDEN",
        ": HIDDEN",
        "Bad Name: HIDDEN",
        "Name:",
        "N: HIDDEN\r\nX: b",
        "N: HIDDEN\u4e00",
    ],
)
def test_malformed_header_is_a_user_error(header: str) -> None:
    with pytest.raises(UserError, match="BUILDLIB_REMOTE_HEADER") as caught:
        StepCache(
            CacheConfig(
                local_dir=Path("/nonexistent"),
                remote_url="http://127.0.0.1:1",
                remote_header=header,
            )
        )
    assert "HIDDEN" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["ftp://host/cache", "http://", "http://host:notaport/", "cache.example:8080"]
)
def test_bad_url_is_a_user_error(url: str) -> None:
    with pytest.raises(UserError, match="not an http"):
        HttpRemote(url, header=None, timeout=1)


def test_switched_off_directions_fail_fast_without_requests(tmp_path: Path) -> None:
    remote = HttpRemote(f"http://127.0.0.1:{free_port()}", header=None, timeout=1, read_only=True)
    with pytest.raises(RemoteError) as caught:
        remote.put_bytes(Area.AC, KEY1, b"{}")
    assert caught.value.failure is RemoteFailure.UPLOAD_REFUSED and remote.requests == 0
    with pytest.raises(RemoteError):
        remote.get_bytes(Area.AC, KEY1)
    assert not remote.reads and remote.requests == 1
    with pytest.raises(RemoteError):
        remote.contains(Area.CAS, KEY2)
    assert remote.requests == 1
