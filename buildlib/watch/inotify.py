"""What inotify allows and what watching costs: the kernel's limits, the watches held,
and one error for each way of running out.

`watcher.ChangeWatcher` calls these; `buildlib watch` shows their messages. Everything
here reads `/proc` (Linux): the limits (`fs.inotify.*` and, in a user namespace, its own
`user.max_inotify_*`), the watches each inotify instance holds (`/proc/PID/fdinfo`),
and, by walking directories as notify does (symlinks followed, each inode once), how
many watches a set of directories would take.

An error names the limit, its value, what is in use and the `sysctl` line that
raises it: notify itself drops a watch it could not add, which would miss changes
without a word.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from collections.abc import Callable, Iterable

from buildlib.core.records import record

Ignored = Callable[[str], bool]
KernelId = tuple[int, int]  # (inode, device as the kernel prints it in fdinfo)

# --------------------------------------------------------------------------- errors


class WatchError(RuntimeError):
    """The watcher cannot (or can no longer) see every change."""


class TooManyWatchesError(WatchError):
    """The selected directories would cost more inotify watches than the caller allows."""

    def __init__(self, message: str, estimate: WatchEstimate) -> None:
        super().__init__(message)
        self.estimate = estimate


class InotifyLimitError(WatchError):
    """An inotify limit (``max_user_watches`` or ``max_user_instances``) is exhausted."""

    def __init__(self, message: str, *, limit: str, value: int | None, suggested: int) -> None:
        super().__init__(message)
        self.limit = limit  # "fs.inotify.max_user_watches" or "fs.inotify.max_user_instances"
        self.value = value
        self.suggested = suggested


# --------------------------------------------------------------------------- /proc helpers


@record
class InotifyLimits:
    """The limits in force: the global sysctl and this user namespace's own one."""

    max_user_watches: int | None  # fs.inotify.max_user_watches (initial namespace)
    max_user_instances: int | None  # fs.inotify.max_user_instances
    ns_max_watches: int | None  # user.max_inotify_watches (this user namespace)
    ns_max_instances: int | None  # user.max_inotify_instances

    @property
    def watches(self) -> int | None:
        return _min_known(self.max_user_watches, self.ns_max_watches)

    @property
    def instances(self) -> int | None:
        return _min_known(self.max_user_instances, self.ns_max_instances)


@record
class InotifyUsage:
    """Watches and instances held by the processes of this uid that /proc lets us see."""

    watches: int
    instances: int
    own_watches: int  # this process
    own_instances: int


def _min_known(a: int | None, b: int | None) -> int | None:
    known = [v for v in (a, b) if v is not None]
    return min(known) if known else None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def inotify_limits() -> InotifyLimits:
    return InotifyLimits(
        max_user_watches=_read_int("/proc/sys/fs/inotify/max_user_watches"),
        max_user_instances=_read_int("/proc/sys/fs/inotify/max_user_instances"),
        ns_max_watches=_read_int("/proc/sys/user/max_inotify_watches"),
        ns_max_instances=_read_int("/proc/sys/user/max_inotify_instances"),
    )


def inotify_fds(pid: str = "self") -> list[int]:
    fds = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:inotify":
                fds.append(int(name))
        except (OSError, ValueError):
            continue
    return fds


