"""smallhash: the built-in sha256 for short strings, and start-up without OpenSSL."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildlib.core.smallhash import sha256_hex


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 40, "é".encode() * 1000])
def test_same_digest_as_hashlib(data: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [2046, 2047, 2048, 4094, 4095, 4096, 10_000])
def test_data_fed_in_pieces_hashes_as_one(size: int) -> None:
    # Longer data goes in 2,047-byte pieces (to keep the GIL); the boundaries must not show.
    data = bytes(i % 251 for i in range(size))
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


@given(st.binary(max_size=9000))
def test_any_data_hashes_as_hashlib_does(data: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


def test_the_modules_of_a_no_op_build_do_not_load_openssl() -> None:
    # OpenSSL's import (~4 ms) is for hashing files; a no-op build hashes none.
    code = (
        "import sys; import buildlib.cli, buildlib.commands, buildlib.run.caching_gate, "
        "buildlib.incremental.fingerprint, buildlib.incremental.toolversions, buildlib.report.writers, buildlib.run.executor; "
        "print(sorted(m for m in ('_hashlib', 'hashlib', 'ssl') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
