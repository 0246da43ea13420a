"""The optional C accelerator only; everything else about the package is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds, and
buildlib/incremental/statscan.py uses its pure Python stat loop and directory walk instead
(same results, slower on large unchanged trees).
The module uses POSIX calls (fstatat, pthreads), so Windows always takes the Python loop.
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "buildlib.incremental._speedups", ["buildlib/incremental/_speedups.c"], optional=True
        )
    ]
    if os.name == "posix"
    else []
)
