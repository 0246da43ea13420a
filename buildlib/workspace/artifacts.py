"""Declared artifacts: what a build must leave behind, resolved for one mode and target.

The manifest's `[[artifact]]` tables become `Artifact` values here (templates filled);
`verify.py` checks them. Kept apart so the manifest loader and the verifier share
one definition without importing each other.
"""

from __future__ import annotations

import enum
from pathlib import Path

from buildlib.core.records import record


class ArtifactKind(enum.Enum):
    EXISTS = "exists"  # the path exists (file or directory)
    # A binary of the target's format and machine; on the host, `run` must succeed.
    EXECUTABLE = "executable"
    HTML = "html"  # an HTML file whose referenced scripts and stylesheets exist
    COMMAND = "command"  # `run` must exit 0 (and print `expect`), on the host only


@record
class Artifact:
    path: Path  # absolute
    rel: str  # relative to the workspace root, as declared (templates filled)
    step: str  # the step that produces it; named when it is missing or broken
    kind: ArtifactKind
    run: tuple[str, ...] = ()  # argv, `{path}` already filled with the absolute path
    expect: str = ""  # substring that stdout must contain, if not empty
