"""The build history: one compact JSON line per finished build, appended, never rewritten.

`append` writes the whole line with a single `os.write` on an `O_APPEND` descriptor,
so concurrent writers never interleave inside a line and a build killed mid-write
leaves at most one torn last line. It does not fsync: the history only feeds estimates
and metrics, and a crash of the machine can lose the last few builds' lines (or, during
a trim, the file), which readers skip as they skip a torn line (an fsync cost every
build, no-ops included, 5-10 ms here). `read_history` skips (and
counts) any line it cannot decode, and `append` starts a new line after a torn
one, so the file never becomes unreadable. Called by `report.write_build_reports`
(append), the planner's caller (`estimates`) and `metrics`.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from buildlib.core.atomicfile import open_own, read_own, read_own_at
from buildlib.core.records import record
from buildlib.run.results import BuildRecord, Outcome

MAX_BYTES = 8 << 20  # past this, `trim` keeps the newest half (whole lines)
HISTORY_VERSION = 1
RECENT_SAMPLES = 10  # how many of a step's latest BUILT durations `estimates` takes the median of

_T = TypeVar("_T")


@record
class HistoryStep:
    name: str
    outcome: Outcome
    duration: float


@record
class HistoryEntry:
    """One build as the history remembers it; `steps` in the build's (topological) order."""

    build_id: str
    started_at: str
    mode: str
    target: str
    wall: float
    exit_code: int
    steps: tuple[HistoryStep, ...]


@record
class History:
    """Every readable entry, oldest first, and how many lines were skipped as unreadable."""

    entries: tuple[HistoryEntry, ...]
    skipped: int = 0

    def matching(
        self, *, mode: str | None = None, target: str | None = None
    ) -> tuple[HistoryEntry, ...]:
        """The entries of one mode and/or target (None matches any), oldest first."""
        return tuple(
            e
            for e in self.entries
            if (mode is None or e.mode == mode) and (target is None or e.target == target)
        )


def entry_from_record(record: BuildRecord) -> HistoryEntry:
    """The build as the history keeps it: every step but those that were up to date (their
    time says nothing of the step, and a no-op of 10,000 steps would write ~400 KB)."""
    return HistoryEntry(
        build_id=record.build_id,
        started_at=record.started_at,
        mode=record.mode,
        target=record.target,
        wall=record.wall,
        exit_code=record.exit_code,
        steps=tuple(
            HistoryStep(name=s.name, outcome=s.outcome, duration=s.duration)
            for s in record.steps
            if s.outcome is not Outcome.CACHED
        ),
    )


def encode_entry(entry: HistoryEntry) -> bytes:
    """The entry as one compact JSON line, newline included."""
    obj = {
        "v": HISTORY_VERSION,
        "id": entry.build_id,
        "at": entry.started_at,
        "mode": entry.mode,
        "target": entry.target,
        "wall": round(entry.wall, 6),
        "exit": entry.exit_code,
        "steps": [[s.name, s.outcome.value, round(s.duration, 6)] for s in entry.steps],
    }
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode() + b"\n"


