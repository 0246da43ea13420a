"""The watchdog: kills the steps' process groups when the build that started them dies.

`process.ProcessTable` starts this file as a program of its own (`python -I -S`, so it
starts in ~7 ms and imports nothing of buildlib) with a pipe on its stdin, and writes
`+PGID` when a step starts and `-PGID` when it ends. When the pipe closes (the build
exited, even by SIGKILL) it terminates every group it still holds: SIGTERM, then
SIGKILL after the grace period. It reads the pipe only every `interval` seconds: waking
on every line would cost a context switch per message on a busy machine (two per
step), and a line written before the build died is still read after. It ignores
SIGINT/SIGTERM aimed at the terminal's group so that it outlives the build long enough
to clean up; a normal end of the build kills it with SIGKILL.

Usage: python -I -S _watchdog.py GRACE INTERVAL
"""

from __future__ import annotations

import os
import signal
import sys
import time


def read_groups(fd: int, interval: float) -> set[int]:
    """The groups still registered when the pipe closes."""
    os.set_blocking(fd, False)
    live: set[int] = set()
    pending = b""
    while True:
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            time.sleep(interval)
            continue
        if not data:
            return live
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if line.startswith(b"+"):
                live.add(int(line[1:]))
            elif line.startswith(b"-"):
                live.discard(int(line[1:]))


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


def _signal(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except OSError:
        return False
    return True


def stop_groups(live: set[int], grace: float) -> None:
    """SIGTERM every group, then SIGKILL those still alive after `grace` seconds."""
    live = {pgid for pgid in live if _signal(pgid, signal.SIGTERM)}
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        live = {pgid for pgid in live if _alive(pgid)}
        time.sleep(0.05)
    for pgid in live:
        _signal(pgid, signal.SIGKILL)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grace, interval = float(argv[1]), float(argv[2])
    stop_groups(read_groups(sys.stdin.fileno(), interval), grace)


if __name__ == "__main__":
    main(sys.argv)