def _fd_watch_lines(pid: str, fd: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            return [line for line in f if line.startswith("inotify wd:")]
    except OSError:
        return None


def fd_watches(fd: int) -> set[KernelId] | None:
    """The (inode, device) of every watch an inotify fd of this process holds."""
    lines = _fd_watch_lines("self", fd)
    if lines is None:
        return None
    out: set[KernelId] = set()
    for line in lines:
        ino = dev = None
        for part in line.split():
            if part.startswith("ino:"):
                ino = int(part[4:], 16)
            elif part.startswith("sdev:"):
                dev = int(part[5:], 16)
        if ino is not None and dev is not None:
            out.add((ino, dev))
    return out


def kernel_backlog(fd: int) -> bool:
    """Events the kernel queued on an inotify fd that notify's thread has not read yet."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    return bool(struct.unpack("i", buf)[0])


def inotify_usage() -> InotifyUsage:
    """Count inotify watches and instances of this uid's processes (for messages)."""
    uid = os.getuid()
    me = str(os.getpid())
    watches = instances = own_watches = own_instances = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        for fd in inotify_fds(pid):
            lines = _fd_watch_lines(pid, fd)
            n = len(lines) if lines is not None else 0
            watches += n
            instances += 1
            if pid == me:
                own_watches += n
                own_instances += 1
    return InotifyUsage(
        watches=watches, instances=instances, own_watches=own_watches, own_instances=own_instances
    )


def kernel_id(st: os.stat_result) -> KernelId:
    # fdinfo prints the kernel's dev_t: major << 20 | minor
    return (st.st_ino, (os.major(st.st_dev) << 20) | os.minor(st.st_dev))


def stat_id(path: str) -> KernelId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return kernel_id(st)


def normalize_dirs(
    root: str | os.PathLike[str], dirs: Iterable[str], *, keep_nested: bool = False
) -> list[str]:
    """Relative POSIX paths, sorted, without duplicates.

    Directories nested in others are dropped too (they are watched recursively), unless
    ``keep_nested`` (for directories watched non-recursively).
    """
    root_abs = os.path.abspath(root)
    rels: set[str] = set()
    for d in dirs:
        full = os.path.normpath(os.path.join(root_abs, d))
        rel = os.path.relpath(full, root_abs)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            raise ValueError(f"watched directory {d!r} is outside the root {root_abs}")
        rels.add(rel.replace(os.sep, "/"))
    if keep_nested:
        return sorted(rels)
    out: list[str] = []
    for rel in sorted(rels, key=lambda r: (r.count("/"), r)):
        if rel == "." or not any(within(rel, kept) for kept in out):
            out.append(rel)
    return sorted(out)


def within(rel: str, parent: str) -> bool:
    return parent in (".", rel) or rel.startswith(parent + "/")


def join(root: str, rel: str) -> str:
    return root if rel == "." else os.path.join(root, rel)


def scan(
    root: str,
    top: str,
    ignored: Ignored | None,
    *,
    files: bool,
    seen: set[KernelId] | None = None,
    recursive: bool = True,
) -> tuple[list[tuple[str, KernelId, bool]], list[str]]:
    """Walk ``top`` as notify does (symlinks followed, each directory inode once).

    Returns ``[(abs_dir, kernel_id, is_ignored)]`` for every directory that notify
    watches (ignored ones included: inotify cannot exclude them) and, if ``files``, the
    relative paths of every non-ignored file (below non-ignored directories).
    """
    if seen is None:
        seen = set()
    dirs: list[tuple[str, KernelId, bool]] = []
    out_files: list[str] = []
    prefix = len(root) + 1
    top_id = stat_id(top)
    if top_id is None or top_id in seen:
        return dirs, out_files
    seen.add(top_id)
    top_rel = "." if top == root else top[prefix:]
    stack = [(top, ignored(top_rel) if ignored is not None and top_rel != "." else False)]
    dirs.append((top, top_id, stack[0][1]))
    while stack:
        path, skip = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue
            rel = entry.path[prefix:]
            ign = skip or (ignored is not None and ignored(rel))
            if is_dir:
                if not recursive:
                    if files and not ign:
                        out_files.append(rel)
                    continue
                try:
                    kid = kernel_id(entry.stat(follow_symlinks=True))
                except OSError:
                    continue
                if kid in seen:
                    continue
                seen.add(kid)
                dirs.append((entry.path, kid, ign))
                stack.append((entry.path, ign))
            elif files and not ign:
                out_files.append(rel)
    return dirs, out_files


@record
class WatchEstimate:
    """What watching some directories costs in inotify watches (one per directory)."""

    total: int
    per_dir: dict[str, int]
    ignored: int  # watched although ignored (outputs inside input directories)
    heaviest: tuple[tuple[str, int], ...] = ()  # largest subtrees

    def describe(self) -> str:
        parts = ", ".join(f"{d}: {n}" for d, n in self.per_dir.items())
        heavy = ", ".join(f"{d} ({n})" for d, n in self.heaviest)
        text = f"{self.total} inotify watches ({parts})"
        if self.ignored:
            text += f", {self.ignored} of them in ignored directories"
        if heavy:
            text += f"; largest subtrees: {heavy}"
        return text


def estimate_watches(
    root: str | os.PathLike[str],
    dirs: Iterable[str],
    ignored: Ignored | None = None,
    flat_dirs: Iterable[str] = (),
) -> WatchEstimate:
    """Count the inotify watches ``ChangeWatcher(root, dirs, ...)`` would hold.

    Every directory below a recursively watched one is one watch, ignored or not;
    a directory reached twice (symlinks) is one watch; each flat directory is one.
    """
    root_abs = os.path.abspath(root)
    seen: set[KernelId] = set()
    per_dir: dict[str, int] = {}
    sub_counts: dict[str, int] = {}
    n_ignored = 0
    rec = normalize_dirs(root_abs, dirs)
    for rel in rec:
        found, _ = scan(root_abs, join(root_abs, rel), ignored, files=False, seen=seen)
        per_dir[rel] = len(found)
        base = join(root_abs, rel)
        for path, _kid, ign in found:
            n_ignored += ign
            if path != base:
                child = path[len(base) + 1 :].split(os.sep, 1)[0]
                key = child if rel == "." else f"{rel}/{child}"
                sub_counts[key] = sub_counts.get(key, 0) + 1
    for rel in normalize_dirs(root_abs, flat_dirs, keep_nested=True):
        if any(within(rel, r) for r in rec):
            continue
        kid = stat_id(join(root_abs, rel))
        per_dir[rel] = 0 if kid is None or kid in seen else 1
        if kid is not None:
            seen.add(kid)
    heaviest = sorted(sub_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return WatchEstimate(
        total=sum(per_dir.values()), per_dir=per_dir, ignored=n_ignored, heaviest=tuple(heaviest)
    )


# --------------------------------------------------------------------------- limit messages


def watch_limit_error(what: str, needed: int | None) -> InotifyLimitError:
    limits = inotify_limits()
    usage = inotify_usage()
    value = limits.watches
    glob_v = limits.max_user_watches
    suggested = max(524_288, 2 * (glob_v or 0))
    lines = [
        f"inotify watch limit reached {what}: fs.inotify.max_user_watches = {glob_v}",
    ]
    if limits.ns_max_watches is not None and glob_v is not None and limits.ns_max_watches < glob_v:
        lines[0] += f" (this user namespace: user.max_inotify_watches = {limits.ns_max_watches})"
    lines[0] += "."
    lines.append(
        f"In use: {usage.watches} watches by this user's processes "
        f"({usage.own_watches} by this one)"
        + (f"; the watched directories need about {needed}." if needed is not None else ".")
    )
    lines.append("Changes would be missed, so watching stops.")
    fix = f"Fix: sudo sysctl fs.inotify.max_user_watches={suggested}"
    if limits.ns_max_watches is not None and value == limits.ns_max_watches and value != glob_v:
        fix += f", and in this user namespace sysctl user.max_inotify_watches={suggested}"
    fix += (
        f"; to keep it: echo fs.inotify.max_user_watches={suggested} | sudo tee "
        "/etc/sysctl.d/60-inotify.conf. Or watch fewer directories, or close programs "
        "holding many watches, or use polling (slow, second-granular)."
    )
    lines.append(fix)
    return InotifyLimitError(
        "\n".join(lines), limit="fs.inotify.max_user_watches", value=value, suggested=suggested
    )


def instance_limit_error(cause: str) -> InotifyLimitError:
    limits = inotify_limits()
    usage = inotify_usage()
    value = limits.instances
    glob_v = limits.max_user_instances
    suggested = max(1024, 2 * (glob_v or 0))
    head = f"cannot create an inotify instance ({cause}): fs.inotify.max_user_instances = {glob_v}"
    if (
        limits.ns_max_instances is not None
        and glob_v is not None
        and limits.ns_max_instances < glob_v
    ):
        head += f" (this user namespace: user.max_inotify_instances = {limits.ns_max_instances})"
    try:
        import resource

        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        open_fds = len(os.listdir("/proc/self/fd"))
        fds = f"; this process has {open_fds} open files of RLIMIT_NOFILE {nofile}"
    except (ImportError, OSError):
        fds = ""
    text = (
        f"{head}.\nIn use: {usage.instances} inotify instances by this user's processes "
        f"({usage.own_instances} by this one){fds}.\n"
        f"Fix: sudo sysctl fs.inotify.max_user_instances={suggested}; to keep it: echo "
        f"fs.inotify.max_user_instances={suggested} | sudo tee /etc/sysctl.d/60-inotify.conf."
        " Or close programs holding many (editors, file indexers), or use polling."
    )
    return InotifyLimitError(
        text, limit="fs.inotify.max_user_instances", value=value, suggested=suggested
    )
