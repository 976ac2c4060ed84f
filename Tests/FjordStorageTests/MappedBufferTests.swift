import FjordRecords
import Foundation
import NIOCore
import SystemPackage
import Testing

@testable import FjordStorage

/// `LogSlice.mappedBuffer()`: the `ByteBuffer` a fetch response carries its batches in, pointing
/// into the segment's memory map.
@Suite struct MappedBufferTests {
    @Test func aMappedBufferPointsIntoTheSegmentAndOutlivesItsDeletion() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.retention = .init(milliseconds: nil, bytes: 4096)
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            for i in 0..<20 { try await log.append(mappedTestBatch(first: i)) }
            let read = try await log.read(from: 0, maxBytes: 1 << 20)
            let expected = read.records.withUnsafeBytes { Array($0) }
            let batchCount = Int(read.records.nextOffset)
            #expect(batchCount > 1)
            let address = try #require(read.records.withUnsafeBytes { $0.baseAddress })

            var buffer = read.records.mappedBuffer()
            try #require(buffer != nil)
            // The same bytes at the same address: no copy.
            #expect(buffer?.withUnsafeReadableBytes { $0.baseAddress } == address)
            #expect(Array(buffer!.readableBytesView) == expected)
            #expect(MappedBufferRegistry.shared.references(at: address) == 1)
            do {
                let second = read.records.mappedBuffer()
                #expect(MappedBufferRegistry.shared.references(at: address) == 2)
                withExtendedLifetime(second) {}
            }
            #expect(MappedBufferRegistry.shared.references(at: address) == 1)

            // Retention deletes the segment the buffer points into; its bytes stay readable.
            for i in 20..<200 { try await log.append(mappedTestBatch(first: i)) }
            _ = try await log.applyRetention()
            #expect(log.logStartOffset > 0)
            #expect(Array(buffer!.readableBytesView) == expected)
            let valid = buffer!.withUnsafeReadableBytes { bytes in
                var batches = FramedBatchIterator(bytes)
                var valid = 0
                while let framed = batches.next() { if framed.batch.isCRCValid { valid += 1 } }
                return valid
            }
            #expect(valid == batchCount)

            buffer = nil
            #expect(MappedBufferRegistry.shared.references(at: address) == 0)
            try await log.close()
        }
    }

    @Test func growingAMappedBufferMovesItToTheHeap() async throws {
        try await inTemporaryDirectory { root in
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: smallConfiguration())
            try await log.append(mappedTestBatch(first: 0))
            let read = try await log.read(from: 0, maxBytes: 1 << 20)
            let expected = read.records.withUnsafeBytes { Array($0) }
            let address = try #require(read.records.withUnsafeBytes { $0.baseAddress })
            do {
                // The map is read-only: appending must move the bytes (through the allocator's
                // reallocate hook) rather than write past them.
                var buffer = try #require(read.records.mappedBuffer())
                buffer.writeString("tail")
                #expect(buffer.withUnsafeReadableBytes { $0.baseAddress } != address)
                #expect(Array(buffer.readableBytesView) == expected + Array("tail".utf8))
                #expect(MappedBufferRegistry.shared.references(at: address) == 0)
            }
            #expect(read.records.withUnsafeBytes { Array($0) } == expected)
            #expect(LogSlice.emptyForTests.mappedBuffer() == nil)
            try await log.close()
        }
    }
}

private func mappedTestBatch(first: Int) -> ByteBuffer {
    var builder = RecordBatchBuilder()
    builder.append(
        key: nil, value: Array("value-\(first)-".utf8) + Array(repeating: UInt8(ascii: "v"), count: 300),
        timestamp: 1_700_000_000_000)
    return builder.finish()
}

extension LogSlice {
    static var emptyForTests: LogSlice { .empty(at: 0) }
}

/// `LogSlice.fileRegion()`: the batches as a range of the segment file, for `sendfile`.
@Suite struct SegmentFileRegionTests {
    @Test func aRegionReadsTheSliceFromItsOwnDescriptorEvenAfterDeletion() async throws {
        try await inTemporaryDirectory { root in
            var configuration = smallConfiguration()
            configuration.retention = .init(milliseconds: nil, bytes: 4096)
            let log = try await PartitionLog.open(directory: root.appending("log"), configuration: configuration)
            for i in 0..<20 { try await log.append(mappedTestBatch(first: i)) }
            let read = try await log.read(from: 0, maxBytes: 1 << 20)
            let expected = read.records.withUnsafeBytes { Array($0) }
            var region: FileRegion?
            var owner: SegmentFileHandle?
            do {
                let made = try #require(read.records.fileRegion())
                region = made.region
                owner = made.owner
            }
            #expect(region?.readableBytes == expected.count)

            // Retention deletes the segment file; the region's own descriptor still reads it.
            for i in 20..<200 { try await log.append(mappedTestBatch(first: i)) }
            _ = try await log.applyRetention()
            #expect(log.logStartOffset > 0)
            let bytes = try owner!.handle.withUnsafeFileDescriptor { descriptor in
                var bytes = [UInt8](repeating: 0, count: expected.count)
                let n = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, expected.count, off_t(region!.readerIndex)) }
                #expect(n == expected.count)
                return bytes
            }
            #expect(bytes == expected)

            // Releasing the owner closes the duplicate descriptor.
            let handle = owner!.handle
            owner = nil
            region = nil
            BackgroundRelease.drain()  // the close runs on the release queue
            #expect(!handle.isOpen)
            try await log.close()
        }
    }
}