def append(path: Path, entry: HistoryEntry) -> None:
    """Append `entry`: one write of the whole line.

    If the file ends in a torn line (an earlier writer was killed), the new line
    starts with a newline so it stays readable on its own. Raises OSError when the
    disk takes only part of the line; readers then skip that partial line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_entry(entry)
    fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # not through a symlink
    try:
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            data = b"\n" + data
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"short write to {path}: {written} of {len(data)} bytes")
    finally:
        os.close(fd)


def trim(path: Path, *, max_bytes: int = MAX_BYTES) -> bool:
    """Keep the history bounded: past `max_bytes`, rewrite it (atomically) with the newest
    lines that fit in half of it. True if it was trimmed.

    Called after each append, under the workspace lock that every build holds, so no
    other build appends meanwhile. Half, not all, of the limit so that a trim happens
    once in many builds: ~200 builds of 500 steps, ~8,000 of 10 steps stay, far more
    than estimates (10 builds) and metrics (20 runs a step) read.
    """
    try:
        size = os.lstat(path).st_size
    except FileNotFoundError:
        return False
    if size <= max_bytes:
        return False
    data = _read(path)
    cut = data.find(b"\n", len(data) - max_bytes // 2)
    kept = data[cut + 1 :] if cut >= 0 else b""
    from buildlib.core.atomicfile import write_bytes_atomic

    write_bytes_atomic(path, kept)
    return True


def _last_byte(path: Path, size: int) -> bytes:
    # A separate read-only descriptor: an O_APPEND descriptor opened write-only cannot pread.
    return read_own_at(path, 1, size - 1)


def read_history(path: Path) -> History:
    """Every decodable line of `path`, oldest first; a missing file is an empty history."""
    return parse_lines(_read(path).split(b"\n"))


def _read(path: Path) -> bytes:
    """The history's bytes; empty when it is missing, or is not a regular file at its
    place (a FIFO or a symlink a repository shipped), or is far larger than `trim`
    keeps it."""
    return read_own(path, 4 * MAX_BYTES) or b""


def parse_lines(lines: Iterable[bytes]) -> History:
    entries: list[HistoryEntry] = []
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        entry = decode_line(line)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return History(entries=tuple(entries), skipped=skipped)


def decode_line(line: bytes) -> HistoryEntry | None:
    """The entry a line holds, or None for a torn, corrupt or other-version line."""
    try:
        obj = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return None
    if not isinstance(obj, dict) or obj.get("v") != HISTORY_VERSION:
        return None
    try:
        steps = tuple(_decode_step(s) for s in obj["steps"])
        entry = HistoryEntry(
            build_id=_typed(obj["id"], str),
            started_at=_typed(obj["at"], str),
            mode=_typed(obj["mode"], str),
            target=_typed(obj["target"], str),
            wall=_number(obj["wall"]),
            exit_code=_typed(obj["exit"], int),
            steps=steps,
        )
    except (KeyError, TypeError, ValueError):
        return None
    return entry


def _decode_step(raw: object) -> HistoryStep:
    if not isinstance(raw, list) or len(raw) != 3:
        raise TypeError("a step is [name, outcome, duration]")
    name, outcome, duration = raw
    return HistoryStep(name=_typed(name, str), outcome=Outcome(outcome), duration=_number(duration))


def _typed(value: object, kind: type[_T]) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def estimates(history: History | Path, mode: str | None, target: str | None) -> dict[str, float]:
    """Expected seconds per step: the median of its latest BUILT durations for mode and target.

    Only BUILT outcomes count (a cache hit says nothing about how long building
    takes); up to `RECENT_SAMPLES` per step, newest first. The executor uses these
    for critical-path priorities and the ETA; a step never built has no entry.
    """
    if isinstance(history, Path):
        history = read_history(history)
    samples: dict[str, list[float]] = {}
    for entry in reversed(history.matching(mode=mode, target=target)):
        _add_to_windows(
            samples, [(s.name, s.duration) for s in entry.steps if s.outcome is Outcome.BUILT]
        )
    return _medians(samples)


def planning_estimates(
    path: Path, mode: str, target: str, steps: Iterable[str] | None = None
) -> dict[str, float]:
    """The estimates a plan starts from: `estimates` for this mode over the other modes'.

    A mode's first build borrows the other modes' timings: a release compile is slower
    than a debug one, but which steps are long is what priorities need. Every build
    starts here, so this is one pass over the raw lines, newest first, building no
    records (a 500-step history line decoded into records costs ~1.5 ms), and it stops
    once each of `steps` (if given) has a full window of this mode's timings. Lines
    that `decode_line` would reject are skipped the same way.
    """
    this_mode: dict[str, list[float]] = {}
    any_mode: dict[str, list[float]] = {}
    wanted = set(steps) if steps is not None else None
    for entry_mode, built in _built_steps_newest_first(path, target):
        if wanted is not None and all(len(this_mode.get(n, ())) >= RECENT_SAMPLES for n in wanted):
            break
        _add_to_windows(any_mode, built)
        if entry_mode == mode:
            _add_to_windows(this_mode, built)
    return {**_medians(any_mode), **_medians(this_mode)}


def _add_to_windows(windows: dict[str, list[float]], built: list[tuple[str, float]]) -> None:
    """One build's BUILT (name, duration) pairs, older than those already in `windows`."""
    for name, duration in built:
        recent = windows.setdefault(name, [])
        if len(recent) < RECENT_SAMPLES:
            recent.append(duration)


def _medians(windows: dict[str, list[float]]) -> dict[str, float]:
    return {name: _median(values) for name, values in windows.items()}


_OUTCOME_VALUES = frozenset(o.value for o in Outcome)


def _built_steps_newest_first(
    path: Path, target: str
) -> Iterable[tuple[str, list[tuple[str, float]]]]:
    """(mode, [(step, duration) of its BUILT steps]) per valid line of `target`."""
    data = _read(path)
    end = len(data)
    while end > 0:  # lines newest first, without splitting the whole file (it reads ~10)
        start = data.rfind(b"\n", 0, end) + 1
        line = data[start:end]
        end = start - 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if (
            not isinstance(obj, dict)
            or obj.get("v") != HISTORY_VERSION
            or obj.get("target") != target
            or not isinstance(obj.get("mode"), str)
        ):
            continue
        steps = obj.get("steps")
        built = _built(steps) if isinstance(steps, list) else None
        if built is not None:
            yield obj["mode"], built


def _built(steps: list[object]) -> list[tuple[str, float]] | None:
    """The BUILT (name, duration) pairs, or None if any step is malformed."""
    built: list[tuple[str, float]] = []
    append, known, built_value = built.append, _OUTCOME_VALUES, Outcome.BUILT.value
    for raw in steps:
        # type() rather than isinstance: JSON gives exact types, and this loop runs for
        # every step of every recent build (bool is not a number here, as in decode_line).
        if type(raw) is not list or len(raw) != 3:
            return None
        name, outcome, duration = raw
        if (
            type(name) is not str
            or outcome not in known
            or (type(duration) is not float and type(duration) is not int)
        ):
            return None
        if outcome == built_value:
            append((name, float(duration)))
    return built


def _median(values: list[float]) -> float:
    """statistics.median, without importing statistics (fractions, decimal) at start-up."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
