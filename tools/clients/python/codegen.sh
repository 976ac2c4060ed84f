#!/usr/bin/env bash
# Generates the Python client's code from proto/fjord/v1/*.proto.
#
#   tools/clients/python/codegen.sh [OUT_DIR]
#
# OUT_DIR (default: tools/clients/python/fjord_client) receives the package `fjord/`:
#   fjord/__init__.py, fjord/v1/__init__.py   empty package markers
#   fjord/v1/*_pb2.py, *_pb2.pyi              protoc --python_out and --pyi_out (type stubs, for
#                                             mypy and editors), imports made package-relative
#   fjord/v1/error_codes.py                   the error-code table (code, name, retriable, doc)
#                                             read from the comments of errors.proto
# Everything under fjord_client/fjord/ is generated; compare a fresh run with
#   diff -r -x __pycache__ "$OUT_DIR/fjord" tools/clients/python/fjord_client/fjord
# Needs protoc (3.21 is what the committed code was made with) and python3 (stdlib only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-"$here/fjord_client"}
mkdir -p "$out"
out=$(cd "$out" && pwd)

command -v protoc >/dev/null || { echo "codegen (python): protoc not found" >&2; exit 3; }

rm -rf "$out/fjord"
mkdir -p "$out/fjord/v1"
protos=$(cd "$root/proto" && find fjord/v1 -name '*.proto' | LC_ALL=C sort)
(cd "$root/proto" && protoc -I . --python_out="$out" --pyi_out="$out" $protos)
# protoc writes `from fjord.v1 import x_pb2`, which needs fjord_client/ itself on sys.path; make the
# imports relative so the package works from wherever fjord_client is imported.
for f in "$out"/fjord/v1/*_pb2.py "$out"/fjord/v1/*_pb2.pyi; do
    sed -i 's/^from fjord\.v1 import /from . import /' "$f"
done
: > "$out/fjord/__init__.py"
: > "$out/fjord/v1/__init__.py"
python3 "$here/gen_error_codes.py" "$root/proto/fjord/v1/errors.proto" > "$out/fjord/v1/error_codes.py"
