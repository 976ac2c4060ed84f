#!/usr/bin/env bash
# Regenerates every file generated from proto/ and commits nothing.
#
#   tools/codegen.sh          regenerate Sources/FjordProto/Generated, the Python client's
#                             tools/clients/python/fjord_client/fjord and the C client's
#                             tools/clients/c/generated
#   tools/codegen.sh --check  regenerate into a temporary directory and fail if the tree differs
#
# Needs `protoc` (Debian: protobuf-compiler) and, for the C client, `protoc-c` (Debian:
# protobuf-c-compiler 1.4.1, the version the committed C code was made with; without it the C
# part is skipped with a message). protoc-gen-swift is taken from $PROTOC_GEN_SWIFT, from PATH,
# or built from the swift-protobuf checkout SwiftPM already resolved (about 2-3 minutes).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

check=0
[[ "${1:-}" == "--check" ]] && check=1

command -v protoc >/dev/null || { echo "codegen: protoc not found (apt-get install protobuf-compiler)" >&2; exit 3; }

plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}
if [[ -z "$plugin" ]]; then
    swift package resolve >/dev/null
    src="$root/.build/checkouts/swift-protobuf"
    echo "codegen: building protoc-gen-swift from $src (once)" >&2
    swift build --package-path "$src" --scratch-path "$root/.build-protoc-gen-swift" -c release \
        --product protoc-gen-swift >&2
    plugin="$root/.build-protoc-gen-swift/release/protoc-gen-swift"
fi

out_swift="$root/Sources/FjordProto/Generated"
target="$out_swift"
if ((check)); then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    target="$tmp/swift"
fi
mkdir -p "$target"
rm -f "$target"/*.pb.swift

protos=$(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd proto && protoc --plugin=protoc-gen-swift="$plugin" \
    --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores --swift_opt=UseAccessLevelOnImports=true \
    --swift_out="$target" $protos)

# The cross-language clients (tools/clients/README.md).
out_python="$root/tools/clients/python/fjord_client"
out_c="$root/tools/clients/c/generated"
target_python="$out_python"
target_c="$out_c"
if ((check)); then
    target_python="$tmp/python"
    target_c="$tmp/c"
fi
tools/clients/python/codegen.sh "$target_python"
c_done=0
if command -v protoc-c >/dev/null; then
    if ((!check)); then rm -rf "$out_c/fjord"; fi
    tools/clients/c/codegen.sh "$target_c"
    c_done=1
else
    echo "codegen: protoc-c not found (apt-get install protobuf-c-compiler); the C client's code was not regenerated" >&2
fi

if ((check)); then
    stale=0
    if ! diff -r "$target" "$out_swift"; then
        echo "codegen: Sources/FjordProto/Generated is stale" >&2
        stale=1
    fi
    if ! diff -r -x __pycache__ "$target_python/fjord" "$out_python/fjord"; then
        echo "codegen: tools/clients/python/fjord_client/fjord is stale" >&2
        stale=1
    fi
    if ((c_done)) && ! diff -r "$target_c" "$out_c"; then
        echo "codegen: tools/clients/c/generated is stale" >&2
        stale=1
    fi
    if ((stale)); then
        echo "codegen: run tools/codegen.sh and commit the result" >&2
        exit 1
    fi
    echo "codegen: generated code is current (swift, python$( ((c_done)) && echo ", c"))"
fi
