// swift-tools-version: 6.1
//
// libFuzzer targets for the decoders a remote peer reaches (issue: hardening). A package of its
// own, so the project's normal `swift build` / `swift test` never builds them; `tools/fuzz/run.sh`
// builds them with `--sanitize=fuzzer --sanitize=address` and runs them on the checked-in corpus.
//
//   fuzz-frames    the frame decoder (FjordWire.FrameDecoder), fed in arbitrary chunks
//   fuzz-requests  every request message a client may send, first byte picks the type (handshake
//                  included), decoded from a ByteBuffer as the broker does, re-encoded and compared
//   fuzz-produce   ProduceRequestView parsing, the batch validator the log runs before appending,
//                  and a full record walk of every batch the validator accepts
//
// Each binary, run with FJORD_FUZZ_WRITE_SEEDS=DIR, writes its seed inputs (valid messages built
// with the project's own builders) into DIR and exits: that is how corpus/ was made.
import PackageDescription

let settings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "fjord-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "fjord", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        .target(
            name: "FjordFuzzSupport",
            dependencies: [
                .product(name: "FjordWire", package: "fjord"),
                .product(name: "FjordProtocol", package: "fjord"),
                .product(name: "FjordRecords", package: "fjord"),
                .product(name: "FjordProto", package: "fjord"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: settings
        ),
        .executableTarget(name: "fuzz-frames", dependencies: ["FjordFuzzSupport"], path: "Sources/FuzzFrames", swiftSettings: settings),
        .executableTarget(name: "fuzz-requests", dependencies: ["FjordFuzzSupport"], path: "Sources/FuzzRequests", swiftSettings: settings),
        .executableTarget(name: "fuzz-produce", dependencies: ["FjordFuzzSupport"], path: "Sources/FuzzProduce", swiftSettings: settings),
    ]
)
