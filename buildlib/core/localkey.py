"""A secret of this user's, so files the engine leaves in a workspace can be trusted.

`.buildlib/` holds what the engine remembered (the validated manifest, plans, the stat
cache, the steps' index) to skip work at the next start. A repository or an archive can
ship a `.buildlib/` too, and a file that says "this manifest was validated" must not be
believed because it is there: `marshalfile` signs what it writes with this key (keyed
blake2b) and refuses what it did not sign. The key is 32 random bytes in the user's
state directory, made on first use, readable by the user alone.

Where no key can be read or made (no home directory, a read-only one), `user_key` is
empty and the files are checksummed only, as they were before keys: remembering still
works, it is just not authenticated.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path

KEY_SIZE = 32
_NAME = "workspace-files.key"
_LINUX = sys.platform.startswith("linux")


def state_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's state directory for buildlib. On Linux, the XDG Base Directory rule
    ($XDG_STATE_HOME when it is an absolute path, else ~/.local/state), which is what
    platformdirs answers there: importing platformdirs costs ~12 ms, and every build's
    start reads the key. Other systems ask platformdirs."""
    if _LINUX:
        base = Path(environ.get("XDG_STATE_HOME", ""))
        if not base.is_absolute():  # unset, empty or relative: the rule says ignore it
            base = Path.home() / ".local" / "state"
        return base / "buildlib"
    import platformdirs

    return Path(platformdirs.user_state_dir("buildlib"))


@functools.cache
def user_key() -> bytes:
    """This user's key, made the first time; b"" when it can be neither read nor made."""
    path = state_directory() / _NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = _make(path)
    except OSError:
        return b""
    return key if len(key) == KEY_SIZE else b""


def _make(path: Path) -> bytes:
    """Create the key file, or read the one another process created first."""
    key = os.urandom(KEY_SIZE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except FileExistsError:
        try:
            return path.read_bytes()
        except OSError:
            return b""
    except OSError:
        return b""
    # Written under a name only this process holds open; a reader racing this write sees
    # a short file and gets b"" for this one run (len != KEY_SIZE), never a wrong key.
    with os.fdopen(fd, "wb") as stream:
        stream.write(key)
    return key
