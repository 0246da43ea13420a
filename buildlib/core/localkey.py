"""A secret of this user's, so files the engine leaves in a workspace can be trusted.

`.buildlib/` holds what the engine remembered (the validated manifest, plans, the
steps' index) to skip work at the next start. A repository or an archive can
ship a `.buildlib/` too, and a file that says "this manifest was validated" or "this
step is up to date" must not be believed because it is there: `marshalfile` signs those
files with this key (keyed blake2b) and refuses what it did not sign. The key is 32
random bytes in the user's state directory, made on first use, owned by the user and
readable by the user alone; a key file that is not (another owner, open to others, a
symlink) is not used.

Where no key can be read or made (no home directory, a read-only one), `user_key` is
empty: the manifest and plans are then not remembered at all, and the steps' index
falls back to a plain checksum (without it every build would run every step).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from buildlib.core.atomicfile import read_own

try:  # hashlib's blake2b itself, without importing its OpenSSL module (~4 ms)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

KEY_SIZE = 32
MAC_SIZE = 16
_NAME = "workspace-files.key"
_LINUX = sys.platform.startswith("linux")


def state_directory(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The user's state directory for buildlib; None when there is none. On Linux, the
    XDG Base Directory rule ($XDG_STATE_HOME when it is an absolute path, else
    ~/.local/state), which is what platformdirs answers there: importing platformdirs
    costs ~12 ms, and every build's start reads the key. Other systems ask platformdirs."""
    if _LINUX:
        base = Path(environ.get("XDG_STATE_HOME", ""))
        if not base.is_absolute():  # unset, empty or relative: the rule says ignore it
            try:
                base = Path.home() / ".local" / "state"
            except RuntimeError:  # no HOME and no passwd entry
                return None
        directory = base / "buildlib"
    else:
        import platformdirs

        directory = Path(platformdirs.user_state_dir("buildlib"))
    return directory if directory.is_absolute() else None  # a relative HOME: not a place


@functools.cache
def user_key() -> bytes:
    """This user's key, made the first time; b"" when it can be neither read nor made."""
    directory = state_directory()
    if directory is None:
        return b""
    path = directory / _NAME
    key = _read(path)
    if key is None:
        _make(path)
        key = _read(path)
    return key or b""


def mac(data: bytes | memoryview, key: bytes) -> bytes:
    """The MAC of `data` under `key` (keyed blake2b; with b"", a plain checksum)."""
    return blake2b(data, digest_size=MAC_SIZE, key=key).digest()


def _read(path: Path) -> bytes | None:
    """The key at `path` if it is a regular file of KEY_SIZE bytes that this user owns and
    no one else can read or write; None if there is no file; b"" if it is unusable."""
    key = read_own(path, KEY_SIZE)  # a regular file, not through a symlink
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return b""
    private = os.name != "posix" or (info.st_mode & 0o077 == 0 and info.st_uid == os.geteuid())
    return key if key is not None and private and len(key) == KEY_SIZE else b""


def _make(path: Path) -> None:
    """Write a new key under a temporary name, then link it to `path`: a reader sees no
    key or a whole one, and of two racing makers the first link wins (the other's is
    dropped, and both read the winner's)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")  # no one else's
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(os.urandom(KEY_SIZE))
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink(missing_ok=True)
    except OSError:
        return
