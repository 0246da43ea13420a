"""The versions of the tools steps name in `tools`, as part of their fingerprints.

`detect_tool_versions` runs each tool's version command from the manifest's `[tools]`
(`node --version`, `rustc -vV`) at most once per build, all in parallel. Results are
cached, so an unchanged toolchain costs a few stats rather than a process
(`npm --version` takes ~200 ms). The executable is found with `shutil.which` and then
`os.path.realpath`. The cache key is both paths plus the command's arguments; an entry
is valid while its stamp, a hash of everything the output depends on, stays the same.
For a plain executable that is the file's (size, mtime_ns, ctime_ns, inode). Package
managers replace binaries by rename, which changes the inode and ctime even when they
keep the packaged mtime.

rustup's proxies (`cargo`, `rustc`: links to the `rustup` binary, or hard links beside
it) print the version of whichever toolchain rustup selects, so their stamp adds
everything that selection reads (see `_rustup_inputs`). The stamp is taken before the
command runs: a change made meanwhile can only cost a second run, never a stale answer.

What the cache cannot see, so it always runs the command instead:
- other multi-call binaries reached by a link with another name (busybox, volta and
  mise shims), and hard-linked binaries that are not rustup proxies;
- per-directory version manager shims in a `shims` directory (pyenv, rbenv, asdf,
  nodenv). They pick a version from `.python-version` and similar files;
- a rustup proxy that may select a `path` toolchain outside RUSTUP_HOME.

An npm-style script shim (`/usr/bin/npm` -> `.../npm/bin/npm-cli.js`) resolves to its
JS entry point. That file is replaced when npm is reinstalled, which is good enough.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from buildlib.core.atomicfile import read_own, write_text_atomic
from buildlib.core.bounded import run_bounded
from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.core.smallhash import sha256_hex

DEFAULT_TIMEOUT = 20.0  # seconds; a version command that hangs is a broken tool
_CACHE_VERSION = 2  # 2: stamps are hashes and rustup proxies are cached
_CACHE_LIMIT = 16 << 20  # bytes: a tools.json larger than this was not written here
_POSIX = os.name == "posix"
_RUSTUP = frozenset({"rustup", "rustup.exe"})
_TOOLCHAIN_FILES = ("rust-toolchain", "rust-toolchain.toml")


class ToolError(UserError):
    """A tool named in a step's `tools` is missing or its version command fails."""


@record
class _Resolved:
    name: str
    argv: tuple[str, ...]  # argv[0] replaced by the path `which` found
    key: str  # cache key: the path found, the real executable and the arguments
    stamp: str | None  # sha256 of what the output depends on; None: never cache


