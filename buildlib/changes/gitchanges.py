"""What changed in a git work tree since a base commit: the facts `--affected` starts from.

`GitRepo` answers four questions, each with real `git` commands and nothing cached:

- which commit is the base: `--base REF`, else `$BUILDLIB_BASE`, else the pull request's
  target branch (`$GITHUB_BASE_REF`), else the remote's default branch (`origin/HEAD`,
  asked of the remote when the clone does not know it), else a local `main`/`master`;
  a ref the clone does not have is fetched from its remote (CI checkouts hold one commit);
- the merge-base of that commit and the head (`HEAD`, or `--head`/`$BUILDLIB_HEAD`). In a
  shallow clone (CI's `fetch-depth: 1`) the merge-base is usually missing: the history is
  deepened in bounded steps (`git fetch --deepen`, doubling, at most `DEEPEN_LIMIT`
  commits in all, `$BUILDLIB_DEEPEN_LIMIT` to change it) until it is found. When it still
  is not, `BaseCommit.merge_base` is None and the caller selects everything, saying why;
- which paths differ between the merge-base and the work tree: committed, staged,
  unstaged and untracked (not ignored) changes, deletions, both sides of a rename, a
  submodule whose commit moved; with a head ref, between the merge-base and that commit;
- what a file held at the base (`show`), for the manifest and lockfiles.

Paths are relative to the workspace root (which may be a directory inside the repository),
POSIX, as the manifest's globs are. A base ref that exists nowhere is a `GitError` naming
it and the fix; a work tree that is not a git repository is a `GitError` too.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from buildlib.core.errors import UserError
from buildlib.core.records import record

GIT_TIMEOUT = 120.0  # seconds for a local git command
FETCH_TIMEOUT = 600.0  # seconds for one fetch from the remote
DEEPEN_FIRST = 64  # commits fetched by the first deepening; each next one doubles
DEEPEN_LIMIT = 4096  # commits fetched by deepening in all before giving up
OUTPUT_LIMIT = 1 << 30
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
GITLINK = "160000"  # the mode git gives a submodule's entry


class GitError(UserError):
    """git cannot answer: not a repository, no git, or a ref that exists nowhere."""


class ChangeKind(enum.Enum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"  # `path` is the new name, `old_path` the old one
    TYPE_CHANGED = "type-changed"  # a file became a symlink or the reverse
    UNTRACKED = "untracked"  # in the work tree, not ignored, never added


@record
class Change:
    path: str
    kind: ChangeKind
    old_path: str | None = None  # the name at the base, for a rename or copy
    submodule: bool = False  # a gitlink: its commit moved, so anything below it may differ

    @property
    def paths(self) -> tuple[str, ...]:
        """Every workspace path this change touches (both names of a rename)."""
        return (self.path,) if self.old_path is None else (self.old_path, self.path)


@record
class BaseCommit:
    """Where a comparison starts; `merge_base` None when it could not be found."""

    ref: str  # as given or chosen, e.g. "origin/main"
    source: str  # where the ref came from: "--base", "BUILDLIB_BASE", "GITHUB_BASE_REF", ...
    commit: str  # what `ref` names
    head: str  # the commit compared: HEAD's, or the head ref's
    head_ref: str | None  # None: the work tree is compared (HEAD plus local changes)
    merge_base: str | None
    deepened: int = 0  # commits asked for by deepening a shallow clone (--deepen=N, summed)
    fetched: int = 0  # commits that deepening brought: fewer when the history is shorter
    shallow: bool = False  # the clone was (and may still be) shallow
    note: str = ""  # why the merge-base is missing, when it is


class GitRepo:
    """The git repository holding the workspace at `root`."""

    def __init__(
        self,
        root: Path,
        *,
        environ: Mapping[str, str] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.environ = dict(os.environ if environ is None else environ)
        self.say = say or (lambda message: None)
        top = self._git("rev-parse", "--show-toplevel", check=False)
        if top is None:
            raise GitError(
                f"{root} is not in a git repository, so --affected has no base to compare with",
                fix="run it in a git clone, or build without --affected",
            )
        self.toplevel = Path(top.strip())
        prefix = self._git("rev-parse", "--show-prefix") or ""
        self.prefix = prefix.strip()  # the workspace root inside the repository, "" or "a/b/"

    # -- running git ---------------------------------------------------------------------

    def _run(
        self, args: Sequence[str], *, timeout: float = GIT_TIMEOUT
    ) -> tuple[int | None, str, str]:
        from buildlib.core.bounded import run_bounded

        # Never prompt (a fetch with no credentials fails instead of waiting for a user),
        # never page, file names as they are.
        env = {**self.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
        env.pop("GIT_DIR", None)
        env.pop("GIT_WORK_TREE", None)
        try:
            done = run_bounded(
                ["git", "-c", "core.quotepath=off", *args],
                cwd=self.root,
                timeout=timeout,
                env=env,
                limit=OUTPUT_LIMIT,
                errors="surrogateescape",
            )
        except OSError as exc:
            raise GitError(
                f"cannot run git: {exc.strerror or exc}",
                fix="install git, or build without --affected",
            ) from None
        return done.returncode, done.stdout, done.stderr

    def _git(self, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT) -> str | None:
        """stdout of `git args`; on failure None, or with `check` a GitError."""
        code, out, err = self._run(args, timeout=timeout)
        if code == 0:
            return out
        if check:
            what = "timed out" if code is None else f"exited {code}"
            raise GitError(
                f"git {' '.join(args)} {what}: {err.strip()[-500:]}",
                fix="check the repository with `git status`; build without "
                "--affected to build everything",
            )
        return None

    # -- refs ---------------------------------------------------------------------------

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names here, or None."""
        if ref.startswith("-"):
            return None
        out = self._git(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False
        )
        return out.strip() if out else None

    def is_shallow(self) -> bool:
        return (
            self._git("rev-parse", "--is-shallow-repository", check=False) or ""
        ).strip() == "true"

    def remotes(self) -> list[str]:
        return (self._git("remote", check=False) or "").split()

    def _remote_for(self, ref: str) -> str | None:
        remotes = self.remotes()
        for remote in remotes:
            if ref.startswith(remote + "/"):
                return remote
        return "origin" if "origin" in remotes else (remotes[0] if remotes else None)

    def default_base(self) -> tuple[str, str]:
        """(ref, where it came from) for the default branch; GitError when there is none."""
        github = self.environ.get("GITHUB_BASE_REF", "").strip()
        remote = self._remote_for("")
        if github and remote:
            return f"{remote}/{github}", "GITHUB_BASE_REF"
        if remote is not None:
            head = self._git("symbolic-ref", "--quiet", f"refs/remotes/{remote}/HEAD", check=False)
            if head:
                return head.strip().removeprefix("refs/remotes/"), f"{remote}/HEAD"
            listed = self._git(
                "ls-remote", "--symref", remote, "HEAD", check=False, timeout=FETCH_TIMEOUT
            )
            for line in (listed or "").splitlines():
                if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                    branch = line[len("ref: refs/heads/") : -len("\tHEAD")]
                    return f"{remote}/{branch}", f"the default branch of {remote}"
        for branch in ("main", "master"):
            if self.resolve(f"refs/heads/{branch}"):
                return branch, "the local branch"
        raise GitError(
            "no default branch to compare with: no remote names one and there is "
            "no local main or master",
            fix="pass --base REF (or set BUILDLIB_BASE) to the branch or commit "
            "the changes are measured from",
        )

    def fetch_ref(self, ref: str, *, depth: int | None) -> str | None:
        """Fetch `ref` (a remote branch `origin/x`, a branch or tag name the remote has, or
        a commit id) from the remote; the commit it names, or None when the remote has no
        such ref. `depth` bounds the history fetched (a shallow clone stays shallow)."""
        remote = self._remote_for(ref)
        if remote is None:
            return None
        depth_args = [f"--depth={depth}"] if depth else []
        name = ref[len(remote) + 1 :] if ref.startswith(remote + "/") else ref
        if _SHA.match(name) and not ref.startswith(remote + "/"):
            self.say(f"fetching {name} from {remote}")
            return self.resolve(name) if self._fetch(*depth_args, remote, name) else None
        listed = self._git(
            "ls-remote",
            remote,
            f"refs/heads/{name}",
            f"refs/tags/{name}",
            check=False,
            timeout=FETCH_TIMEOUT,
        )
        refs = [line.split("\t", 1)[1] for line in (listed or "").splitlines() if "\t" in line]
        if not refs:
            return None
        found = refs[0]
        local = f"refs/remotes/{remote}/{name}" if found.startswith("refs/heads/") else found
        self.say(f"fetching {found} from {remote}")
        return (
            self.resolve(local) if self._fetch(*depth_args, remote, f"+{found}:{local}") else None
        )

    def _fetch(self, *args: str) -> bool:
        """`git fetch --quiet --no-tags ARGS` within FETCH_TIMEOUT; whether it worked."""
        return (
            self._git("fetch", "--quiet", "--no-tags", *args, check=False, timeout=FETCH_TIMEOUT)
            is not None
        )

    def _commit(self, ref: str, what: str, shallow: bool) -> str:
        commit = self.resolve(ref) or self.fetch_ref(ref, depth=DEEPEN_FIRST if shallow else None)
        if commit is None:
            raise GitError(
                f"unknown {what} ref '{ref}': neither this clone nor its remote has it",
                fix=f"pass a branch, tag or commit that exists (`git branch -a` "
                f"lists branches), or fetch it first: git fetch origin {ref}",
            )
        return commit

    # -- the base -------------------------------------------------------------------------

    def find_base(self, *, base: str | None, head: str | None) -> BaseCommit:
        """The base and head commits and their merge-base, deepening a shallow clone.

        `base`/`head` are what the command line gave (None: the environment's
        BUILDLIB_BASE/BUILDLIB_HEAD, else the default branch and the work tree)."""
        if base:
            ref, source = base, "--base"
        elif self.environ.get("BUILDLIB_BASE", "").strip():
            ref, source = self.environ["BUILDLIB_BASE"].strip(), "BUILDLIB_BASE"
        else:
            ref, source = self.default_base()
        head_ref = head or self.environ.get("BUILDLIB_HEAD", "").strip() or None
        shallow = self.is_shallow()
        head_commit = self._commit(head_ref, "head", shallow) if head_ref else self.resolve("HEAD")
        if head_commit is None:
            raise GitError(
                "the repository has no commit yet, so there is no history to compare with",
                fix="commit once, or build without --affected",
            )
        commit = self._commit(ref, "base", shallow)
        limit = _deepen_limit(self.environ)
        deepened = 0
        step = DEEPEN_FIRST
        before: int | None = None  # commits held before the first deepening

        def fetched() -> int:
            return self._commit_count() - before if before is not None else 0

        def found(merge_base: str | None, note: str = "") -> BaseCommit:
            return BaseCommit(
                ref=ref,
                source=source,
                commit=commit,
                head=head_commit,
                head_ref=head_ref,
                merge_base=merge_base,
                deepened=deepened,
                fetched=fetched(),
                shallow=shallow,
                note=note,
            )

        while True:
            merge_base = self._merge_base(commit, head_commit)
            if merge_base is not None:
                return found(merge_base)
            if not self.is_shallow():
                note = (
                    "the base and the head share no history"
                    if not shallow
                    else f"no common commit even after fetching the whole history "
                    f"({fetched()} more commits)"
                )
                break
            if deepened >= limit:
                note = (
                    f"not found within {deepened} commits of history asked for "
                    f"(BUILDLIB_DEEPEN_LIMIT={limit})"
                )
                break
            step = min(step, limit - deepened)
            remote = self._remote_for(ref)
            if remote is None:
                note = "the clone is shallow and has no remote to deepen it from"
                break
            if before is None:
                before = self._commit_count()
            self.say(
                f"the clone is shallow: fetching {step} more commits of history to "
                f"find the merge-base of {ref} and {head_ref or 'HEAD'}"
            )
            refspecs = [r for r in (_branch_of(ref, remote), _branch_of(head_ref, remote)) if r]
            if not self._fetch(f"--deepen={step}", remote, *refspecs):
                note = f"`git fetch --deepen={step} {remote}` failed"
                break
            deepened += step
            step *= 2
        return found(None, note)

    def _commit_count(self) -> int:
        """Commits the clone holds (reachable from any ref or HEAD)."""
        out = self._git("rev-list", "--count", "--all", "HEAD", check=False)
        return int(out.strip()) if out and out.strip().isdigit() else 0

    def _merge_base(self, a: str, b: str) -> str | None:
        out = self._git("merge-base", a, b, check=False)
        return out.strip() if out else None

    # -- the changes ---------------------------------------------------------------------

    def changes(self, base: BaseCommit) -> list[Change]:
        """Every path that differs between the merge-base and the work tree (or the head
        ref's commit), relative to the workspace root, sorted by path."""
        assert base.merge_base is not None
        target = [base.head] if base.head_ref else []
        raw = (
            self._git(
                "diff",
                "--raw",
                "-z",
                "-M",
                "--no-ext-diff",
                "--no-textconv",
                "--ignore-submodules=none",
                "--relative",
                base.merge_base,
                *target,
                "--",
            )
            or ""
        )
        found = _parse_raw(raw)
        if not base.head_ref:
            others = self._git("ls-files", "-z", "--others", "--exclude-standard") or ""
            found += [Change(path=p, kind=ChangeKind.UNTRACKED) for p in others.split("\0") if p]
        return sorted(found, key=lambda c: c.path)

    def show(self, commit: str, path: str) -> bytes | None:
        """The bytes of workspace-relative `path` at `commit`, or None if it had none."""
        from buildlib.core.bounded import run_bounded

        try:
            done = run_bounded(
                ["git", "cat-file", "blob", f"{commit}:{self.prefix}{path}"],
                cwd=self.root,
                timeout=GIT_TIMEOUT,
                limit=OUTPUT_LIMIT,
                errors="surrogateescape",
                env={**self.environ, "LC_ALL": "C"},
            )
        except OSError:
            return None
        if done.returncode != 0:
            return None
        return done.stdout.encode("utf-8", "surrogateescape")


