import FjordProto
import FjordProtocol
import FjordStorage
import FjordWire
import NIOCore
import NIOPosix

/// Builds the responses that carry stored batches, on the storage threads: the batches go into
/// the frame as views of the segment's memory map (`LogSlice.mappedBuffer()`), so encrypting them
/// for TLS is their only copy; on a connection without TLS as file regions
/// (`LogSlice.fileRegion()`) that the event loop sends with `sendfile`. Populating those pages (any wait for
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

    /// A response payload in parts: protobuf fields in heap buffers, then batches as views of the
    /// segment map or, without TLS, as file regions for `sendfile`.
    struct Payload {
        private let allocator: ByteBufferAllocator
        private let usesFileRegions: Bool
        private var parts: [FramePayloadPart] = []
        private var fields: ByteBuffer
        /// Batch bytes appended so far.
        private(set) var recordBytes = 0

        /// Creates an empty payload; `usesFileRegions` only for a connection without TLS.
        init(allocator: ByteBufferAllocator, usesFileRegions: Bool) {
            self.allocator = allocator
            self.usesFileRegions = usesFileRegions
            self.fields = allocator.buffer(capacity: 256)
        }

        /// Appends the fields `write` writes, which end by announcing `records.count` bytes of
        /// records when there are any, then those bytes. If the bytes cannot be read, nothing is
        /// appended and the error is thrown.
        mutating func append(records slice: LogSlice?, fields write: (inout ByteBuffer) -> Void) throws(StorageError) {
            let mark = fields.writerIndex
            write(&fields)
            guard let slice, !slice.isEmpty else { return }
            if usesFileRegions, let (region, owner) = slice.fileRegion() {
                parts.append(.buffer(fields))
                parts.append(.file(region, keepAlive: owner))
                fields = allocator.buffer(capacity: 256)
            } else if let mapped = slice.mappedBuffer() {
                parts.append(.buffer(fields))
                parts.append(.buffer(mapped))
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

        /// The first part and the rest, for ``FjordWire/Frame/init(streamID:method:flags:payload:continuation:)``.
        func finished() -> Response {
            guard case .buffer(let first)? = parts.first else { return Response(payload: fields, continuation: []) }
            var rest = Array(parts.dropFirst())
            if fields.readableBytes > 0 { rest.append(.buffer(fields)) }
            return Response(payload: first, continuation: rest)
        }
    }

    /// A response payload ready to send: its first part and the parts after it.
    struct Response: Sendable {
        var payload: ByteBuffer
        var continuation: [FramePayloadPart]
    }

    /// Builds a whole `FetchResponse` payload; returns it with the number of batch bytes it holds
    /// and whether any partition failed.
    static func fetchResponse(
        _ requests: [Request], maxBytes: Int, allocator: ByteBufferAllocator, usesFileRegions: Bool
    ) -> (payload: Response, recordBytes: Int, hasError: Bool) {
        var payload = Payload(allocator: allocator, usesFileRegions: usesFileRegions)
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
        partition: Partition, offset: Int64, maxBytes: Int, allocator: ByteBufferAllocator, usesFileRegions: Bool
    ) throws(BrokerError) -> (payload: Response?, nextOffset: Int64, recordBytes: Int) {
        let result: LogReadResult
        do {
            result = try partition.log.readBlocking(from: offset, maxBytes: maxBytes)
        } catch {
            throw BrokerError(error, topic: partition.topic, partition: partition.index)
        }
        let slice = result.records
        guard !slice.isEmpty else { return (nil, offset, 0) }
        var payload = Payload(allocator: allocator, usesFileRegions: usesFileRegions)
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
