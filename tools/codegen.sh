#!/usr/bin/env bash
# Regenerates every file generated from proto/ and commits nothing.
#
#   tools/codegen.sh          regenerate Sources/FjordProto (and the clients' code once they exist)
#   tools/codegen.sh --check  regenerate into a temporary directory and fail if the tree differs
#
# Needs `protoc` (Debian: protobuf-compiler). protoc-gen-swift is taken from $PROTOC_GEN_SWIFT,
# from PATH, or built from the swift-protobuf checkout SwiftPM already resolved (about 2-3 minutes).
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

if ((check)); then
    if ! diff -r "$target" "$out_swift"; then
        echo "codegen: Sources/FjordProto/Generated is stale; run tools/codegen.sh and commit the result" >&2
        exit 1
    fi
    echo "codegen: generated code is current"
fi
