"""Sessions for this workspace, generated from build.toml by buildlib.

    nox -l                                    # every session, one line each
    nox -s "build-3.12(mode='production')"    # the whole graph, in parallel
    nox -s verify                             # check the artifacts
    nox -s tests                              # the test suite
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # buildlib is imported from the source tree to define sessions

from buildlib.integrations.nox_sessions import register  # noqa: E402

nox.options.default_venv_backend = "none"

register(nox, ROOT / "build.toml")
nox.options.sessions = ["build-3.12(mode='development')"]
