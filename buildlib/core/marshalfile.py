"""Files of plain Python data that a torn or damaged write can never feed back.

`write` stores a header, a blake2b checksum of the payload and the `marshal`ed
payload in one atomic write; `read` returns the value only when the header is the
caller's and the checksum holds, else None (parse or compute again). marshal is the
fastest way to load plain data back (the stat cache, the parsed manifest), but it is
only safe on bytes this module wrote, so the checksum is checked first.
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

_CHECK_SIZE = 16


def read(path: Path, header: bytes) -> object | None:
    """The value stored at `path` under `header`; None if missing, foreign or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(header) + _CHECK_SIZE
    if not data.startswith(header) or len(data) < head:
        return None
    payload = memoryview(data)[head:]
    if blake2b(payload, digest_size=_CHECK_SIZE).digest() != data[len(header) : head]:
        return None
    try:
        value: object = marshal.loads(payload)  # noqa: S302 - checksummed, written by `write`
    except (ValueError, EOFError, TypeError):
        return None
    return value


def write(path: Path, header: bytes, value: Any) -> None:
    """Store `value` atomically. Raises ValueError for what marshal cannot store (dates,
    objects) and OSError when the disk refuses."""
    payload = marshal.dumps(value)
    check = blake2b(payload, digest_size=_CHECK_SIZE).digest()
    write_bytes_atomic(path, header + check + payload)
