import sys

from buildlib.cli import main

sys.exit(main())
