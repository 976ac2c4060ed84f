#!/usr/bin/env bash
# Regenerates the C code for proto/fjord/v1/*.proto with protoc-c.
#
#   tools/clients/c/codegen.sh OUTDIR    write OUTDIR/fjord/v1/*.pb-c.[ch]
#
# The committed copy lives in tools/clients/c/generated (so: codegen.sh tools/clients/c/generated).
# Needs protoc-c (Debian: protobuf-c-compiler; standalone, protoc itself is not needed). The output
# embeds protoc-c's version checks, so `tools/codegen.sh --check` only compares equal with the same
# protoc-c release (Debian 12: 1.4.1).
#
# Workaround: protoc-c before 1.5.0 refuses proto3 files with `optional` fields ("code generator
# --c_out hasn't been updated to support optional fields in proto3"), and records.proto uses them
# for the RecordBatch header and for Record.key/value. So records.proto is compiled from a copy
# rewritten to proto2: `syntax = "proto2"` and `optional` on its two unlabelled fields
# (Record.timestamp_delta, RecordHeader.key). The wire format is identical (proto3 `optional` is
# proto2 `optional`; the two fields are varint/string either way); the only visible difference is
# that the generated structs have has_timestamp_delta and a NULL-able RecordHeader.key. The other
# files are compiled unchanged.
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

command -v protoc-c >/dev/null || { echo "codegen: protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 3; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/proto"
(cd "$root/proto" && find . -name '*.proto' | sed 's|^\./||' | sort) > "$tmp/list"
while read -r f; do
    mkdir -p "$tmp/proto/$(dirname "$f")"
    cp "$root/proto/$f" "$tmp/proto/$f"
done < "$tmp/list"

rec="$tmp/proto/fjord/v1/records.proto"
sed -i -e 's/^syntax = "proto3";$/syntax = "proto2";/' \
       -e 's/^\(  \)\(sint64 timestamp_delta = 1;\)$/\1optional \2/' \
       -e 's/^\(  \)\(string key = 1;\)$/\1optional \2/' "$rec"
# Fail loudly if records.proto changes so that the rewrite no longer covers every field.
grep -q '^syntax = "proto2";$' "$rec" || { echo "codegen: records.proto rewrite failed (syntax)" >&2; exit 1; }
if grep -nE '^\s+(double|float|u?int(32|64)|s(int|fixed)(32|64)|fixed(32|64)|bool|string|bytes|[A-Z][A-Za-z0-9_.]*)\s+[a-z_0-9]+\s*=\s*[0-9]+' "$rec"; then
    echo "codegen: records.proto has unlabelled fields the proto2 rewrite does not handle (above)" >&2
    exit 1
fi

mkdir -p "$tmp/out"
(cd "$tmp/proto" && protoc-c --c_out="$tmp/out" $(cat "$tmp/list"))

rm -rf "$out/fjord"
cp -R "$tmp/out/fjord" "$out/fjord"
