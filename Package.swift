// swift-tools-version: 6.1
//
// Fjord: a commit-log broker for Swift servers.
//
// Module map (each folder under Sources/ is one module):
//   CFjordCRC32C     hardware-accelerated CRC32C (SSE4.2 / ARMv8 CRC), C
//   FjordProto       Swift code generated from proto/ (committed; tools/codegen.sh regenerates it)
//   FjordRecords     the record-batch format: layout, builder, validator, views
//   FjordWire        the frame codec of the wire protocol (NIOCore only)
//   FjordStorage     partition logs: segments, indexes, recovery, retention (no networking)
//   FjordCLI         the `fjord` executable (log dump, bench)
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "fjord",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fjord", targets: ["FjordCLI"]),
        .library(name: "FjordRecords", targets: ["FjordRecords"]),
        .library(name: "FjordStorage", targets: ["FjordStorage"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(name: "CFjordCRC32C"),
        .target(
            name: "FjordProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FjordRecords",
            dependencies: [
                "CFjordCRC32C",
                "FjordProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FjordWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FjordStorage",
            dependencies: [
                "FjordRecords",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "FjordCLI",
            dependencies: [
                "FjordRecords",
                "FjordStorage",
                "FjordProto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FjordRecordsTests",
            dependencies: [
                "FjordRecords", "FjordProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FjordStorageTests",
            dependencies: [
                "FjordStorage", "FjordRecords", "FjordProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FjordWireTests",
            dependencies: [
                "FjordWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FjordCLITests",
            dependencies: [
                "FjordRecords", "FjordStorage",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
