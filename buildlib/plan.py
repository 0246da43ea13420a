"""The plan: every selected step made concrete for one mode and one target.

A plan is computed once, before anything runs; every field of a `PlannedStep` is
resolved here (templates filled, overrides applied, priority computed) so the
executor never re-derives anything on a scheduling pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from buildlib.targets import Target


@dataclass(frozen=True, kw_only=True)
class PlannedStep:
    name: str
    description: str
    group: str
    argv: tuple[str, ...]  # as written (templates filled); resolved with shutil.which at spawn
    cwd: Path  # absolute
    env: Mapping[str, str]  # the variables this step sets (mode + step + overrides), not os.environ
    env_inputs: tuple[str, ...]  # names read from the caller's environment; fingerprinted
    depends_on: tuple[str, ...]
    inputs: tuple[str, ...]  # glob patterns relative to the root
    exclude: tuple[str, ...]  # glob patterns relative to the root, plus the default excludes
    outputs: tuple[str, ...]  # paths or globs relative to the root, all inside it
    tools: tuple[str, ...]  # names of [tools] entries whose versions are fingerprinted
    retries: int
    cacheable: bool
    priority: float  # remaining critical path in seconds, this step included
    estimate: float  # expected duration in seconds (earlier builds, else 1.0)


@dataclass(frozen=True, kw_only=True)
class Plan:
    root: Path
    manifest_path: Path
    mode: str
    target: Target
    steps: Mapping[str, PlannedStep]  # in topological order
    requested: tuple[str, ...]
    tool_commands: Mapping[str, tuple[str, ...]]  # tool name -> argv printing its version
