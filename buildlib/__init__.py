"""buildlib: a build orchestrator for polyglot workspaces.

The pipeline is: load the manifest -> resolve the graph -> plan -> execute -> verify -> report.
Each stage lives in the module named after it; nothing here knows which project it builds.
"""

from __future__ import annotations

__version__ = "0.1.0"
