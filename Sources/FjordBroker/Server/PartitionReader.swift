import FjordProto
import FjordProtocol
import FjordStorage
import NIOCore
import NIOPosix

/// Reads stored batches into response buffers on the storage threads: the one copy of the bytes
/// into the frame (`pread` from the segment file, so the broker's resident set does not grow with
/// how much is read) and any wait for cold data happen there, never on an event loop.
enum PartitionReader {
    /// One partition to read for a fetch.
    struct Request: Sendable {
        var topic: String
        var partitionIndex: UInt32
        var partition: Result<Partition, BrokerError>
        var offset: Int64
        var maxBytes: Int
    }

    /// Builds a whole `FetchResponse` payload; returns it with the number of batch bytes it holds
    /// and whether any partition failed.
    static func fetchResponse(
        _ requests: [Request], maxBytes: Int, allocator: ByteBufferAllocator
    ) -> (payload: ByteBuffer, recordBytes: Int, hasError: Bool) {
        var buffer = allocator.buffer(capacity: 256)
        var total = 0
        var hasError = false
        for request in requests {
            var header = RecordResponseWriter.PartitionHeader(
                topic: request.topic, partition: request.partitionIndex, highWatermark: -1, logStartOffset: -1)
            var slice: LogSlice?
            do throws(BrokerError) {
                let partition = try request.partition.get()
                let remaining = maxBytes - total
                if remaining <= 0 {
                    header.highWatermark = partition.log.logEndOffset
                    header.logStartOffset = partition.log.logStartOffset
                } else {
                    let result: LogReadResult
                    do {
                        result = try partition.log.readBlocking(from: request.offset, maxBytes: min(request.maxBytes, remaining))
                    } catch {
                        throw BrokerError(error, topic: request.topic, partition: Int(request.partitionIndex))
                    }
                    header.highWatermark = result.logEndOffset
                    header.logStartOffset = result.logStartOffset
                    slice = result.records
                }
            } catch {
                hasError = true
                header.error = error.wireValue
            }
            let length = slice?.count ?? 0
            buffer.reserveCapacity(minimumWritableBytes: length + RecordResponseWriter.fetchPartitionOverhead(topic: request.topic))
            let mark = buffer.writerIndex
            do throws(StorageError) {
                // pread, not a copy from the map: a reader far behind must not grow the broker's RSS.
                try RecordResponseWriter.writeFetchPartition(header, recordsLength: length, to: &buffer) {
                    buffer throws(StorageError) in try slice?.copyBytes(into: &buffer)
                }
            } catch {
                buffer.moveWriterIndex(to: mark)
                hasError = true
                header.error = BrokerError(error, topic: request.topic, partition: Int(request.partitionIndex)).wireValue
                RecordResponseWriter.writeFetchPartition(header, recordsLength: 0, to: &buffer) { _ in }
                slice?.releaseMappedPages()
                continue
            }
            // Locating the batches peeked at their headers through the map: unmap what that touched.
            slice?.releaseMappedPages()
            total += length
        }
        return (buffer, total, hasError)
    }

    /// Reads the next `SubscribeResponse` payload from `offset`; `nil` payload at the log end.
    static func subscribeResponse(
        partition: Partition, offset: Int64, maxBytes: Int, allocator: ByteBufferAllocator
    ) throws(BrokerError) -> (payload: ByteBuffer?, nextOffset: Int64, recordBytes: Int) {
        let result: LogReadResult
        do {
            result = try partition.log.readBlocking(from: offset, maxBytes: maxBytes)
        } catch {
            throw BrokerError(error, topic: partition.topic, partition: partition.index)
        }
        let slice = result.records
        guard !slice.isEmpty else { return (nil, offset, 0) }
        var buffer = allocator.buffer(capacity: slice.count + 32)
        // Locating the batches peeked at their headers through the map: unmap what that touched.
        defer { slice.releaseMappedPages() }
        do throws(StorageError) {
            // pread, not a copy from the map: a subscriber far behind must not grow the broker's RSS.
            try RecordResponseWriter.writeSubscribeResponse(
                highWatermark: result.logEndOffset, logStartOffset: result.logStartOffset, recordsLength: slice.count,
                to: &buffer
            ) { buffer throws(StorageError) in try slice.copyBytes(into: &buffer) }
        } catch {
            throw BrokerError(error, topic: partition.topic, partition: partition.index)
        }
        return (buffer, slice.nextOffset, slice.count)
    }
}
