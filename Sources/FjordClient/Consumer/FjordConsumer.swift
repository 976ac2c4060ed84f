import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import NIOCore
import SwiftProtobuf
import Synchronization

/// Reads records from assigned partitions as an `AsyncSequence`, fed by the broker's subscribe
/// streams under credit: each partition has at most ``ConsumerConfiguration/creditBytes``
/// pushed but not yet consumed, so memory stays bounded however far behind the consumer is.
///
/// ```swift
/// let consumer = client.makeConsumer()
/// try await consumer.assign(topic: "orders", from: .earliest)       // every partition
/// try await consumer.seek(TopicPartition("orders", 0), to: .timestamp(startOfDay))
/// for try await record in consumer.records {
///     print(record.partition, record.offset, String(decoding: record.value ?? [], as: UTF8.self))
/// }
/// ```
///
/// Records of one partition arrive in offset order; partitions interleave. A dropped connection
/// or a retriable error resubscribes from the next unread offset after a backoff. An offset
/// outside the log is handled per ``ConsumerConfiguration/autoOffsetReset``.
public final class FjordConsumer: Sendable {
    /// How the consumer reads.
    public let configuration: ConsumerConfiguration
    let client: FjordClient
    let events: AsyncStream<Event>
    let continuation: AsyncStream<Event>.Continuation
    let state = Mutex(State())

    enum Event: Sendable {
        case batch(ConsumerBatch, generation: Int)
        case failure(FjordClientError)
    }

    struct Assignment {
        var task: Task<Void, Never>
        var generation: Int
        /// The next offset the application has not consumed.
        var position: Int64?
        var stream: FjordStream?
    }

    struct State {
        var assignments: [TopicPartition: Assignment] = [:]
        var nextGeneration = 0
        var closed = false
    }

    init(client: FjordClient, configuration: ConsumerConfiguration) {
        self.client = client
        self.configuration = configuration
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
    }

    // MARK: Assignment

    /// Reads `partitions` from `position` (replacing any earlier position for them).
    public func assign(_ partitions: [TopicPartition], from position: SeekPosition = .latest) async throws {
        for partition in partitions { try await seek(partition, to: position) }
    }

    /// Reads every partition of `topic` from `position`.
    public func assign(topic: String, from position: SeekPosition = .latest) async throws {
        let metadata = try await client.refreshMetadata(topic: topic)
        try await assign((0..<metadata.partitionCount).map { TopicPartition(topic, $0) }, from: position)
    }

    /// Moves a partition (assigning it if needed) to `position`; records from the old position
    /// that were not yet handed out are dropped.
    public func seek(_ partition: TopicPartition, to position: SeekPosition) async throws {
        let offset = try await resolve(partition, position)
        let generation: Int? = state.withLock { state in
            guard !state.closed else { return nil }
            state.assignments[partition]?.task.cancel()
            state.nextGeneration += 1
            return state.nextGeneration
        }
        guard let generation else { throw FjordClientError(code: .invalidRequest, message: "the consumer is closed", isRetriable: false) }
        let task = Task { [self] in await subscribeLoop(partition, from: offset, generation: generation) }
        state.withLock { state in
            state.assignments[partition] = Assignment(task: task, generation: generation, position: offset, stream: nil)
        }
    }

    /// Stops reading `partitions`.
    public func unassign(_ partitions: [TopicPartition]) {
        let removed = state.withLock { state in partitions.compactMap { state.assignments.removeValue(forKey: $0) } }
        for assignment in removed { assignment.task.cancel() }
    }

    /// The partitions being read.
    public var assignment: Set<TopicPartition> { state.withLock { Set($0.assignments.keys) } }

    /// The next offset the application will see from `partition`, once known.
    public func position(_ partition: TopicPartition) -> Int64? {
        state.withLock { $0.assignments[partition]?.position }
    }

    /// Stops every subscription and ends the sequences.
    public func close() async {
        let assignments = state.withLock { state in
            state.closed = true
            defer { state.assignments = [:] }
            return Array(state.assignments.values)
        }
        for assignment in assignments {
            assignment.task.cancel()
            if let stream = assignment.stream { try? await stream.cancel() }
        }
        continuation.finish()
    }

    // MARK: Reading

    /// Every record, decoded, partitions interleaved and each in offset order.
    public var records: Records { Records(batches: batches) }

