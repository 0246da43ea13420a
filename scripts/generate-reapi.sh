#!/usr/bin/env bash
# Generates buildlib/cache/_reapi/: Python protobuf modules and .pyi stubs for the Remote Execution
# API v2 (REAPI), i.e. build/bazel/remote/execution/v2/remote_execution.proto and its import
# build/bazel/semver/semver.proto. Messages only: no gRPC service stubs.
#
# Provenance:
#   .proto files  Go module github.com/bazelbuild/remote-apis @ $REMOTE_APIS_VERSION (it has
#                 no tagged versions; a pseudo-version pins the commit), downloaded through
#                 the Go module proxy and checked against the checksum database by
#                 `go mod download`. Copyright The Bazel Authors, Apache License 2.0 (copied
#                 to buildlib/cache/_reapi/LICENSE).
#   google/api, google/longrunning, google/rpc .proto files: the PyPI package
#                 googleapis-common-protos ($GOOGLEAPIS_SPEC, Apache-2.0), which ships them
#                 next to its _pb2 modules; at run time the generated code imports those
#                 modules (google.api.annotations_pb2, google.longrunning.operations_pb2,
#                 google.rpc.status_pb2) from that package, so install it beside protobuf.
#   google/protobuf .proto files and protoc: the PyPI package grpcio-tools ($GRPCIO_TOOLS_SPEC,
#                 `python -m grpc_tools.protoc`), installed into a throwaway venv.
# The generated `from build.bazel...` imports (and module names) become buildlib.cache._reapi.build...
# The descriptors keep their proto names (build/bazel/remote/execution/v2/...): a different
# copy of the same .proto (another package's REAPI) cannot be loaded into the same process.
#
# Regenerate (needs go, python3 with venv, and the network to PyPI and the Go module proxy):
#   bash scripts/generate-reapi.sh
# To move to a newer REAPI, set REMOTE_APIS_VERSION to what
#   go mod download -json github.com/bazelbuild/remote-apis@latest
# reports as "Version" (run in an empty directory), then regenerate and review the diff.
# The generated code requires a protobuf runtime no older than the protoc that wrote it:
# grpcio-tools 1.85.1 carries libprotoc 35.1, i.e. protobuf (Python) >= 7.35.1, < 8.
set -euo pipefail

REMOTE_APIS_MODULE="github.com/bazelbuild/remote-apis"
REMOTE_APIS_VERSION="v0.0.0-20260908115904-76ddd98e1f92"
GRPCIO_TOOLS_SPEC="grpcio-tools==1.85.1"
GOOGLEAPIS_SPEC="googleapis-common-protos==1.76.0"
PYTHON="${PYTHON:-python3}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/buildlib/cache/_reapi"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. The REAPI .proto files, from the Go module cache (downloaded if missing).
module_json="$(cd "$tmp" && "$GO" mod download -json "$REMOTE_APIS_MODULE@$REMOTE_APIS_VERSION")"
module_dir="$("$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])' \
  <<<"$module_json")"
protos=(build/bazel/remote/execution/v2/remote_execution.proto build/bazel/semver/semver.proto)
include="$tmp/include"
for proto in "${protos[@]}"; do
  mkdir -p "$include/$(dirname "$proto")"
  cp "$module_dir/$proto" "$include/$proto"
done

# 2. protoc and the google/* protos, from PyPI into a throwaway venv.
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "$GRPCIO_TOOLS_SPEC" "$GOOGLEAPIS_SPEC"
site="$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
for package in api rpc; do
  mkdir -p "$include/google/$package"
  cp "$site/google/$package/"*.proto "$include/google/$package/"
done
# googleapis-common-protos ships google/longrunning/operations.proto as operations_proto.proto;
# the descriptor inside is still named google/longrunning/operations.proto, and the module
# google.longrunning.operations_pb2 loads it.
mkdir -p "$include/google/longrunning"
cp "$site/google/longrunning/operations_proto.proto" "$include/google/longrunning/operations.proto"

# 3. Generate, rewrite the imports of the REAPI's own modules, and replace buildlib/cache/_reapi.
gen="$tmp/gen"
mkdir -p "$gen"
(cd "$include" && "$tmp/venv/bin/python" -m grpc_tools.protoc -I . -I "$site/grpc_tools/_proto" \
  --python_out="$gen" --pyi_out="$gen" "${protos[@]}")
# Also the module name given to the message classes (their __module__, which pickle uses).
find "$gen" \( -name '*.py' -o -name '*.pyi' \) -exec sed -i -E \
  -e 's/^(from|import) build\.bazel\./\1 buildlib.cache._reapi.build.bazel./' \
  -e "s/(Messages\(DESCRIPTOR, )'build\.bazel\./\1'buildlib.cache._reapi.build.bazel./" \
  {} +
if grep -rnE "^(from|import) build\b|DESCRIPTOR, 'build\." "$gen"; then
  echo "error: a reference to the module build.* was left unrewritten (above)" >&2
  exit 1
fi
find "$gen" -type d -exec touch {}/__init__.py \;
cp "$module_dir/LICENSE" "$gen/LICENSE"
rm -rf "$out"
cp -R "$gen" "$out"
chmod -R u+w,a+rX "$out"
echo "generated $(find "$out" -name '*_pb2.py' | wc -l) modules in ${out#"$root"/}" \
  "from $REMOTE_APIS_MODULE@$REMOTE_APIS_VERSION"
