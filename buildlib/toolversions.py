"""The versions of the tools steps name in `tools`, as part of their fingerprints.

`detect_tool_versions` runs each tool's version command from the manifest's `[tools]`
(`node --version`, `rustc -vV`) at most once per build, all in parallel. Results are
cached by the executable, so an unchanged toolchain costs a stat rather than a process
(`npm --version` takes ~200 ms). The executable is found with `shutil.which` and then
`os.path.realpath`. The cache key is that path plus the command's arguments; an entry
is valid while the file's (size, mtime_ns, ctime_ns, inode) stays the same. Package
managers replace binaries by rename, which changes the inode and ctime even when they
keep the packaged mtime.

What the cache cannot see, so it always runs the command instead:
- multi-call binaries reached by a link with another name: rustup's `cargo` and
  `rustc` proxies, busybox, volta and mise shims. The binary stays the same when the
  selected toolchain changes (`rustup default`, `rust-toolchain.toml`);
- hard-linked binaries (rustup can install its proxies as hard links);
- per-directory version manager shims in a `shims` directory (pyenv, rbenv, asdf,
  nodenv). They pick a version from `.python-version` and similar files.

An npm-style script shim (`/usr/bin/npm` -> `.../npm/bin/npm-cli.js`) resolves to its
JS entry point. That file is replaced when npm is reinstalled, which is good enough.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from buildlib.atomicfile import write_text_atomic
from buildlib.errors import UserError

DEFAULT_TIMEOUT = 20.0  # seconds; a version command that hangs is a broken tool
_CACHE_VERSION = 1
_POSIX = os.name == "posix"

_Stamp = tuple[int, int, int, int]  # (size, mtime_ns, ctime_ns, inode) of the real executable


class ToolError(UserError):
    """A tool named in a step's `tools` is missing or its version command fails."""


@dataclass(frozen=True, kw_only=True)
class _Resolved:
    name: str
    argv: tuple[str, ...]  # argv[0] replaced by the path `which` found
    key: str  # cache key: the real executable and the arguments
    stamp: _Stamp | None  # (size, mtime_ns, ctime_ns, inode); None: never cache


def detect_tool_versions(commands: Mapping[str, Sequence[str]], names: Iterable[str],
                         cache_path: Path, *, cwd: Path | None = None,
                         timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
    """Version text (stripped stdout, else stderr) of each tool in `names`.

    Raises ToolError naming the tool if it is not declared, not on PATH, fails or
    times out. Called once per build by the caching gate; the cache file is written
    atomically and a corrupt one is ignored.
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    resolved = [_resolve(name, commands) for name in wanted]
    cache = _read_cache(cache_path)
    versions: dict[str, str] = {}
    to_run: list[_Resolved] = []
    for tool in resolved:
        hit = cache.get(tool.key)
        if tool.stamp is not None and hit is not None and hit[0] == tool.stamp:
            versions[tool.name] = hit[1]
        else:
            to_run.append(tool)
    if to_run:
        with ThreadPoolExecutor(max_workers=len(to_run),
                                thread_name_prefix="toolversion") as pool:
            outputs = list(pool.map(lambda t: _run(t, cwd, timeout), to_run))
        for tool, version in zip(to_run, outputs, strict=True):
            versions[tool.name] = version
            if tool.stamp is not None:
                cache[tool.key] = (tool.stamp, version)
        if any(tool.stamp is not None for tool in to_run):
            _write_cache(cache_path, cache)
    return {name: versions[name] for name in wanted}


def _resolve(name: str, commands: Mapping[str, Sequence[str]]) -> _Resolved:
    argv = tuple(commands.get(name, ()))
    if not argv:
        raise ToolError(f"tool '{name}' is listed in a step's `tools` but has no version "
                        "command in [tools]",
                        fix=f'add {name} = ["{name}", "--version"] under [tools] in the manifest')
    found = shutil.which(argv[0])
    if found is None:
        raise ToolError(f"tool '{name}' (listed in a step's `tools`) was not found: "
                        f"'{argv[0]}' is not on PATH",
                        fix=f"install {name} and make sure its directory is on PATH, or "
                        f"remove '{name}' from the step's `tools`")
    real = os.path.realpath(found)
    try:
        st = Path(real).stat()
    except OSError:
        stamp = None
    else:
        stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if not _identity_is_version(found, real, st.st_nlink):
            stamp = None
    return _Resolved(name=name, argv=(found, *argv[1:]), key=json.dumps([real, *argv[1:]]),
                     stamp=stamp)


def _identity_is_version(found: str, real: str, nlink: int) -> bool:
    """Whether the executable file alone decides what the version command prints."""
    if Path(found).parent.name == "shims" or nlink > 1:
        return False
    called, actual = Path(found).name, Path(real).name
    if called.startswith(actual) or actual.startswith(called):  # node, python3 -> python3.11
        return True
    return _is_script(real)  # npm -> npm-cli.js: a script is its own version; rustup is not


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:  # noqa: PTH123
            return f.read(2) == b"#!"
    except OSError:
        return False


def _run(tool: _Resolved, cwd: Path | None, timeout: float) -> str:
    """Run the version command in a session of its own. A timeout then kills every
    process holding the output pipes, not just the one started here."""
    shown = " ".join(tool.argv)
    try:
        proc = subprocess.Popen(tool.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, start_new_session=_POSIX)
    except OSError as exc:
        raise ToolError(f"tool '{tool.name}': cannot run `{shown}`: {exc.strerror}",
                        fix="check that the file is executable") from exc
    stdout: bytes
    stderr: bytes
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        if _POSIX:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()
        raise ToolError(f"tool '{tool.name}': version command `{shown}` did not finish "
                        f"within {timeout:g} s",
                        fix="check that the tool works from a shell, or fix its [tools] "
                        "entry in the manifest") from exc
    out = stdout.decode("utf-8", "replace").strip()
    err = stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        tail = err.splitlines()[-1] if err else ""
        raise ToolError(f"tool '{tool.name}': version command `{shown}` exited with "
                        f"{proc.returncode}" + (f": {tail}" if tail else ""),
                        fix="check that the tool works from a shell, or fix its [tools] "
                        "entry in the manifest")
    return out or err


def _read_cache(path: Path) -> dict[str, tuple[_Stamp, str]]:
    """Cache key -> (stamp, version); anything unreadable or malformed is dropped."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    cache: dict[str, tuple[_Stamp, str]] = {}
    for key, value in entries.items():
        match value:
            case {"stamp": [int(a), int(b), int(c), int(d)], "version": str(version)}:
                cache[key] = ((a, b, c, d), version)
            case _:
                pass
    return cache


def _write_cache(path: Path, entries: Mapping[str, tuple[_Stamp, str]]) -> None:
    body = {key: {"stamp": list(stamp), "version": version}
            for key, (stamp, version) in entries.items()}
    write_text_atomic(path, json.dumps({"version": _CACHE_VERSION, "entries": body},
                                       indent=1, sort_keys=True))
