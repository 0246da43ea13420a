"""Files of plain Python data that a torn or damaged write, or a stranger, can never
feed back.

`write` stores a header, a blake2b checksum of the payload and the `marshal`ed payload
in one atomic write; `read` returns the value only when the header is the caller's and
the checksum holds, else None (parse or compute again). marshal is the fastest way to
load plain data back (the stat cache, the parsed and validated manifest, plans), but it
is only safe on bytes this module wrote, so the checksum is checked first.

`authenticated=True` is for files whose content decides what runs (the manifest as
validated, plans): the checksum is then a MAC keyed with this user's secret
(core/localkey.py), so a `.buildlib/` shipped inside a repository or an archive is never
believed. A plain checksum anyone can compute, and a shipped manifest cache could make a
build run commands its build.toml does not show.
"""

from __future__ import annotations

import marshal
from pathlib import Path
from typing import Any

try:  # hashlib.blake2b itself, without importing hashlib's OpenSSL module (~4 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

from buildlib.core.atomicfile import write_bytes_atomic
from buildlib.core.localkey import user_key

_CHECK_SIZE = 16


def read(path: Path, header: bytes, *, authenticated: bool = False) -> object | None:
    """The value stored at `path` under `header`; None if missing, foreign or damaged.
    `authenticated`: None too when this user has no key (core/localkey.py), for what
    decides what runs (the manifest, plans) rather than only how fast (the stat cache)."""
    key = user_key() if authenticated else b""
    if authenticated and not key:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(header) + _CHECK_SIZE
    if not data.startswith(header) or len(data) < head:
        return None
    payload = memoryview(data)[head:]
    if _mac(payload, key) != data[len(header) : head]:
        return None
    try:
        value: object = marshal.loads(payload)  # noqa: S302 - checksummed, written by `write`
    except (ValueError, EOFError, TypeError):
        return None
    return value


def write(path: Path, header: bytes, value: Any, *, authenticated: bool = False) -> None:
    """Store `value` atomically. Raises ValueError for what marshal cannot store (dates,
    objects) and OSError when the disk refuses. `authenticated`: nothing is written
    when this user has no key (`read` would refuse it)."""
    key = user_key() if authenticated else b""
    if authenticated and not key:
        return
    payload = marshal.dumps(value)
    write_bytes_atomic(path, header + _mac(payload, key) + payload)


def _mac(payload: bytes | memoryview, key: bytes) -> bytes:
    return blake2b(payload, digest_size=_CHECK_SIZE, key=key).digest()
