"""What the ecosystems buildlib knows leave in a workspace that is never a step's input.

The default of the manifest's `[workspace] exclude`: installed packages (npm's
node_modules), build trees (cargo's target, the dist of Vite and tsc), version control
and tool state (.git, .nox, .buildlib, __pycache__). A manifest that sets `exclude`
replaces the list, so a workspace with its own conventions says them there.
"""

from __future__ import annotations

DEFAULT_EXCLUDES: tuple[str, ...] = (
    "**/node_modules/**",
    "**/target/**",
    "**/dist/**",
    "**/.git/**",
    "**/.nox/**",
    "**/.buildlib/**",
    "**/__pycache__/**",
)
