"""Where the engine keeps its own files in a workspace: one object for `.buildlib/`.

    .buildlib/
      lock                           the workspace lock (run/lock.py)
      validated-manifest.marshal     the validated manifest, with its text and the engine
                                     (workspace/manifest.py)
      plans/<key>.marshal            plans and what they came from (planning/remembered.py)
      filehash.cache                 the inputs' stat cache (incremental/filehash.py)
      tools.json                     tool versions (incremental/toolversions.py)
      state/<mode>-<target>/index.marshal which steps are up to date, signed (run/step_state.py)
      state/<mode>-<target>/<step>.json   each step's last success (run/caching_gate.py)
      journal/<mode>-<target>.jsonl  which steps finished, build after build (run/journal.py)
      logs/<mode>-<target>/<step>.log     each step's output
      reports/                       JSON, trace and HTML reports (report/writers.py)
      history.jsonl                  one line per build, for estimates and metrics
      last_build.json                the mode and target built last (verify, metrics)
      artifacts/<mode>-<target>.json what verify found (verify/checks.py)
      watch/<mode>-<target>.json     what `watch` is doing: services, last rebuild (watch/view.py)
      watch/<mode>-<target>.lock     held by the one `watch` of that mode and target
      audit/<mode>-<target>/<step>/  what `audit` traced of each step (audit/runner.py)

Nothing else in the engine spells these names; nothing here creates a directory.

A repository (or an archive) can ship a `.buildlib/` of its own. Its files are not
believed (the ones that matter are signed, core/localkey.py), and the engine never
writes or removes through a symlink placed there: `own` clears the places of the
engine's directories before a command writes, and files are written by renaming over
(core/atomicfile.py) or opened with O_NOFOLLOW (`open_own`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from buildlib.core.entrykinds import is_junction
from buildlib.core.errors import UserError

DIRECTORY = ".buildlib"
# The directories the engine writes in, below `.buildlib/`: each made by its writer
# (`mkdir -p`, which goes through a symlink it finds on the way). Those marked hold one
# directory per mode and target, and `audit/<tag>/` one per step.
_DIRECTORIES = ("logs", "state", "journal", "reports", "plans", "watch", "artifacts", "audit")
_HOLDING_DIRECTORIES = ("logs", "state", "audit")


class BuildDir:
    """The `.buildlib/` directory of the workspace at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / DIRECTORY

    def is_own(self) -> bool:
        """Whether `.buildlib` is a directory of this workspace's (or not made yet), not a
        symlink a repository shipped: the engine writes its state only into its own."""
        try:
            return not self.path.is_symlink()
        except OSError:
            return False

    def own(self) -> None:
        """Clear the places of the engine's directories below `.buildlib/` of anything
        that is not a directory: a symlink a repository shipped there (`logs` -> a
        directory elsewhere) would have logs, reports, records and the journal written,
        and old ones pruned, outside the workspace. Such an entry is removed, never
        followed (what it names is untouched); the writers then make real directories.
        Called before a command writes: under the workspace lock, and by `verify` and
        `watch` as they start.
        Raises UserError for a `.buildlib` that is a symlink or not a directory."""
        if not self._checked():
            return  # nothing shipped: the writers make everything
        try:
            for name in _DIRECTORIES:
                place = self.path / name
                if _clear(place) and name in _HOLDING_DIRECTORIES:
                    for held in _subdirectories(place):
                        if name == "audit":
                            _subdirectories(held)
        except OSError as exc:  # an unreadable directory, or a read-only .buildlib
            raise self._unreadable(exc) from None

    def own_parents(self, path: Path) -> None:
        """`own` for one file about to be written: only the directories between
        `.buildlib` and `path` are cleared (a few lstats). `watch` writes its status
        file and services' logs without a build, so after a checkout that may have
        brought a link there, and as often as every poll."""
        parts = path.parent.relative_to(self.path).parts  # ValueError: not below it (a bug)
        if ".." in parts:
            raise ValueError(f"{path} climbs out of {self.path}")
        if not self._checked():
            return
        try:
            place = self.path
            for part in parts:
                place = place / part
                if not _clear(place):
                    return  # nothing there (now): the writer makes the rest
        except OSError as exc:
            raise self._unreadable(exc) from None

    def _checked(self) -> bool:
        """Whether `.buildlib` exists (as a directory of its own: else UserError)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._unreadable(exc) from None
        if not stat.S_ISDIR(info.st_mode) or is_junction(self.path):
            what = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a directory"
            raise UserError(
                f"{self.path} is {what}: the engine keeps its state there and writes "
                "only into a directory of its own (a repository may have shipped this one)",
                fix=f"remove it (`rm {self.path}`) and run again",
            )
        return True

    def _unreadable(self, exc: OSError) -> UserError:
        return UserError(
            f"cannot check {exc.filename or self.path}: {exc.strerror or exc}",
            fix=f"make {self.path} readable and writable by you, or remove it",
        )

    @staticmethod
    def tag(mode: str, target: str) -> str:
        """How a mode and target name their files: `production-x86_64-unknown-linux-gnu`."""
        return f"{mode}-{target}"

    @property
    def lock(self) -> Path:
        return self.path / "lock"

    @property
    def validated_manifest(self) -> Path:
        return self.path / "validated-manifest.marshal"

    @property
    def stale_files(self) -> tuple[Path, ...]:
        """Files older engines kept here that nothing reads any more: the parsed
        build.toml (`manifest.marshal`, ~0.4 KB a step), before steps were reused by piece."""
        return (self.path / "manifest.marshal",)

    @property
    def plans(self) -> Path:
        return self.path / "plans"

    @property
    def filehash_cache(self) -> Path:
        return self.path / "filehash.cache"

    @property
    def tool_versions(self) -> Path:
        return self.path / "tools.json"

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    @property
    def history(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def last_build(self) -> Path:
        return self.path / "last_build.json"

    def state(self, mode: str, target: str) -> Path:
        return self.path / "state" / self.tag(mode, target)

    def journal(self, mode: str, target: str) -> Path:
        return self.path / "journal" / f"{self.tag(mode, target)}.jsonl"

    def logs(self, mode: str, target: str) -> Path:
        return self.path / "logs" / self.tag(mode, target)

    def artifacts(self, mode: str, target: str) -> Path:
        return self.path / "artifacts" / f"{self.tag(mode, target)}.json"

    def watch_status(self, mode: str, target: str) -> Path:
        return self.path / "watch" / f"{self.tag(mode, target)}.json"

    def watch_lock(self, mode: str, target: str) -> Path:
        return self.path / "watch" / f"{self.tag(mode, target)}.lock"

    def audit(self, mode: str, target: str) -> Path:
        return self.path / "audit" / self.tag(mode, target)


def _clear(place: Path) -> bool:
    """Whether `place` is a directory (not a symlink to one); anything else there is
    removed, so that its writer makes a directory of its own."""
    try:
        info = os.lstat(place)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(info.st_mode) and not is_junction(place):
        return True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(place)  # noqa: PTH108 - a symlink or a file: never followed
    return False


def _subdirectories(directory: Path) -> list[Path]:
    """The directories in `directory`, once every other entry there is removed."""
    try:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries]
    except (FileNotFoundError, NotADirectoryError):  # gone meanwhile (`git clean`...)
        return []
    return [directory / name for name in names if _clear(directory / name)]
