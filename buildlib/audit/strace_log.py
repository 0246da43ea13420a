"""Lines of `strace -f -y` output turned into complete system calls.

`iter_calls` joins each `<unfinished ...>` line with its `<... resumed>` half (other
pids' calls interleave between them under -f), follows a thread's execve that finishes
as the thread-group leader, and yields one `Call` per completed call, in completion
order. Strings are decoded exactly (`decode_c_string`): the log must be read as
latin-1, so that every character is one byte of the original.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator

EXIT = "<exit>"  # Call.name for the end of a pid
_LINE = re.compile(r"(\d+)\s+(.*)", re.S)
_RESUMED = re.compile(r"<\.\.\. ([A-Za-z0-9_]+) resumed>(.*)", re.S)
_UNFINISHED = " <unfinished ...>"
_PID_CHANGED = re.compile(r" ?<pid changed to (\d+) \.\.\.>$")
_SUPERSEDED = re.compile(r"\+\+\+ superseded by execve in pid (\d+) \+\+\+")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(")
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"(?:\.\.\.)?'  # quoted string, maybe cut
    r"|<[^>]*>"  # fd path (strace escapes '<' and '>' inside)
    r"|[(\[{]|[)\]}]"
    r"|,"
    r'|[^"<>()\[\]{},]+'
    r"|.",
    re.S,
)
_RETURN_TEXT = (
    r"=\s+(-?\d+|0x[0-9a-fA-F]+|\?)"  # value
    r"(?:<((?:[^>\\]|\\.)*)>)?"  # -y path of a returned fd
    r"(?:\s+([A-Z][A-Z0-9_]+)(?:\s+\([^()]*\))?)?"  # errno name (description)
    r"(?:\s+\(errno \d+\))?(?:\s+<unavailable>)?"
)
_RETURN = re.compile(r"\s*" + _RETURN_TEXT)
_TAIL = re.compile(r"\)\s*" + _RETURN_TEXT + r"\s*$")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)
_SIMPLE_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "e": 27}
_ARGV_STRING = re.compile(r'"(?:[^"\\]|\\.)*"(?:\.\.\.)?|\.\.\.')

# How many leading arguments the accumulator reads per call (absent: all). Splitting
# stops there, so stat buffers, argv and environments are not tokenized.
ARGS_USED = {
    "open": 2,
    "openat": 3,
    "openat2": 3,
    "creat": 1,
    "stat": 1,
    "lstat": 1,
    "access": 1,
    "readlink": 1,
    "statx": 3,
    "faccessat": 2,
    "faccessat2": 2,
    "readlinkat": 2,
    "getdents64": 1,
    "getdents": 1,
    "execve": 2,
    "execveat": 3,
    "rename": 2,
    "renameat": 4,
    "unlink": 1,
    "unlinkat": 2,
    "rmdir": 1,
    "mkdir": 1,
    "mkdirat": 2,
    "mknod": 1,
    "mknodat": 2,
    "link": 2,
    "linkat": 4,
    "symlink": 2,
    "symlinkat": 3,
    "truncate": 1,
    "chdir": 1,
    "fchdir": 1,
    "fork": 0,
    "vfork": 0,
    "clone3": 1,
    "io_uring_setup": 0,
}


class Call:
    """One system call, its unfinished and resumed halves joined (or EXIT for a
    `+++ exited`/`+++ killed` line). A plain slotted class: one is made per log line."""

    __slots__ = ("args", "errno", "name", "pid", "rest", "ret", "ret_path")

    def __init__(
        self,
        pid: int,
        name: str,
        *,
        args: list[str],
        ret: int | None,
        errno: str | None = None,
        ret_path: str | None = None,
        rest: str = "",
    ) -> None:
        self.pid = pid
        self.name = name
        self.args = args
        self.ret = ret  # None: unknown ("?")
        self.errno = errno
        self.ret_path = ret_path  # -y annotation of the returned fd
        self.rest = rest  # everything after the closing parenthesis

    @property
    def ok(self) -> bool:
        return self.ret is not None and self.ret >= 0 and self.errno is None

    def __repr__(self) -> str:
        return f"Call({self.pid}, {self.name}, {self.args!r}, ret={self.ret}, {self.errno})"


def decode_c_string(token: str) -> bytes:
    """The bytes of one strace-quoted string (`"a\\tb\\377"`, maybe followed by `...`).

    `token` must have been read as latin-1, so every character is one byte."""
    body = token.removesuffix("...")
    if len(body) < 2 or body[0] != '"' or body[-1] != '"':
        raise ValueError(f"not a quoted string: {token!r}")
    return _unescape(body[1:-1])


def _unescape(body: str) -> bytes:
    if "\\" not in body:
        return body.encode("latin-1")
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(body):
        out += body[pos : m.start()].encode("latin-1")
        esc = m.group(1)
        if esc[0] == "x" and len(esc) > 1:
            out.append(int(esc[1:], 16))
        elif esc[0] in "01234567":
            out.append(int(esc, 8) & 0xFF)
        else:
            out.append(_SIMPLE_ESCAPES.get(esc, ord(esc) & 0xFF))
        pos = m.end()
    out += body[pos:].encode("latin-1")
    return bytes(out)


def path_of(token: str) -> str | None:
    """A quoted path argument as str (surrogateescape), None for NULL or an address."""
    if not token.startswith('"'):
        return None
    return os.fsdecode(decode_c_string(token))


@functools.lru_cache(maxsize=8192)
def fd_path(annotation: str) -> str:
    """The path strace printed inside `<...>` after an fd (escapes decoded)."""
    return os.fsdecode(_unescape(annotation)).removesuffix(" (deleted)")


def parse_argv(token: str) -> tuple[tuple[str, ...], bool]:
    """An execve argv array (`["cc", "-o", ...]`) and whether strace cut it short."""
    if not token.startswith("["):
        return (), False
    out: list[str] = []
    cut = False
    for m in _ARGV_STRING.finditer(token):
        t = m.group()
        if t == "...":
            cut = True  # more arguments than strace prints
            continue
        cut = cut or t.endswith("...")
        out.append(os.fsdecode(decode_c_string(t)))
    return tuple(out), cut


def split_call(pid: int, text: str) -> Call | None:
    """Parse `name(arg, arg...) = ret` (without the pid); None if it is not a call.

    Only the leading arguments the accumulator uses are split (`ARGS_USED`); the others
    (stat buffers, argv, environment) are skipped and `args` is shorter."""
    m = _CALL.match(text)
    if m is None:
        return None
    name = m.group(1)
    args, end = _split_args(text, m.end(), ARGS_USED.get(name, 1 << 30))
    if end >= 0:
        r = _RETURN.match(text, end)
    else:
        r = _TAIL.search(text, m.end())  # the arguments left unsplit end at the last ") ="
        if r is None:
            return None
        end = r.start() + 1
    ret: int | None = None
    errno = ret_path = None
    if r is not None:
        value = r.group(1)
        if value != "?":
            ret = int(value, 16) if value.startswith("0x") else int(value)
        if r.group(2) is not None:
            ret_path = fd_path(r.group(2))
        errno = r.group(3)
    return Call(pid, name, args=args, ret=ret, errno=errno, ret_path=ret_path, rest=text[end:])


def _split_args(text: str, start: int, wanted: int) -> tuple[list[str], int]:
    """The first `wanted` top-level arguments, and the index after the closing
    parenthesis (-1 when splitting stopped before it)."""
    depth = 1
    args: list[str] = []
    current: list[str] = []
    end = -1
    if wanted > 0:
        for tok in _TOKEN.finditer(text, start):
            t = tok.group()
            c = t[0]
            if len(t) == 1 and c in "([{":
                depth += 1
            elif len(t) == 1 and c in ")]}":
                depth -= 1
                if depth == 0:
                    end = tok.end()
                    break
            elif c == "," and depth == 1:
                args.append("".join(current).strip())
                current = []
                if len(args) >= wanted:
                    break
                continue
            current.append(t)
    if end >= 0:
        last = "".join(current).strip()
        if last or args:
            args.append(last)
    return args, end


def iter_calls(lines: Iterable[str], warnings: list[str] | None = None) -> Iterator[Call]:
    """Complete calls from strace -f output lines, unfinished/resumed pairs joined.

    A call is yielded where it completes. Lines without a pid (strace without -f) get pid 0.
    """
    joiner = _Joiner([] if warnings is None else warnings)
    for raw in lines:
        line = raw.rstrip("\n")
        if line:
            yield from joiner.feed(line)
    for pid, head in joiner.pending.items():
        joiner.warnings.append(f"pid {pid} never finished: {head[:200]}")


class _Joiner:
    """The state `iter_calls` keeps between lines: each pid's unfinished call."""

    def __init__(self, warnings: list[str]) -> None:
        self.warnings = warnings
        self.pending: dict[int, str] = {}
        self.superseded: set[int] = set()  # pids whose pending execve is known to have succeeded

    def feed(self, line: str) -> Iterator[Call]:
        m = _LINE.fullmatch(line)
        pid, body = (int(m.group(1)), m.group(2)) if m is not None else (0, line)
        if body.startswith(("+++", "---")):
            yield from self._process_event(pid, body)
            return
        resumed = _RESUMED.match(body)
        if resumed is not None:
            head = self.pending.pop(pid, None)
            if head is None:
                self.warnings.append(f"resumed without a start: {line[:200]}")
                return
            body = head + resumed.group(2)
        if body.endswith("...>"):
            if body.endswith(_UNFINISHED):
                self.pending[pid] = body[: -len(_UNFINISHED)]
                return
            changed = _PID_CHANGED.search(body)
            if changed is not None:  # a thread's execve, finishing as the leader's pid
                self.pending[int(changed.group(1))] = body[: changed.start()]
                return
        call = split_call(pid, body)
        if call is None:
            if not body.startswith("strace:"):
                self.warnings.append(f"unparsed: {line[:200]}")
            return
        if pid in self.superseded and call.name in ("execve", "execveat"):
            # Under --seccomp-bpf strace 6.1 prints this exit as "= -1 (errno 1844...)";
            # the kernel said it succeeded.
            self.superseded.discard(pid)
            call.ret, call.errno = 0, None
        yield call

    def _process_event(self, pid: int, body: str) -> Iterator[Call]:
        """`+++ exited/killed +++` ends a pid; `+++ superseded +++` moves an execve."""
        sup = _SUPERSEDED.match(body)
        if sup is not None:
            # A non-leader thread exec'd: its unfinished execve finishes as this pid.
            old = int(sup.group(1))
            if old in self.pending and pid not in self.pending:
                self.pending[pid] = self.pending.pop(old)
            self.superseded.add(pid)
            yield Call(old, EXIT, args=[], ret=0, rest=body)  # the thread is gone
        elif body.startswith(("+++ exited", "+++ killed")):
            yield Call(pid, EXIT, args=[], ret=0, rest=body)