    /// Every batch as pushed (no copies): the fastest way to read.
    public var batches: Batches { Batches(consumer: self) }

    /// Batches as an async sequence. Only one iteration may run at a time.
    public struct Batches: AsyncSequence, Sendable {
        /// One stored batch.
        public typealias Element = ConsumerBatch
        let consumer: FjordConsumer

        /// Starts iterating.
        public func makeAsyncIterator() -> Iterator { Iterator(consumer: consumer, base: consumer.events.makeAsyncIterator()) }

        /// Hands out batches as subscriptions push them.
        public struct Iterator: AsyncIteratorProtocol {
            let consumer: FjordConsumer
            var base: AsyncStream<Event>.Iterator

            /// The next batch; `nil` once the consumer is closed. Throws a non-retriable failure of
            /// a subscription (for example `OFFSET_OUT_OF_RANGE` with reset policy `.none`).
            public mutating func next() async throws -> ConsumerBatch? {
                while let event = await base.next() {
                    switch event {
                    case .failure(let error):
                        throw error
                    case .batch(let batch, let generation):
                        if let accepted = consumer.accept(batch, generation: generation) { return accepted }
                    }
                }
                return nil
            }
        }
    }

    /// Records as an async sequence. Only one iteration may run at a time.
    public struct Records: AsyncSequence, Sendable {
        /// One decoded record.
        public typealias Element = ConsumerRecord
        let batches: Batches

        /// Starts iterating.
        public func makeAsyncIterator() -> Iterator { Iterator(batches: batches.makeAsyncIterator()) }

        /// Decodes batches into records.
        public struct Iterator: AsyncIteratorProtocol {
            var batches: Batches.Iterator
            var pending: [ConsumerRecord] = []
            var index = 0

            /// The next record; `nil` once the consumer is closed.
            public mutating func next() async throws -> ConsumerRecord? {
                while index == pending.count {
                    guard let batch = try await batches.next() else { return nil }
                    pending = try batch.records()
                    index = 0
                }
                defer { index += 1 }
                return pending[index]
            }
        }
    }

    /// Hands out a batch if it is still wanted (its partition was not re-seeked meanwhile),
    /// advances the position and returns its bytes to the broker as credit.
    func accept(_ batch: ConsumerBatch, generation: Int) -> ConsumerBatch? {
        let accepted: (ConsumerBatch, FjordStream?)? = state.withLock { state in
            guard var assignment = state.assignments[batch.topicPartition], assignment.generation == generation else {
                return nil
            }
            var batch = batch
            if let position = assignment.position { batch.firstOffset = max(batch.firstOffset, position) }
            assignment.position = batch.nextOffset
            state.assignments[batch.topicPartition] = assignment
            return (batch, assignment.stream)
        }
        guard let (result, stream) = accepted else { return nil }
        if let stream {
            var credit = Fjord_V1_SubscribeCredit()
            credit.bytes = UInt64(result.bytes.readableBytes)
            Task { try? await stream.send(credit) }
        }
        return result
    }

    // MARK: Subscriptions

    private func resolve(_ partition: TopicPartition, _ position: SeekPosition) async throws -> Int64 {
        switch position {
        case .offset(let offset):
            return offset
        case .earliest:
            return try await client.admin.listOffsets(topic: partition.topic, partition: partition.partition, at: .earliest) ?? 0
        case .latest:
            return try await client.admin.listOffsets(topic: partition.topic, partition: partition.partition, at: .latest) ?? 0
        case .timestamp(let milliseconds):
            if let offset = try await client.admin.listOffsets(
                topic: partition.topic, partition: partition.partition, at: .timestamp(milliseconds))
            {
                return offset
            }
            return try await client.admin.listOffsets(topic: partition.topic, partition: partition.partition, at: .latest) ?? 0
        }
    }

    /// Keeps one subscription open for `partition`, resubscribing after failures.
    private func subscribeLoop(_ partition: TopicPartition, from start: Int64, generation: Int) async {
        var next = start
        var attempt = 0
        while !Task.isCancelled {
            do {
                next = try await subscribe(partition, from: next, generation: generation)
                attempt = 0
            } catch let error as FjordClientError where error.code == .offsetOutOfRange {
                let reset: SeekPosition
                switch configuration.autoOffsetReset {
                case .earliest: reset = .earliest
                case .latest: reset = .latest
                case .none:
                    continuation.yield(.failure(error))
                    return
                }
                guard let offset = try? await resolve(partition, reset) else { continue }
                next = offset
                state.withLock { state in
                    if state.assignments[partition]?.generation == generation { state.assignments[partition]?.position = offset }
                }
            } catch let error as FjordClientError where !error.isRetriable {
                continuation.yield(.failure(error))
                return
            } catch {
                if Task.isCancelled { return }
                try? await Task.sleep(for: client.configuration.reconnect.delay(attempt: attempt))
                attempt += 1
            }
        }
    }

