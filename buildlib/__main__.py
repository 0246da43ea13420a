"""`python -m buildlib`: the engine's entry point, used by every nox session."""

import sys

from buildlib.cli import main

# Process policy belongs to the process, not to the library: a job thread back from
# spawning or waiting needs the GIL for a few microseconds of bookkeeping, and with
# CPython's default 5 ms switch interval it can wait behind the other threads for most
# of that (500 `true` steps at -j 2: median wall 404 -> 356 ms, measured).
SWITCH_INTERVAL = 0.0005

sys.setswitchinterval(SWITCH_INTERVAL)
sys.exit(main())
