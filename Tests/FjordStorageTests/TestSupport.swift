import FjordProto
import FjordRecords
import FjordStorage
import Foundation
import SwiftProtobuf
import Synchronization
import SystemPackage

/// A configuration with tiny segments and a dense index, so tests roll many segments quickly.
func smallConfiguration() -> LogConfiguration {
    var configuration = LogConfiguration()
    configuration.segmentBytes = 4096
    configuration.indexIntervalBytes = 256
    return configuration
}

/// Runs `body` with a fresh real directory under the temporary directory, removed afterwards.
func inTemporaryDirectory(_ body: (FilePath) async throws -> Void) async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-storage-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    try await body(FilePath(path))
}

/// Every record value from the log start to the log end, read through `read(from:maxBytes:)` and
/// decoded with the generated protobuf code, as a client in any language would.
func values(_ log: PartitionLog) async throws -> [String] {
    var result: [String] = []
    var offset = log.logStartOffset
    while offset < log.logEndOffset {
        let read = try await log.read(from: offset, maxBytes: 1 << 16)
        try read.records.withUnsafeBytes { bytes in
            var iterator = FramedBatchIterator(bytes)
            while let framed = iterator.next() {
                let batch = try Fjord_V1_RecordBatch(serializedBytes: Array(framed.batch.bytes))
                for (i, record) in batch.records.enumerated() where framed.batch.baseOffset + Int64(i) >= offset {
                    result.append(String(decoding: record.value, as: UTF8.self))
                }
            }
        }
        offset = read.records.nextOffset
    }
    return result
}

/// A settable clock for rolling and retention tests.
final class TestClock: Sendable {
    private let now: Mutex<Int64>
    init(start: Int64) { now = Mutex(start) }
    func set(_ value: Int64) { now.withLock { $0 = value } }
    var read: @Sendable () -> Int64 { { [self] in now.withLock { $0 } } }
}
