import FjordProto
import FjordProtocol
import FjordStorage
import NIOCore
import NIOPosix

/// Builds the responses that carry stored batches, on the storage threads: the batches go into
/// the frame as views of the segment's memory map (`LogSlice.mappedBuffer()`), so writing them to
/// the socket, or encrypting them for TLS, is their only copy. Populating those pages (any wait for
/// cold data) happens here, never on an event loop. Pages the kernel cannot read are read with
/// `pread` instead, which turns the I/O error into an error for that partition.
enum PartitionReader {
    /// One partition to read for a fetch.
    struct Request: Sendable {
        var topic: String
        var partitionIndex: UInt32
        var partition: Result<Partition, BrokerError>
        var offset: Int64
        var maxBytes: Int
    }

    /// A response payload in parts: protobuf fields in heap buffers, batches mapped from segments.
    struct Payload {
        private let allocator: ByteBufferAllocator
        private var parts: [ByteBuffer] = []
        private var fields: ByteBuffer
        /// Batch bytes appended so far.
        private(set) var recordBytes = 0

        init(allocator: ByteBufferAllocator) {
            self.allocator = allocator
            self.fields = allocator.buffer(capacity: 256)
        }

        /// Appends the fields `write` writes, which end by announcing `records.count` bytes of
        /// records when there are any, then those bytes. If the bytes cannot be read, nothing is
        /// appended and the error is thrown.
        mutating func append(records slice: LogSlice?, fields write: (inout ByteBuffer) -> Void) throws(StorageError) {
            let mark = fields.writerIndex
            write(&fields)
            guard let slice, !slice.isEmpty else { return }
            if let mapped = slice.mappedBuffer() {
                parts.append(fields)
                parts.append(mapped)
                fields = allocator.buffer(capacity: 256)
            } else {
                // Pages the kernel could not map: pread reports why (or copies them if it can).
                defer { slice.releaseMappedPages() }
                do { try slice.copyBytes(into: &fields) } catch {
                    fields.moveWriterIndex(to: mark)
                    throw error
                }
            }
            recordBytes += slice.count
        }

        /// The parts to send, in order.
        func finished() -> [ByteBuffer] {
            fields.readableBytes > 0 || parts.isEmpty ? parts + [fields] : parts
        }
    }

    /// Builds a whole `FetchResponse` payload; returns it with the number of batch bytes it holds
    /// and whether any partition failed.
    static func fetchResponse(
        _ requests: [Request], maxBytes: Int, allocator: ByteBufferAllocator
    ) -> (payload: [ByteBuffer], recordBytes: Int, hasError: Bool) {
        var payload = Payload(allocator: allocator)
        var hasError = false
        for request in requests {
            var header = RecordResponseWriter.PartitionHeader(
                topic: request.topic, partition: request.partitionIndex, highWatermark: -1, logStartOffset: -1)
            var slice: LogSlice?
            do throws(BrokerError) {
                let partition = try request.partition.get()
                let remaining = maxBytes - payload.recordBytes
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
            do throws(StorageError) {
                try payload.append(records: slice) {
                    RecordResponseWriter.writeFetchPartitionFields(header, recordsLength: length, to: &$0)
                }
            } catch {
                hasError = true
                header.error = BrokerError(error, topic: request.topic, partition: Int(request.partitionIndex)).wireValue
                try? payload.append(records: nil) {
                    RecordResponseWriter.writeFetchPartitionFields(header, recordsLength: 0, to: &$0)
                }
            }
        }
        return (payload.finished(), payload.recordBytes, hasError)
    }

    /// Reads the next `SubscribeResponse` payload from `offset`; `nil` payload at the log end.
    static func subscribeResponse(
        partition: Partition, offset: Int64, maxBytes: Int, allocator: ByteBufferAllocator
    ) throws(BrokerError) -> (payload: [ByteBuffer]?, nextOffset: Int64, recordBytes: Int) {
        let result: LogReadResult
        do {
            result = try partition.log.readBlocking(from: offset, maxBytes: maxBytes)
        } catch {
            throw BrokerError(error, topic: partition.topic, partition: partition.index)
        }
        let slice = result.records
        guard !slice.isEmpty else { return (nil, offset, 0) }
        var payload = Payload(allocator: allocator)
        do throws(StorageError) {
            try payload.append(records: slice) {
                RecordResponseWriter.writeSubscribeResponseFields(
                    highWatermark: result.logEndOffset, logStartOffset: result.logStartOffset, recordsLength: slice.count,
                    to: &$0)
            }
        } catch {
            throw BrokerError(error, topic: partition.topic, partition: partition.index)
        }
        return (payload.finished(), slice.nextOffset, slice.count)
    }
}
