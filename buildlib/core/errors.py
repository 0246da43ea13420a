"""The errors a user can cause and fix, as opposed to bugs.

Every subclass of `UserError` is printed as one message with no traceback and
exits with `exit_code`; anything else escaping the CLI is an internal error (exit 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class UserError(Exception):
    """A problem with the input that the user can fix; the message says how."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str = "") -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class ManifestError(UserError):
    """The manifest is invalid: names the file, the step and the key at fault."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str,
        step: str | None = None,
        key: str | None = None,
        fix: str = "",
    ) -> None:
        self.file = str(file)
        self.step = step
        self.key = key
        where = self.file
        if step is not None:
            where += f": step '{step}'"
        if key is not None:
            where += f", key '{key}'"
        super().__init__(f"{where}: {message}", fix=fix)


class CycleError(ManifestError):
    """The steps' dependencies form a cycle; `cycle` lists it in order, first step repeated last."""

    def __init__(self, cycle: Sequence[str], *, file: Path | str) -> None:
        self.cycle = tuple(cycle)
        super().__init__(
            "dependency cycle (each step depends on the next): " + " -> ".join(self.cycle),
            file=file,
            step=self.cycle[0],
            key="depends_on",
            fix="remove one of these depends_on entries so the steps form a DAG",
        )


class TargetError(UserError):
    """The requested target cannot be built on this machine; the message names the fix."""


class LockBusyError(UserError):
    """Another build holds the workspace lock and --no-wait was given."""


class InterruptedBuild(Exception):  # noqa: N818 - it is a signal, not an error
    """Raised inside the executor when SIGINT or SIGTERM arrives; carries the exit code."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by signal {signum}")
