"""The journal: which steps of a mode and target finished, and how, build after build.

An append-only JSON-lines file per mode and target. Each line is written with one
`write` on an O_APPEND descriptor, so a build killed at any moment leaves at most
one torn last line, which readers skip. `--resume` reads the last build's entries.

`--resume` and `--only` (with `--no-cache`) take the steps the journal says succeeded
at its word, so each line carries a MAC keyed by this user's key (core/localkey.py)
over the journal's path and the line: a journal shipped inside a repository, a line
someone else wrote, or one replayed from another workspace's journal is skipped like a
torn one. It is read only as a regular file, never through a symlink at its place.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from buildlib.core.atomicfile import open_own, read_own, read_own_at, write_text_atomic
from buildlib.core.localkey import mac, user_key
from buildlib.core.records import record

# One encoder for every line: json.dumps with `separators` builds a new one per call,
# half of a line's cost on a build of trivial steps.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
# Past COMPACT_ABOVE bytes, plus _ROOM_PER_STEP for each step the build selects, the
# lines that answer nothing any more are dropped (`_compact`), once the journal has also
# doubled since it was last compacted: a compacted journal of 10,000 steps is itself
# over 1 MiB, and a build of one step must not rewrite it, only append to it. Its first
# line says how large it was (`_COMPACTED`), so rewrites cost O(1) a line written.
COMPACT_ABOVE = 1 << 20
_ROOM_PER_STEP = 1024
READ_LIMIT = 64 << 20  # a journal larger than this was not written here
_COMPACTED = "compacted"  # the event of a compacted journal's first line


@record
class LastBuild:
    build_id: str
    selected: tuple[str, ...]
    status: dict[str, str]  # step -> "succeeded" | "failed" | "interrupted" | ...

    @property
    def unfinished(self) -> set[str]:
        """Steps of that build that did not succeed: failed, interrupted or never started."""
        return {s for s in self.selected if self.status.get(s) != "succeeded"}


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def open(self, build_id: str, selected: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            limit = COMPACT_ABOVE + _ROOM_PER_STEP * len(selected)
            size = os.lstat(self.path).st_size
            if size > READ_LIMIT // 2 or (size > limit and size > 2 * self._compacted_size()):
                self._compact()
        self._fd = open_own(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._build_id = build_id
        self._append({"build": build_id, "event": "start", "steps": selected})

    def record(self, step: str, status: str) -> None:
        self._append({"build": self._build_id, "step": step, "status": status})

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, entry: dict[str, object]) -> None:
        if self._fd is None:
            return
        # Start on a fresh line in case a killed build left a torn one behind.
        line = _ENCODE(entry)
        os.write(self._fd, b"\n" + self._signed(line) + b"\n")

    def _compact(self) -> None:
        """Rewrite the journal with only what it answers (last_build, last_success):
        the last build's start and each step's line of it, and every step's latest line
        from elsewhere, a success before the last build's lines, any status after them
        when it is newer than the last build's own line for that step (a build whose
        start line was torn). Other lines change neither answer."""
        entries = self._entries()
        last = _last_build(entries)
        starts = [i for i, e in enumerate(entries) if e.get("event") == "start"]
        begin = starts[-1] if last is not None else len(entries)  # a last build has a start
        own = last.build_id if last is not None else None
        latest: dict[str, int] = {}  # step -> index of its latest line, in that order
        for i, entry in enumerate(entries):
            if "step" in entry:
                latest.pop(str(entry["step"]), None)
                latest[str(entry["step"])] = i
        others = [  # latest lines that are not the last build's own
            {"build": entries[i]["build"], "step": step, "status": entries[i].get("status")}
            for step, i in latest.items()
            if i < begin or entries[i]["build"] != own
        ]
        touched = last.status if last is not None else {}
        kept = [e for e in others if e["step"] not in touched and e["status"] == "succeeded"]
        if last is not None:
            kept.append({"build": own, "event": "start", "steps": list(last.selected)})
            kept += [{"build": own, "step": step, "status": st} for step, st in touched.items()]
            kept += [e for e in others if e["step"] in touched]
        if not kept:
            self.path.unlink(missing_ok=True)
            return
        text = "".join(self._signed(_ENCODE(entry)).decode() + "\n" for entry in kept)
        # ASCII (the encoder escapes the rest), so its length in characters is in bytes.
        marker = self._signed(_ENCODE({"build": "", "event": _COMPACTED, "bytes": len(text)}))
        write_text_atomic(self.path, marker.decode() + "\n" + text)

    def _compacted_size(self) -> int:
        """How large the journal was when last compacted (its first line), else 0."""
        head = read_own_at(self.path, 512, 0)
        data, _, tag = head.partition(b"\n")[0].decode("utf-8", "replace").rpartition(" ")
        if not data or self._mac(data) != tag:
            return 0
        try:
            entry = json.loads(data)
        except ValueError:
            return 0
        if not isinstance(entry, dict) or entry.get("event") != _COMPACTED:
            return 0
        found = entry.get("bytes")
        return found if isinstance(found, int) and found > 0 else 0

    def _signed(self, line: str) -> bytes:
        return f"{line} {self._mac(line)}".encode()

    def _mac(self, line: str) -> str:
        """Keyed with the user's key, over this journal's own path too: a line is only
        believed in the journal it was written to (not replayed from another
        workspace's, which a shipped symlink could lead to)."""
        data = f"{os.fspath(self.path)}\0{line}".encode()
        return mac(data, user_key()).hex()

    def last_success(self) -> set[str]:
        """Steps whose most recent journal entry, in any build, is a success."""
        latest: dict[str, str] = {}
        for entry in self._entries():
            if "step" in entry:
                latest[str(entry["step"])] = str(entry.get("status"))
        return {step for step, status in latest.items() if status == "succeeded"}

    def _entries(self) -> list[dict[str, object]]:
        found = read_own(self.path, READ_LIMIT)
        if found is None:
            return []
        entries = []
        for line in found.decode("utf-8", errors="replace").splitlines():
            data, _, mac = line.rpartition(" ")
            if not data or self._mac(data) != mac:
                continue  # torn, or not written by this user's engine
            try:
                entry = json.loads(data)
            except ValueError:
                continue
            if isinstance(entry, dict) and "build" in entry:
                entries.append(entry)
        return entries

    def last_build(self) -> LastBuild | None:
        """The most recent build's selection and step statuses; torn lines are skipped."""
        return _last_build(self._entries())


def _last_build(entries: list[dict[str, object]]) -> LastBuild | None:
    builds: dict[str, LastBuild] = {}
    last_id: str | None = None
    for entry in entries:
        build_id = str(entry["build"])
        if entry.get("event") == "start":
            steps = entry.get("steps", ())
            builds[build_id] = LastBuild(
                build_id=build_id,
                status={},
                selected=tuple(str(s) for s in steps) if isinstance(steps, list) else (),
            )
            last_id = build_id
        elif build_id in builds and "step" in entry:
            builds[build_id].status[str(entry["step"])] = str(entry.get("status"))
    return builds.get(last_id) if last_id else None
