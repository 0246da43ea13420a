"""Looking after the local cache by hand: `clean --cache` empties it, `prune` shrinks it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from buildlib.cache.cas import PruneResult
from buildlib.cache.config import CacheConfig, parse_size, resolve_cache_dir


def clear_cache(config: CacheConfig, *, dry_run: bool) -> int:
    """Empty the local store (unless `dry_run`); returns the bytes it held."""
    from buildlib.cache.store import StepCache

    store = StepCache(config)
    size = store.size()
    if not dry_run:
        store.clear()
    return int(size)


def prune_cache(
    max_size: str, *, cache_dir: Path | None, environ: Mapping[str, str]
) -> tuple[Path, PruneResult]:
    """Shrink the local store to `max_size` (e.g. "2G"), least recently used first."""
    from buildlib.cache.store import StepCache

    limit = parse_size(max_size)
    store = StepCache(
        CacheConfig(
            local_dir=resolve_cache_dir(cache_dir, environ), max_size=limit, remote_read_only=True
        )
    )
    return store.local.root, store.prune(limit)
