"""The floor under any CPython orchestrator: a graph's steps run with no bookkeeping at all.

`python benchmarks/spawn_floor.py GRAPH.json JOBS LOG_DIR` runs the steps of GRAPH.json
(`{"names": [...], "deps": {name: [...]}, "commands": {name: [argv...]}}`) with JOBS
threads, each step as buildlib runs one (`os.posix_spawn` in a new process group, stdin
from /dev/null, stdout and stderr to a log file of its own) and in dependency order,
but with nothing else: no manifest, plan, fingerprint, journal, report, watchdog or
terminal output. `overhead` times it beside buildlib and make, so the distance between
buildlib and make splits into what the interpreter costs and what the engine adds.
Exits 1 if a step fails.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path


def run(graph: dict[str, object], jobs: int, log_dir: Path) -> int:
    names: list[str] = list(graph["names"])  # type: ignore[call-overload]
    deps: dict[str, list[str]] = graph["deps"]  # type: ignore[assignment]
    commands: dict[str, list[str]] = graph["commands"]  # type: ignore[assignment]
    waiting = {name: len(deps[name]) for name in names}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in deps[name]:
            dependents[dep].append(name)
    ready = [name for name in names if waiting[name] == 0]
    ready.reverse()  # pop() takes them in declaration order
    left = len(names)
    failed = False
    lock = threading.Condition()
    env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    stdin = os.open(os.devnull, os.O_RDONLY)
    log_dir.mkdir(parents=True, exist_ok=True)

    def lane() -> None:
        nonlocal left, failed
        while True:
            with lock:
                while not ready and left and not failed:
                    lock.wait()
                if not left or failed:
                    return
                name = ready.pop()
            argv = commands[name]
            log = os.open(log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                setpgroup=0,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, log, 1),
                    (os.POSIX_SPAWN_DUP2, log, 2),
                ],
            )
            _, status = os.waitpid(pid, 0)
            os.close(log)
            with lock:
                left -= 1
                if os.waitstatus_to_exitcode(status) != 0:
                    failed = True
                for dependent in dependents[name]:
                    waiting[dependent] -= 1
                    if waiting[dependent] == 0:
                        ready.append(dependent)
                lock.notify_all()

    lanes = [threading.Thread(target=lane) for _ in range(jobs)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    graph_path, jobs, log_dir = argv[1], int(argv[2]), Path(argv[3])
    graph = json.loads(Path(graph_path).read_text(encoding="utf-8"))
    return run(graph, jobs, log_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
