import FjordProto
import FjordProtocol
import FjordStorage
import NIOCore
import NIOPosix

/// Reads stored batches into response buffers on the storage threads: the page faults of cold
/// data and the one copy from the segment's map into the frame happen there, never on an event loop.
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
            RecordResponseWriter.writeFetchPartition(header, recordsLength: length, to: &buffer) { buffer in
                if let slice { _ = slice.withUnsafeBytes { buffer.writeBytes($0) } }
            }
            // Copied out: keep a reader far behind from growing the broker's resident set.
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
        RecordResponseWriter.writeSubscribeResponse(
            highWatermark: result.logEndOffset, logStartOffset: result.logStartOffset, recordsLength: slice.count, to: &buffer
        ) { buffer in
            _ = slice.withUnsafeBytes { buffer.writeBytes($0) }
        }
        slice.releaseMappedPages()
        return (buffer, slice.nextOffset, slice.count)
    }
}