def detect_tool_versions(
    commands: Mapping[str, Sequence[str]],
    names: Iterable[str],
    cache_path: Path,
    *,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, str]:
    """Version text (stripped stdout, else stderr) of each tool in `names`.

    The commands run in `cwd` (default: the current directory), which is also where a
    rustup proxy's toolchain files are looked for. Raises ToolError naming the tool if
    it is not declared, not on PATH, fails or times out. Called once per build by the
    caching gate; the cache file is written atomically and a corrupt one is ignored.
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    # rustup walks up from the physical directory (getcwd), not from a symlinked path.
    where = (cwd if cwd is not None else Path.cwd()).resolve()
    resolved = [_resolve(name, commands, where) for name in wanted]
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
        from concurrent.futures import ThreadPoolExecutor  # only when a tool must run

        with ThreadPoolExecutor(max_workers=len(to_run), thread_name_prefix="toolversion") as pool:
            outputs = list(pool.map(lambda t: _run(t, cwd, timeout), to_run))
        for tool, version in zip(to_run, outputs, strict=True):
            versions[tool.name] = version
            if tool.stamp is not None:
                cache[tool.key] = (tool.stamp, version)
        if any(tool.stamp is not None for tool in to_run):
            _write_cache(cache_path, cache)
    return {name: versions[name] for name in wanted}


def _resolve(name: str, commands: Mapping[str, Sequence[str]], cwd: Path) -> _Resolved:
    argv = tuple(commands.get(name, ()))
    if not argv:
        raise ToolError(
            f"tool '{name}' is listed in a step's `tools` but has no version command in [tools]",
            fix=f'add {name} = ["{name}", "--version"] under [tools] in the manifest',
        )
    found = shutil.which(argv[0])
    if found is None:
        raise ToolError(
            f"tool '{name}' (listed in a step's `tools`) was not found: '{argv[0]}' is not on PATH",
            fix=f"install {name} and make sure its directory is on PATH, or "
            f"remove '{name}' from the step's `tools`",
        )
    real = os.path.realpath(found)
    return _Resolved(
        name=name,
        argv=(found, *argv[1:]),
        key=json.dumps([found, real, *argv[1:]]),
        stamp=_stamp(found, real, cwd),
    )


def _stamp(found: str, real: str, cwd: Path) -> str | None:
    """A hash of everything the version command's output depends on, or None if that
    is more than this module can see."""
    try:
        st = Path(real).stat()
    except OSError:
        return None
    parts: list[object] = [_file_stamp(st)]
    if _is_rustup_proxy(found, real, st):
        selection = _rustup_inputs(Path(found).name, cwd)
        if selection is None:
            return None
        parts.append(selection)
    elif not _identity_is_version(found, real, st.st_nlink):
        return None
    return sha256_hex(json.dumps(parts).encode())


def _file_stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _is_rustup_proxy(found: str, real: str, st: os.stat_result) -> bool:
    """`cargo` -> `rustup` by symlink, or `cargo` hard-linked to a `rustup` beside it."""
    called, actual = Path(found).name, Path(real)
    if called in _RUSTUP:
        return False
    if actual.name in _RUSTUP:
        return True
    if st.st_nlink < 2:
        return False
    try:
        sibling = actual.with_name("rustup" + actual.suffix).stat()
    except OSError:
        return False
    return (sibling.st_dev, sibling.st_ino) == (st.st_dev, st.st_ino)


def _rustup_inputs(called: str, cwd: Path) -> list[object] | None:
    """What rustup reads to choose the toolchain that runs `called` in `cwd`.

    Its precedence (rust-lang.github.io/rustup/overrides.html): a `+toolchain` first
    argument (part of the cache key), RUSTUP_TOOLCHAIN, directory overrides in
    `settings.toml` and `rust-toolchain{,.toml}` files walking up from `cwd`, then the
    default toolchain in `settings.toml`. Every installed toolchain's copy of `called`
    is stamped too: `rustup update` replaces it, `rustup toolchain install/uninstall`
    changes the listing, and a custom toolchain without cargo falls back to another's.
    None when the choice may be a `path` toolchain outside RUSTUP_HOME.
    """
    environ = os.environ
    chosen = environ.get("RUSTUP_TOOLCHAIN", "")
    if _is_path(chosen):
        return None
    try:  # an empty RUSTUP_HOME counts as unset; a relative one is relative to cwd
        home = cwd / (environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    except RuntimeError:  # no home directory to find the default under
        return None
    settings = _read(home / "settings.toml")
    if settings is not None and _settings_name_a_path(settings):
        return None
    files = _toolchain_files(cwd)
    if files is None:
        return None
    digest = None if settings is None else sha256_hex(settings)
    return [
        chosen,
        str(home),
        environ.get("CARGO_HOME"),
        str(cwd),
        digest,
        files,
        _installed_copies(home / "toolchains", called),
    ]


def _toolchain_files(cwd: Path) -> list[list[str]] | None:
    """(path, sha256) of each `rust-toolchain{,.toml}` from `cwd` up to the root; None
    if one may name a `path` toolchain (a `path` key, or just the word in a comment)."""
    found: list[list[str]] = []
    for directory in (cwd, *cwd.parents):
        for file in (directory / name for name in _TOOLCHAIN_FILES):
            content = _read(file)
            if content is not None:
                if b"path" in content:
                    return None
                found.append([str(file), sha256_hex(content)])
    return found


def _installed_copies(toolchains: Path, called: str) -> list[object]:
    """Each installed toolchain's name and the stamp of its `bin/<called>` (None if it
    has none). Linked toolchains are followed to their directory."""
    try:
        installed = sorted(entry.name for entry in toolchains.iterdir())
    except OSError:
        installed = []
    copies: list[object] = []
    for toolchain in installed:
        try:
            copies.append(
                [toolchain, _file_stamp((toolchains / toolchain / "bin" / called).stat())]
            )
        except OSError:
            copies.append([toolchain, None])
    return copies


def _is_path(toolchain: str) -> bool:
    return "/" in toolchain or "\\" in toolchain


def _settings_name_a_path(settings: bytes) -> bool:
    """Whether the default toolchain or a directory override is a path; unreadable
    settings count as yes, since rustup's choice is then unknown."""
    if b"/" not in settings and b"\\" not in settings:
        return False  # no name can be a path; and no TOML parser is imported on a no-op
    from buildlib.core import toml

    try:
        data = toml.loads(settings.decode("utf-8"))
    except (UnicodeDecodeError, toml.TOMLDecodeError):
        return True
    overrides = data.get("overrides", {})
    names = [
        data.get("default_toolchain", ""),
        *(overrides.values() if isinstance(overrides, dict) else [None]),
    ]
    return not all(isinstance(name, str) and not _is_path(name) for name in names)


