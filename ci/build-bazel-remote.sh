#!/usr/bin/env bash
# Build bazel-remote (the remote cache the tests in tests/bazel_remote_server.py run for real)
# from the Go module proxy, once per machine:
#   ${BUILDLIB_TOOLS_DIR:-$HOME/.cache/buildlib-ci}/bazel-remote-v2.6.2
# The build (~2 min on 2 cores) happens in a throwaway module: `go install ...@v2.6.2` fails
# here (it asks the proxy for the module's version list, which answers 403). It is skipped
# when the binary is there and is the wanted version (`go version -m`; without go, `--help`
# must run: bazel-remote has no --version flag). Quiet: go's output is shown only when the
# build fails. The last line of stdout is the binary's path:
#   export BAZEL_REMOTE="$(bash ci/build-bazel-remote.sh | tail -n 1)"
# Called by .ci/run, and by tests/bazel_remote_server.py when the binary is missing.
set -euo pipefail

BAZEL_REMOTE_MODULE="github.com/buchgr/bazel-remote/v2"
BAZEL_REMOTE_VERSION="v2.6.2"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

tools_dir="${BUILDLIB_TOOLS_DIR:-$HOME/.cache/buildlib-ci}"
binary="$tools_dir/bazel-remote-$BAZEL_REMOTE_VERSION"

is_wanted() {
  [ -x "$binary" ] || return 1
  if [ -x "$GO" ]; then
    "$GO" version -m "$binary" 2>/dev/null | awk -v m="$BAZEL_REMOTE_MODULE" \
      -v v="$BAZEL_REMOTE_VERSION" '$1 == "mod" && $2 == m && $3 == v {f = 1} END {exit !f}' \
      || return 1
  fi
  "$binary" --help >/dev/null 2>&1
}

if ! is_wanted; then
  mkdir -p "$tools_dir"
  # One build at a time (pytest-xdist workers may all get here): wait for the lock, then look
  # again. Without flock(1) (macOS), concurrent builds are safe, only wasteful.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools_dir/.bazel-remote.lock"
    flock 9
  fi
fi
if ! is_wanted; then
  work="$(mktemp -d "$tools_dir/.build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  log="$work/build.log"
  # `&&`, not lines: set -e does not apply inside an `if` condition.
  if ! (
    cd "$work" &&
      "$GO" mod init buildlib-tools/bazel-remote &&
      "$GO" get "$BAZEL_REMOTE_MODULE@$BAZEL_REMOTE_VERSION" &&
      CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-X main.gitTags=$BAZEL_REMOTE_VERSION" \
        -o "$work/bazel-remote" "$BAZEL_REMOTE_MODULE"
  ) >"$log" 2>&1; then
    echo "error: building bazel-remote $BAZEL_REMOTE_VERSION failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  # Same directory, so the rename is atomic: a concurrent run sees the old state or the new.
  mv -f "$work/bazel-remote" "$binary"
  if ! is_wanted; then
    echo "error: the bazel-remote just built at $binary does not run" >&2
    exit 1
  fi
fi
echo "$binary"
