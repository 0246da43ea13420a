"""Running a snippet where file permissions apply, even when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


def run_without_dac_override(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in this Python with permission checks in force. As root, setpriv
    (util-linux, on every Debian) drops the capabilities that let root read any file."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions do not apply")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
