#!/usr/bin/env bash
# Install what the test suite drives for real, idempotently, so `nox -s tests` runs every
# test on a fresh machine (it calls this script first; so do .ci/run and the `tests` job of
# ci/workflows/build.yml):
#   Debian packages    nginx (remote cache), chromium (HTML page), shellcheck (workflow
#                      lint), strace (`buildlib audit`), tmux (the terminal tests):
#                      apt-get, as root or with sudo -n
#   actionlint         Go module, pinned, `go install` into $(go env GOPATH)/bin
#   check-jsonschema   PyPI, into the Python given as $PYTHON (default: python3)
#   bazel-remote       built by ci/build-bazel-remote.sh from the Go module proxy (~2 min, once)
# Each is skipped when the wanted version is already there. What it cannot install is listed
# at the end with the one command that installs it, and the script exits 1.
#   --check   install nothing: only list what is missing (exit 1 if anything is)
# The last line of stdout is `BAZEL_REMOTE=<path>` when bazel-remote is there.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION="v1.7.12"
CHECK_JSONSCHEMA_SPEC="check-jsonschema>=0.29"
PYTHON="${PYTHON:-python3}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
APT_PACKAGES=(nginx chromium shellcheck strace tmux)

check_only=0
if [ "${1:-}" = "--check" ]; then
  check_only=1
fi

missing=()   # "what: the command that installs it"
say() { echo "$@" >&2; }

has_package_tool() {
  case "$1" in
    nginx) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] ;;
    chromium) [ -x /usr/bin/chromium ] ;;  # tests/test_html_report.py runs Debian's, headless
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# -- Debian packages ------------------------------------------------------------------------
need_apt=()
for package in "${APT_PACKAGES[@]}"; do
  has_package_tool "$package" || need_apt+=("$package")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
  fi
  can_apt=0
  if [ "$check_only" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if [ -z "$sudo" ] || sudo -n true 2>/dev/null; then
      can_apt=1
    fi
  fi
  if [ "$can_apt" = 1 ]; then
    say "installing ${need_apt[*]} (apt-get)"
    if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null; then
      :
    else
      say "warning: apt-get install ${need_apt[*]} failed"
    fi
  fi
  still=()
  for package in "${need_apt[@]}"; do
    has_package_tool "$package" || still+=("$package")
  done
  if [ ${#still[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
      missing+=("${still[*]}: sudo apt-get install -y ${still[*]}")
    else
      missing+=("${still[*]}: install them with this system's package manager")
    fi
  fi
fi

# -- Go tools -------------------------------------------------------------------------------
go_fix="install Go 1.22 or newer from https://go.dev/dl/ (tar -C /usr/local -xzf go*.tar.gz)"
if [ -x "$GO" ]; then
  gobin="$("$GO" env GOBIN)"
  gobin="${gobin:-$("$GO" env GOPATH)/bin}"
  if [ "$("$gobin/actionlint" --version 2>/dev/null | head -n 1)" = "$ACTIONLINT_VERSION" ]; then
    :
  elif [ "$check_only" = 0 ] && "$GO" install \
      "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2; then
    say "actionlint $ACTIONLINT_VERSION: installed in $gobin"
  else
    missing+=("actionlint: $GO install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION")
  fi
  case ":$PATH:" in
    *":$gobin:"*) ;;
    *) say "note: $gobin is not on PATH; tests/test_workflow.py also looks there" ;;
  esac
else
  missing+=("go (builds actionlint and bazel-remote; cross-compiles test binaries): $go_fix")
fi

# -- check-jsonschema -----------------------------------------------------------------------
if ! "$PYTHON" -m check_jsonschema --version >/dev/null 2>&1; then
  if [ "$check_only" = 1 ] || ! "$PYTHON" -m pip install --quiet --disable-pip-version-check \
      "$CHECK_JSONSCHEMA_SPEC" >&2; then
    missing+=("check-jsonschema: $PYTHON -m pip install '$CHECK_JSONSCHEMA_SPEC'")
  fi
fi

# -- bazel-remote ---------------------------------------------------------------------------
bazel_remote=""
bazel_remote_version="$(sed -n 's/^BAZEL_REMOTE_VERSION="\(.*\)"$/\1/p' ci/build-bazel-remote.sh)"
wanted_bazel_remote="${BUILDLIB_TOOLS_DIR:-$HOME/.cache/buildlib-ci}/bazel-remote-$bazel_remote_version"
if [ -x "$GO" ]; then
  if [ "$check_only" = 1 ]; then
    if [ -x "$wanted_bazel_remote" ]; then
      bazel_remote="$wanted_bazel_remote"
    else
      missing+=("bazel-remote: bash ci/build-bazel-remote.sh")
    fi
  else
    if [ ! -x "$wanted_bazel_remote" ]; then
      say "building bazel-remote (once per machine, about 2 minutes)"
    fi
    if bazel_remote="$(GO="$GO" bash ci/build-bazel-remote.sh | tail -n 1)"; then
      :
    else
      bazel_remote=""
      missing+=("bazel-remote: bash ci/build-bazel-remote.sh (it failed; its output is above)")
    fi
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  say ""
  say "missing for the test suite (some tests would be skipped):"
  for line in "${missing[@]}"; do
    say "  ${line%%: *}"
    say "    install: ${line#*: }"
  done
  exit 1
fi
say "test tools: all present (${APT_PACKAGES[*]} actionlint check-jsonschema bazel-remote)"
if [ -n "$bazel_remote" ]; then
  echo "BAZEL_REMOTE=$bazel_remote"
fi
