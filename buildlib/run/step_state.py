"""Each step's last success for one mode and target: what the caching gate compares with.

Two layers, so that a no-op build reads one file and writes none:

- the index (`index.marshal`): step -> (fingerprint digest, {output path: sha256}), all
  a build needs to say a step is up to date. Read once per build; written once, at
  the end, and only when a step's record changed.
- one detail file per step (`<step>.json`): the fingerprint's components (for
  `--explain`: what changed since) and the step's log (replayed when its log file
  is gone). Written when the step runs or is restored, read only when the step must
  run (to explain why) or its log must be replayed.

The index says which steps are up to date, so it is signed with this user's key
(core/localkey.py): a `.buildlib/` shipped with a repository cannot declare shipped
outputs up to date. Without a key it has a plain checksum.

A build killed before the index is written loses the records of the steps it ran:
they run again (or come from the cache) next time, which is never wrong. A record
that names outputs the workspace no longer has is never taken as up to date (the
gate checks the outputs). Called from job threads: thread-safe.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

from buildlib.core import marshalfile
from buildlib.core.atomicfile import write_text_atomic
from buildlib.core.localkey import user_key

_MAGIC = b"buildlib-step-state-1\n"
INDEX = "index.marshal"
LOG_LIMIT = 200_000  # characters of a step's log kept for replay

Record = tuple[str, dict[str, str]]  # (fingerprint digest, {output: sha256})


class StepState:
    """The records under `directory` (`.buildlib/state/<mode>-<target>/`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._index: dict[str, Record] | None = None
        self._dirty = False

    def get(self, step: str) -> Record | None:
        """The step's last success: (digest, outputs), or None."""
        with self._lock:
            return self._load().get(step)

    def details(self, step: str) -> dict[str, object]:
        """The detail file: {"components": {...}, "log": "..."}; empty when unreadable."""
        try:
            data = json.loads((self.directory / f"{step}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def components(self, step: str, digest: str) -> dict[str, str] | None:
        """The fingerprint components the step's record holds, when that record is of
        `digest`; None otherwise (another fingerprint, or no readable record)."""
        details = self.details(step)
        found = details.get("components")
        if details.get("digest") != digest or not isinstance(found, dict):
            return None
        return {str(k): str(v) for k, v in found.items()}

    def record(
        self,
        step: str,
        digest: str,
        outputs: Mapping[str, str],
        components: Mapping[str, str],
        log: str,
    ) -> None:
        """A success: the detail file now, the index entry at `save`."""
        write_text_atomic(
            self.directory / f"{step}.json",
            json.dumps({"digest": digest, "components": dict(components), "log": log[-LOG_LIMIT:]}),
        )
        with self._lock:
            self._load()[step] = (digest, dict(outputs))
            self._dirty = True

    def erase(self, step: str) -> None:
        """A failure, or a result that must not count: the step is not up to date."""
        with self._lock:
            if self._load().pop(step, None) is not None:
                self._dirty = True
        (self.directory / f"{step}.json").unlink(missing_ok=True)

    def save(self) -> None:
        """Write the index if a record changed (once per build)."""
        with self._lock:
            if self._index is None or not self._dirty:
                return
            marshalfile.write(self.directory / INDEX, _MAGIC, self._index, key=user_key())
            self._dirty = False

    def _load(self) -> dict[str, Record]:
        if self._index is None:
            loaded = marshalfile.read(self.directory / INDEX, _MAGIC, key=user_key())
            self._index = (
                {name: (entry[0], entry[1]) for name, entry in loaded.items() if _valid(entry)}
                if isinstance(loaded, dict)
                else {}
            )
        return self._index


def _valid(entry: object) -> bool:
    return (
        isinstance(entry, tuple)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], dict)
    )
