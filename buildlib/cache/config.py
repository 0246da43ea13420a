"""Where the cache lives and how big it may grow: flags over environment over manifest.

Kept apart from `store.py` so a build whose steps are all up to date never imports
the store, its archive code or platformdirs.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

from buildlib.core.errors import UserError
from buildlib.core.records import record
from buildlib.workspace.manifest import Manifest

DEFAULT_MAX_SIZE = 5 << 30


@record
class CacheConfig:
    """`local_dir` is --cache-dir; None: see `resolve_cache_dir`."""

    local_dir: Path | None = None
    max_size: int = DEFAULT_MAX_SIZE
    remote_url: str | None = None
    remote_header: str | None = None  # "Name: value"; never printed
    remote_read_only: bool = False
    remote_timeout: float = 5.0
    signing_key: str | None = None  # BUILDLIB_CACHE_SIGNING_KEY; never printed
    trusted_keys: tuple[str, ...] = ()  # [cache] trusted_keys


SIGNING_KEY_VARIABLE = "BUILDLIB_CACHE_SIGNING_KEY"
HEADER_VARIABLE = "BUILDLIB_REMOTE_HEADER"
REMOTE_VARIABLE = "BUILDLIB_REMOTE_CACHE"


def engine_secrets(manifest: Manifest, environ: Mapping[str, str]) -> set[str]:
    """The variables that hold the cache's credentials: the engine's, never a step's.

    The remote's header (BUILDLIB_REMOTE_HEADER and the variable `[cache]
    remote_header_env` names), the signing key, and the remote URL when it carries a
    `user:password@`. The executor removes them from every step's environment, so no
    build script or package's code can read the token that writes the shared cache.
    """
    names = {HEADER_VARIABLE, SIGNING_KEY_VARIABLE}
    if manifest.cache.remote_header_env:
        names.add(manifest.cache.remote_header_env)
    if "@" in environ.get(REMOTE_VARIABLE, "").partition("://")[2].partition("/")[0]:
        names.add(REMOTE_VARIABLE)
    return names


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    match = SIZE.match(text)
    if not match:
        raise UserError(f"invalid size {text!r}", fix="write e.g. 500M, 2G or 1073741824")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = number * (1 << (10 * " kmgt".index(unit or " ")))
    if not size < MAX_SIZE:  # also inf, from a number of 300 digits
        raise UserError(f"invalid size {text!r}: over 1 EiB", fix="write e.g. 500M, 2G or 10T")
    return int(size)


MAX_SIZE = float(1 << 60)


def parse_timeout(variable: str, text: str) -> float:
    """A number of seconds from the environment: finite and positive, or a UserError."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_TIMEOUT:  # nan, inf, 0 and below fail this too
        raise UserError(
            f"{variable}={text!r} is not a number of seconds",
            fix=f"set it to a number above 0 and up to {MAX_TIMEOUT:g} (the default is 5)",
        )
    return seconds


MAX_TIMEOUT = 3600.0


def resolve_cache_dir(explicit: Path | None, environ: Mapping[str, str]) -> Path:
    """The local cache directory: `explicit` (--cache-dir), else $BUILDLIB_CACHE_DIR, else
    the user cache directory (~/.cache/buildlib on Linux). The one place that decides."""
    if explicit is not None:
        return explicit
    if environ.get("BUILDLIB_CACHE_DIR"):
        return Path(environ["BUILDLIB_CACHE_DIR"])
    import platformdirs  # only when nothing above says where

    return Path(platformdirs.user_cache_dir("buildlib"))


def cache_location_options(parser: argparse.ArgumentParser) -> None:
    """--cache-dir and --remote-cache, for every command that reaches the cache: the flags
    `cache_config` reads, declared once."""
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="local cache directory (default: $BUILDLIB_CACHE_DIR or the user cache directory)",
    )
    parser.add_argument(
        "--remote-cache",
        metavar="URL",
        help="Bazel HTTP cache URL "
        "(default: $BUILDLIB_REMOTE_CACHE or the manifest's [cache].remote)",
    )


def cache_config(
    manifest: Manifest,
    environ: Mapping[str, str],
    *,
    cache_dir: Path | None,
    remote_url: str | None,
    read_only: bool,
) -> CacheConfig:
    """Flags win over environment variables, which win over the manifest's [cache]."""
    # Resolved by the store when it opens (`resolve_cache_dir`): a no-op build never
    # needs the directory, nor platformdirs to find the default one.
    local = cache_dir
    remote = (
        remote_url
        if remote_url is not None
        else environ.get(REMOTE_VARIABLE, manifest.cache.remote)
    )
    header = environ.get(HEADER_VARIABLE) or (
        environ.get(manifest.cache.remote_header_env) if manifest.cache.remote_header_env else None
    )
    # Checked now, before any step: the store opens inside the first step that reaches
    # it, where a bad URL or key would fail that step instead of the configuration.
    if remote:
        from buildlib.cache.remote import check_url

        check_url(remote)
    signing_key = environ.get(SIGNING_KEY_VARIABLE) or None
    if signing_key:
        from buildlib.cache.signing import Signer

        Signer.from_text(signing_key)
    return CacheConfig(
        local_dir=local,
        max_size=parse_size(environ.get("BUILDLIB_CACHE_MAX_SIZE", str(DEFAULT_MAX_SIZE))),
        remote_url=remote or None,
        remote_header=header or None,
        remote_read_only=read_only
        or environ.get("BUILDLIB_REMOTE_READ_ONLY") == "1"
        or manifest.cache.remote_read_only,
        remote_timeout=parse_timeout(
            "BUILDLIB_REMOTE_TIMEOUT", environ.get("BUILDLIB_REMOTE_TIMEOUT", "5")
        ),
        signing_key=signing_key,
        trusted_keys=manifest.cache.trusted_keys,
    )