def _branch_of(ref: str | None, remote: str) -> str | None:
    """The refspec that deepens `ref`'s history: `main:refs/remotes/origin/main` for
    `origin/main`; None for anything else (a local branch or a commit id deepens with
    the shallow boundary the clone already has)."""
    if ref and ref.startswith(remote + "/"):
        name = ref[len(remote) + 1 :]
        return f"+refs/heads/{name}:refs/remotes/{remote}/{name}"
    return None


def _deepen_limit(environ: Mapping[str, str]) -> int:
    text = environ.get("BUILDLIB_DEEPEN_LIMIT", "").strip()
    if not text:
        return DEEPEN_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise GitError(
            f"BUILDLIB_DEEPEN_LIMIT={text!r} is not a number",
            fix="set it to how many commits of history a shallow clone may fetch "
            f"to find the merge-base (default {DEEPEN_LIMIT})",
        ) from None
    if value < 0:
        raise GitError(
            f"BUILDLIB_DEEPEN_LIMIT={value} is negative", fix="set it to 0 (never deepen) or more"
        )
    return value


_KINDS = {
    "A": ChangeKind.ADDED,
    "M": ChangeKind.MODIFIED,
    "D": ChangeKind.DELETED,
    "T": ChangeKind.TYPE_CHANGED,
    "U": ChangeKind.MODIFIED,
    "X": ChangeKind.MODIFIED,
}


def _parse_raw(text: str) -> list[Change]:
    """`git diff --raw -z` output: `:old_mode new_mode old new STATUS\\0path\\0[path\\0]`."""
    fields = text.split("\0")
    changes: list[Change] = []
    index = 0
    while index < len(fields) - 1:
        header = fields[index]
        if not header.startswith(":"):
            index += 1
            continue
        parts = header[1:].split()
        old_mode, new_mode, status = parts[0], parts[1], parts[4]
        submodule = GITLINK in (old_mode, new_mode)
        letter = status[:1]
        if letter in ("R", "C"):
            old, new = fields[index + 1], fields[index + 2]
            index += 3
            if letter == "R":
                changes.append(
                    Change(path=new, kind=ChangeKind.RENAMED, old_path=old, submodule=submodule)
                )
            else:  # a copy leaves the original as it was
                changes.append(Change(path=new, kind=ChangeKind.ADDED, submodule=submodule))
            continue
        changes.append(
            Change(
                path=fields[index + 1],
                kind=_KINDS.get(letter, ChangeKind.MODIFIED),
                submodule=submodule,
            )
        )
        index += 2
    return changes
