"""`python -m buildlib`: the engine's entry point, used by every nox session."""

import atexit
import os
import sys

# The engine writes its own bytecode even when PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines and many container images): without it every build starts by
# compiling all of buildlib again, ~50 ms of a ~150 ms no-op build. Where the package
# directory is read-only Python skips the write silently; nothing else changes.
sys.dont_write_bytecode = False

from buildlib.cli import main  # noqa: E402

code = main()
# Leave without the interpreter's teardown, which only frees what the build allocated
# (8-12 ms after a 500-step build). Everything the engine writes is closed by the time
# main returns and no non-daemon thread is left; exit handlers (the live display puts
# the cursor back in one) still run, and the standard streams are flushed here.
atexit._run_exitfuncs()  # what a normal exit would run first; no public name for it
try:
    sys.stdout.flush()
    sys.stderr.flush()
except (BrokenPipeError, ValueError):  # the reader went away: nothing more to say
    pass
os._exit(code)