def _read(path: Path) -> bytes | None:
    """The file's bytes, or None when rustup would not read it either."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _identity_is_version(found: str, real: str, nlink: int) -> bool:
    """Whether the executable file alone decides what the version command prints."""
    if Path(found).parent.name == "shims" or nlink > 1:
        return False
    actual = _program(Path(real).name)
    if actual in _DISPATCHERS:
        return False
    # The name called names the program that runs (node; python3 -> python3.11), or an
    # alternatives entry chose it: cc -> /etc/alternatives/cc -> gcc -> gcc-12 ->
    # x86_64-linux-gnu-gcc-12, whose links after the entry name it; the file that runs
    # is stamped. Anything else may dispatch on its name or PATH (cc -> ccache, or
    # gcc -> ~/bin/ccache -> Cellar/ccache/4.9/bin/ccache): never cached.
    if any(_names(name, actual) for name in (Path(found).name, *_chosen_names(found))):
        return True
    return _is_script(real)  # npm -> npm-cli.js: a script is its own version; busybox is not


# Programs that run another one they find by name or on PATH: their own file says
# nothing about the version printed, whatever link reaches them.
_DISPATCHERS = frozenset(
    {"ccache", "sccache", "distcc", "icecc", "buildcache", "busybox", "toybox", "volta-shim"}
)
_VERSION_SUFFIX = re.compile(r"[-.]?\d+(?:\.\d+)*$")


def _program(name: str) -> str:
    """gcc for gcc-12, gcc-12.exe and python for python3.11: the name without a version."""
    return _VERSION_SUFFIX.sub("", name.removesuffix(".exe"))


def _names(name: str, program: str) -> bool:
    """Whether `name` names `program`, up to a version suffix and a target prefix
    (gcc-12 names x86_64-linux-gnu-gcc); cc does not name ccache."""
    called = _program(name)
    return bool(called) and (called == program or program.endswith("-" + called))


def _chosen_names(found: str) -> list[str]:
    """The names of the links followed after an `alternatives` entry (Debian's and
    Fedora's update-alternatives) on the way from `found` to the file that runs."""
    names: list[str] = []
    path = Path(found)
    chosen = False
    for _ in range(40):  # the kernel's own limit on a chain of links
        try:
            target = path.readlink()
        except OSError:  # not a link: the end of the chain
            break
        if chosen:
            names.append(path.name)
        chosen = chosen or path.parent.name == "alternatives"
        path = path.parent / target  # an absolute target replaces the directory
    return names


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:  # noqa: PTH123
            return f.read(2) == b"#!"
    except OSError:
        return False


def _run(tool: _Resolved, cwd: Path | None, timeout: float) -> str:
    """Run the version command (`process.run_bounded`: its deadline holds even when the
    tool leaves a daemon holding its output)."""
    shown = " ".join(tool.argv)
    try:
        done = run_bounded(tool.argv, cwd=cwd, timeout=timeout)
    except OSError as exc:
        raise ToolError(
            f"tool '{tool.name}': cannot run `{shown}`: {exc.strerror}",
            fix="check that the file is executable",
        ) from exc
    if done.returncode is None:
        raise ToolError(
            f"tool '{tool.name}': version command `{shown}` did not finish within {timeout:g} s",
            fix="check that the tool works from a shell, or fix its [tools] entry in the manifest",
        )
    out, err = done.stdout.strip(), done.stderr.strip()
    if done.returncode != 0:
        tail = err.splitlines()[-1] if err else ""
        raise ToolError(
            f"tool '{tool.name}': version command `{shown}` exited with "
            f"{done.returncode}" + (f": {tail}" if tail else ""),
            fix="check that the tool works from a shell, or fix its [tools] entry in the manifest",
        )
    return out or err


def _read_cache(path: Path) -> dict[str, tuple[str, str]]:
    """Cache key -> (stamp, version); anything unreadable or malformed is dropped, and
    anything but a regular file (a FIFO a repository shipped would block the read)."""
    found = read_own(path, _CACHE_LIMIT)
    try:
        data = json.loads(found.decode("utf-8") if found is not None else "")
    except ValueError:
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    cache: dict[str, tuple[str, str]] = {}
    for key, value in entries.items():
        match value:
            case {"stamp": str(stamp), "version": str(version)}:
                cache[key] = (stamp, version)
            case _:
                pass
    return cache


def _write_cache(path: Path, entries: Mapping[str, tuple[str, str]]) -> None:
    if path.parent.is_symlink():
        return  # a `.buildlib` a repository shipped: nothing is written through it
    body = {key: {"stamp": stamp, "version": version} for key, (stamp, version) in entries.items()}
    write_text_atomic(
        path, json.dumps({"version": _CACHE_VERSION, "entries": body}, indent=1, sort_keys=True)
    )
