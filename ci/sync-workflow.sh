#!/usr/bin/env bash
# Copy the canonical workflow (ci/workflows/build.yml) to where GitHub reads it
# (.github/workflows/build.yml), byte for byte.
#   ci/sync-workflow.sh          copy it (atomically: temp file, then rename)
#   ci/sync-workflow.sh --check  exit 1, changing nothing, when the copy differs
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/ci/workflows/build.yml"
dst="$root/.github/workflows/build.yml"

case "${1:-}" in
  --check)
    if cmp -s "$src" "$dst"; then
      exit 0
    fi
    echo "error: $dst differs from $src" >&2
    echo "  fix: run ci/sync-workflow.sh (edit only ci/workflows/build.yml)" >&2
    exit 1
    ;;
  "")
    mkdir -p "$(dirname "$dst")"
    tmp="$(mktemp "$dst.XXXXXX")"
    cp "$src" "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$dst"
    echo "synced $dst"
    ;;
  *)
    echo "usage: ci/sync-workflow.sh [--check]" >&2
    exit 2
    ;;
esac
