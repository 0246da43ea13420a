#!/usr/bin/env bash
# Install the linters tests/test_workflow.py runs on the CI workflow, idempotently:
#   actionlint        Go module, pinned, built through the Go module proxy into $(go env GOPATH)/bin
#   check-jsonschema  PyPI, into the Python given as $PYTHON (default: python3)
#   ShellCheck        Debian package; actionlint lints run: scripts with it when on PATH
# Each is skipped when the wanted version is already there. Called by .ci/run and the
# `tests` job of ci/workflows/build.yml.
set -euo pipefail

ACTIONLINT_VERSION="v1.7.12"
CHECK_JSONSCHEMA_SPEC="check-jsonschema>=0.29"
PYTHON="${PYTHON:-python3}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

gobin="$("$GO" env GOBIN)"
gobin="${gobin:-$("$GO" env GOPATH)/bin}"
if [ "$("$gobin/actionlint" --version 2>/dev/null | head -n 1)" = "$ACTIONLINT_VERSION" ]; then
  echo "actionlint $ACTIONLINT_VERSION: present"
else
  "$GO" install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  echo "actionlint $ACTIONLINT_VERSION: installed in $gobin"
fi
case ":$PATH:" in
  *":$gobin:"*) ;;
  *) echo "note: $gobin is not on PATH; tests/test_workflow.py also looks there" ;;
esac

if "$PYTHON" -m check_jsonschema --version >/dev/null 2>&1; then
  echo "check-jsonschema: present"
else
  "$PYTHON" -m pip install --quiet "$CHECK_JSONSCHEMA_SPEC"
  echo "check-jsonschema: installed"
fi

if command -v shellcheck >/dev/null 2>&1; then
  echo "shellcheck: present"
else
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
  fi
  if $sudo apt-get update -qq && $sudo apt-get install -y -qq shellcheck >/dev/null; then
    echo "shellcheck: installed"
  else
    echo "warning: could not install shellcheck; actionlint will not lint run: scripts" >&2
  fi
fi
