"""Files of plain Python data that a torn or damaged write, or a stranger, can never
feed back.

`write` stores a header, a blake2b checksum of the payload and the `marshal`ed payload
in one atomic write; `read` returns the value only when the header is the caller's and
the checksum holds, else None (parse or compute again). marshal is the fastest way to
load plain data back (the stat cache, the manifest, plans, the steps' index), but it is
only safe on bytes this module wrote, so the checksum is checked first.

With a `key` (this user's, core/localkey.py) the checksum is a MAC: a `.buildlib/`
shipped inside a repository or an archive is never believed, its files being signed
with another key or none. Files that decide what runs are written this way (the
validated manifest, plans, the steps' index), readable by the user alone
(they may hold env values filled from the environment). `read` takes only a regular
file, never through a symlink, so a shipped `.buildlib/` cannot point it at a FIFO or a
device.
"""

from __future__ import annotations

import marshal
from pathlib import Path
from typing import Any

from buildlib.core.atomicfile import read_own, write_bytes_atomic
from buildlib.core.localkey import MAC_SIZE, mac

_CHECK_SIZE = MAC_SIZE
# A shipped sparse file of many gigabytes must not be read into memory. The largest
# file written here is the stat cache: ~30 MB for 200,000 files.
MAX_SIZE = 1 << 30


def read(path: Path, header: bytes, *, key: bytes = b"") -> object | None:
    """The value stored at `path` under `header` (and `key`); None if missing, foreign,
    damaged, signed with another key, or not a regular file."""
    data = read_own(path, MAX_SIZE)
    if data is None:
        return None
    head = len(header) + _CHECK_SIZE
    if not data.startswith(header) or len(data) < head:
        return None
    payload = memoryview(data)[head:]
    if mac(payload, key) != data[len(header) : head]:
        return None
    try:
        value: object = marshal.loads(payload)  # noqa: S302 - checksummed, written by `write`
    except (ValueError, EOFError, TypeError):
        return None
    return value


def write(path: Path, header: bytes, value: Any, *, key: bytes = b"") -> None:
    """Store `value` atomically (mode 0600 with a `key`). Raises ValueError for what
    marshal cannot store (dates, objects) and OSError when the disk refuses."""
    payload = marshal.dumps(value)
    mode = 0o600 if key else 0o644
    write_bytes_atomic(path, header + mac(payload, key) + payload, mode=mode)
