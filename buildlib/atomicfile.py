"""Whole-file writes that a reader (or a killed writer) can never see half done.

Write to a temporary file in the same directory, then `os.replace` it over the
target: the rename is atomic, so the path holds the old content or the new one. The
temporary file is removed if anything fails. `durable=True` adds an fsync before the
rename, for files that must survive a power loss, not only a killed process.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = False,
                       mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        temp.chmod(mode)  # mkstemp creates 0600
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, *, durable: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)
