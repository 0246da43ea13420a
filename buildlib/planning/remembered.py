"""Plans remembered in `.buildlib/plans/`, so a build of an unchanged manifest does not
fill 10,000 steps' templates again, and one of an edited manifest fills only the steps
whose [[step]] tables changed.

What a plan is made of splits in two. Most of it is decided by the manifest, the
engine, the mode, the target, the steps asked for and the template variables (the
environment's BUILDLIB_VAR_*, the root, the interpreter): the selection, the order and
each step's filled command, env and paths. That part is remembered here, under a key
naming all of those but the steps themselves, and whether services are planned and the
target's markers (planning/plan.py, `_plan_key`), with the
manifest it was made from and each step's origin (workspace/manifest.py: its table's
text, with what its validation read). A plan of the same manifest is used whole; one of
another manifest lends each step whose origin and dependencies are unchanged. The rest
reads the file system or the build history, and is computed again at every use: each
cwd and output resolved through symlinks and checked to stay inside the workspace, the
package manager of `script` steps, and priorities from the latest durations.

The files are plain data (marshal) signed with this user's key (core/marshalfile.py),
readable by the user alone (a filled env may hold a value from the environment), and
only the newest `KEEP` are kept (by when they were made). Without a key nothing is
remembered.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from buildlib.core import marshalfile
from buildlib.core.layout import BuildDir
from buildlib.core.localkey import user_key
from buildlib.core.records import record

_HEADER = b"buildlib-plan-2\n"
KEEP = 8  # modes x targets x step selections a workspace plans in turn


def plan_file(root: Path, key: str) -> Path:
    return BuildDir(root).plans / f"{key}.marshal"


@record
class Remembered:
    manifest: str  # the Manifest's `remembered_as` the steps were filled from
    steps: dict[str, dict[str, Any]]  # name -> filled fields, in plan order
    origins: dict[str, str]  # name -> the StepSpec's origin ("": none)


def recall(root: Path, key: str) -> Remembered | None:
    """The plan remembered under `key`, or None."""
    signing = user_key()
    if not signing:
        return None
    found = marshalfile.read(plan_file(root, key), _HEADER, key=signing)
    if not (isinstance(found, tuple) and len(found) == 4 and found[0] == key):
        return None
    _, manifest, steps, origins = found
    if isinstance(manifest, str) and isinstance(steps, dict) and isinstance(origins, dict):
        return Remembered(manifest=manifest, steps=steps, origins=origins)
    return None


def remember(root: Path, key: str, plan: Remembered) -> None:
    """Store `plan` under `key`, then keep only the newest KEEP plans. Best effort: a
    read-only workspace, or a `plans` that is not a directory of its own (a symlink a
    repository shipped), plans every time."""
    signing = user_key()
    path = plan_file(root, key)
    if not signing or not BuildDir(root).is_own() or not _own_directory(path.parent):
        return
    with contextlib.suppress(ValueError, OSError):
        marshalfile.write(
            path, _HEADER, (key, plan.manifest, plan.steps, plan.origins), key=signing
        )
        _prune(path.parent)


def _own_directory(directory: Path) -> bool:
    """`directory` is a real directory (made here if missing), not a symlink elsewhere."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return stat.S_ISDIR(directory.lstat().st_mode)
    except OSError:
        return False


def _prune(directory: Path) -> None:
    entries: list[tuple[int, str]] = []
    with os.scandir(directory) as found:
        for entry in found:
            if entry.name.endswith(".marshal") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    entries.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
    for _, path in sorted(entries, reverse=True)[KEEP:]:
        with contextlib.suppress(OSError):
            os.unlink(path)  # noqa: PTH108 - a path string from scandir
