"""The optional C accelerator only; everything else about the package is in pyproject.toml.

`optional=True`: without a C compiler the install still succeeds, and buildlib/filehash.py
uses its pure Python stat loop instead (same results, slower on large unchanged trees).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("buildlib._speedups", ["buildlib/_speedups.c"], optional=True)])