    /// One subscribe stream: pushes batches until it fails; returns the next offset to ask for.
    private func subscribe(_ partition: TopicPartition, from offset: Int64, generation: Int) async throws -> Int64 {
        let connection = try await client.connection()
        let stream = connection.openStream(.subscribe)
        var request = Fjord_V1_SubscribeRequest()
        request.topic = partition.topic
        request.partition = UInt32(partition.partition)
        request.offset = offset
        request.leaderEpoch = -1
        request.creditBytes = UInt64(configuration.creditBytes)
        request.maxBytes = UInt32(configuration.maxBytesPerResponse)
        let stillWanted = state.withLock { state in
            guard state.assignments[partition]?.generation == generation else { return false }
            state.assignments[partition]?.stream = stream
            return true
        }
        guard stillWanted else { return offset }
        try await stream.send(request)
        var next = offset
        do {
            try await withTaskCancellationHandler {
                while let frame = try await stream.next() {
                    for batch in try split(frame.payload, partition: partition, from: next) {
                        next = batch.nextOffset
                        continuation.yield(.batch(batch, generation: generation))
                    }
                }
            } onCancel: {
                Task { try? await stream.cancel() }
            }
        } catch let error as FjordClientError {
            if !connection.isActive { await client.connections.invalidate(connection) }
            throw error
        }
        if !connection.isActive { await client.connections.invalidate(connection) }
        throw FjordClientError(code: .unknown, message: "the subscription to \(partition) ended", isRetriable: true)
    }

    /// The batches of one `SubscribeResponse`, as views into its payload, CRC-checked.
    private func split(_ payload: ByteBuffer, partition: TopicPartition, from offset: Int64) throws -> [ConsumerBatch] {
        var result: [ConsumerBatch] = []
        try payload.withUnsafeReadableBytes { raw throws(FjordClientError) in
            var reader = ProtobufWireReader(raw)
            while !reader.isAtEnd {
                guard let field = reader.readField() else {
                    throw FjordClientError(code: .malformedMessage, message: "a SubscribeResponse from the broker is not valid protobuf")
                }
                guard field.number == 1, field.wireType == 2 else { continue }
                let set = UnsafeRawBufferPointer(rebasing: raw[field.payload])
                var iterator = FramedBatchIterator(set)
                var expected: Int64?
                while let element = iterator.next() {
                    if configuration.checkCRCs && !element.batch.isCRCValid {
                        throw FjordClientError(
                            code: .corruptBatch,
                            message: "batch at offset \(element.batch.baseOffset) of \(partition) failed its CRC32C check")
                    }
                    // The base offset is outside the CRC: check that batches continue each other and
                    // that the first one holds the offset asked for.
                    let base = element.batch.baseOffset
                    let continues = expected.map { base == $0 } ?? (base <= offset)
                    if configuration.checkCRCs && (!continues || element.batch.recordCount == 0) {
                        throw FjordClientError(
                            code: .corruptBatch,
                            message: "batch of \(partition) starts at offset \(base) but offset \(expected ?? offset) was expected")
                    }
                    expected = element.batch.lastOffset &+ 1
                    let start = field.payload.lowerBound + element.position + BatchFraming.prefixSize
                    let bytes = payload.getSlice(at: payload.readerIndex + start, length: element.batch.bytes.count)!
                    if element.batch.lastOffset < offset { continue }
                    result.append(
                        ConsumerBatch(topicPartition: partition, bytes: bytes, firstOffset: max(offset, element.batch.baseOffset)))
                }
                switch iterator.stopReason {
                case .truncated:
                    throw FjordClientError(code: .malformedMessage, message: "a pushed batch set for \(partition) ends inside a batch")
                case .malformed(let position):
                    throw FjordClientError(
                        code: .malformedMessage, message: "a pushed batch set for \(partition) has no batch frame at byte \(position)")
                default:
                    break
                }
            }
        }
        return result
    }
}
