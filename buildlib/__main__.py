"""`python -m buildlib`: the engine's entry point, used by every nox session."""

import sys

# The engine writes its own bytecode even when PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines and many container images): without it every build starts by
# compiling all of buildlib again, ~50 ms of a ~150 ms no-op build. Where the package
# directory is read-only Python skips the write silently; nothing else changes.
sys.dont_write_bytecode = False

from buildlib.cli import main  # noqa: E402

sys.exit(main())
