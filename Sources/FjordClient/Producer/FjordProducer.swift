import FjordProto
import FjordProtocol
import FjordRecords
import FjordWire
import NIOCore
import NIOPosix
import Synchronization

/// Sends records to topics: batches them per partition, keeps a bounded window of batches in
/// flight, retries retriable failures, and reports each record's offset.
///
/// ```swift
/// let producer = client.makeProducer()
/// // Wait for one record's offset:
/// let metadata = try await producer.send(ProducerRecord(topic: "orders", key: "user-42", value: "created"))
/// // Or stream many, learning about each through a callback, and wait for all at the end:
/// for i in 0..<100_000 {
///     try await producer.enqueue(ProducerRecord(topic: "clicks", value: "click \(i)")) { result in
///         if case .failure(let error) = result { print("lost: \(error)") }
///     }
/// }
/// try await producer.flush()
/// try await producer.close()
/// ```
///
/// With ``ProducerConfiguration/idempotent`` (the default), the producer holds an id and epoch
/// from the broker and numbers its batches per partition; the broker appends each batch once, in
/// order, and answers a retry of an appended batch with its original offsets. A retriable failure
/// or a dropped connection therefore never duplicates or reorders records: the batches still in
/// flight for that partition are sent again, in order, with the same numbers.
public final class FjordProducer: Sendable {
    /// How records are batched, acknowledged and retried.
    public let configuration: ProducerConfiguration
    let client: FjordClient
    let state: Mutex<State>
    let wakeup = WakeupSignal()
    let sender = Mutex<Task<Void, Never>?>(nil)
    let idempotent: Bool

    /// A delivery callback and the index it reports (the record's position in its `enqueue` call).
    typealias Callback = @Sendable (Int, Result<RecordMetadata, FjordClientError>) -> Void

    init(client: FjordClient, configuration: ProducerConfiguration) {
        self.client = client
        self.configuration = configuration
        self.idempotent = configuration.idempotent && configuration.acks != .none
        self.state = Mutex(State())
        let task = Task { [self] in await runSender() }
        sender.withLock { $0 = task }
    }

    // MARK: Sending

    /// Sends `record` and waits until the broker has it (per ``ProducerConfiguration/acks``).
    ///
    /// - Returns: the partition and offset (-1 with acks none).
    /// - Throws: ``FjordClientError`` when the record could not be delivered within the delivery
    ///   timeout, or with a non-retriable error (unknown topic, batch too large, ...).
    @discardableResult
    public func send(_ record: ProducerRecord) async throws -> RecordMetadata {
        let (metadataStream, continuation) = AsyncStream.makeStream(of: Result<RecordMetadata, FjordClientError>.self)
        try await enqueue(record) { result in
            continuation.yield(result)
            continuation.finish()
        }
        for await result in metadataStream { return try result.get() }
        throw FjordClientError(code: .unknown, message: "the producer closed before the record was answered", isRetriable: false)
    }

    /// Adds `record` to its partition's batch and returns once it is buffered, waiting only when
    /// ``ProducerConfiguration/bufferBytes`` are already buffered. `onDelivery` runs once the
    /// broker answered (or the record failed for good).
    public func enqueue(
        _ record: ProducerRecord, onDelivery: (@Sendable (Result<RecordMetadata, FjordClientError>) -> Void)? = nil
    ) async throws {
        var perIndex: (@Sendable (Int, Result<RecordMetadata, FjordClientError>) -> Void)?
        if let onDelivery { perIndex = { _, result in onDelivery(result) } }
        try await enqueue(contentsOf: CollectionOfOne(record), onDelivery: perIndex)
    }

    /// Adds several records at once: the fastest way to produce many, as the producer's lock and
    /// metadata lookups are taken once for the lot. `onDelivery` runs once per record with the
    /// record's index in `records`.
    ///
    /// ```swift
    /// try await producer.enqueue(contentsOf: records) { index, result in
    ///     if case .failure(let error) = result { print("record \(index) failed: \(error)") }
    /// }
    /// ```
    public func enqueue<Records: Collection<ProducerRecord>>(
        contentsOf records: Records,
        onDelivery: (@Sendable (Int, Result<RecordMetadata, FjordClientError>) -> Void)? = nil
    ) async throws {
        var partitionCounts: [String: Int] = [:]
        let now = Self.now()
        var next = records.startIndex
        var index = 0
        while next != records.endIndex {
            let outcome = state.withLock { state in
                offer(records, from: &next, index: &index, partitionCounts: partitionCounts, now: now, onDelivery: onDelivery, state: &state)
            }
            switch outcome {
            case .buffered(let signal):
                if signal { wakeup.signal() }
            case .needMetadata(let topic, let signal):
                if signal { wakeup.signal() }
                let count = try await client.metadata(topic: topic).partitionCount
                guard count > 0 else {
                    throw FjordClientError(code: .unknownTopicOrPartition, message: "topic \(topic) has no partitions")
                }
                partitionCounts[topic] = count
            case .noSuchPartition(let topic, let partition, let count, let signal):
                if signal { wakeup.signal() }
                throw FjordClientError(
                    code: .unknownTopicOrPartition,
                    message: "topic \(topic) has partitions 0 to \(count - 1); there is no partition \(partition) (records before it were enqueued)")
            case .closed:
                throw FjordClientError(code: .invalidRequest, message: "the producer is closed", isRetriable: false)
            case .full(let signal):
                if signal { wakeup.signal() }
                let size = Self.estimatedSize(records[next])
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let waitNow = state.withLock { state in
                        guard state.bufferedBytes > 0 && state.bufferedBytes + size > configuration.bufferBytes else { return false }
                        state.spaceWaiters.append(continuation)
                        return true
                    }
                    if !waitNow { continuation.resume() }
                }
            }
        }
    }

    /// Adds records from `next` on to their partitions' batches until the buffer is full; under the lock.
    private func offer<Records: Collection<ProducerRecord>>(
        _ records: Records, from next: inout Records.Index, index: inout Int, partitionCounts: [String: Int], now: Int64,
        onDelivery: (@Sendable (Int, Result<RecordMetadata, FjordClientError>) -> Void)?, state: inout State
    ) -> EnqueueOutcome {
        if state.closing { return .closed }
        var signal = false
        // Consecutive records usually share topic and partition: look them up once.
        var lastTopic: String?
        var count = 0
        var sticky: Int?
        var lastKey: PartitionKey?
        var queue: PartitionQueue?
        while next != records.endIndex {
            let record = records[next]
            let size = Self.estimatedSize(record)
            if state.bufferedBytes > 0 && state.bufferedBytes + size > configuration.bufferBytes {
                return .full(signal: signal)
            }
            if record.topic != lastTopic {
                guard let known = partitionCounts[record.topic] else { return .needMetadata(record.topic, signal: signal) }
                lastTopic = record.topic
                count = known
                sticky = nil
                lastKey = nil
            }
            let partition: Int
            if let explicit = record.partition {
                guard explicit >= 0 && explicit < count else {
                    return .noSuchPartition(record.topic, explicit, count, signal: signal)
                }
                partition = explicit
            } else if let key = record.key {
                partition = Partitioner.partition(forKey: key, partitionCount: count)
            } else {
                if sticky == nil { sticky = state.stickyPartition(topic: record.topic, count: count) }
                partition = sticky!
            }
            if lastKey?.partition != partition || lastKey == nil {
                let key = PartitionKey(topic: record.topic, partition: partition)
                queue = state.queue(for: key)
                lastKey = key
            }
            let key = lastKey!
            let target = queue!
            if target.open == nil {
                target.open = Batch(key: key, capacity: min(configuration.batchBytes + 1024, 1 << 20))
                signal = true  // the sender starts this batch's linger clock
            }
            target.open!.append(record, timestamp: record.timestamp ?? now, size: size, index: index, callback: onDelivery)
            if target.open!.bytes >= configuration.batchBytes {
                target.ready.append(target.open.take()!)
                if record.key == nil && record.partition == nil {
                    state.sticky[record.topic] = nil
                    sticky = nil
                }
                signal = true
            }
            state.bufferedBytes += size
            state.pendingRecords += 1
            next = records.index(after: next)
            index += 1
        }
        return .buffered(signal: signal)
    }

    /// Sends every buffered record now and returns once every record enqueued so far (and any
    /// enqueued meanwhile) is answered.
    public func flush() async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                if state.pendingRecords == 0 { return true }
                state.flushWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { wakeup.signal() }
        }
    }

    /// Flushes, then stops the producer. Later sends fail.
    public func close() async throws {
        state.withLock { $0.closing = true }
        try await flush()
        state.withLock { $0.closed = true }
        wakeup.signal()
        await sender.withLock { $0 }?.value
    }

    enum EnqueueOutcome {
        case buffered(signal: Bool)
        case closed
        case full(signal: Bool)
        case needMetadata(String, signal: Bool)
        case noSuchPartition(String, Int, Int, signal: Bool)
    }

    /// Counters of what the producer did, for monitoring and tests.
    public struct Statistics: Sendable, Hashable {
        /// Produce requests written (first attempts and retries).
        public var requestsSent = 0
        /// Requests written again after a retriable error or a lost connection.
        public var retries = 0
        /// Answers saying the batch was already in the log (a retry of an appended batch).
        public var duplicatesAnswered = 0
        /// Idempotent identities obtained (the first, then one per epoch bump).
        public var producerIDRequests = 0
    }

    /// What the producer has done so far.
    public var statistics: Statistics { state.withLock { $0.statistics } }

    static func now() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// The bytes a record adds to a batch (close enough for batching and buffer accounting).
    static func estimatedSize(_ record: ProducerRecord) -> Int {
        var size = 16 + (record.key?.count ?? 0) + (record.value?.count ?? 0)
        for header in record.headers { size += 8 + header.key.utf8.count + (header.value?.count ?? 0) }
        return size
    }
}

// MARK: State

extension FjordProducer {
    struct PartitionKey: Hashable, Sendable {
        var topic: String
        var partition: Int
    }

    /// Records bound for one partition, batched.
    struct Batch: Sendable {
        let key: PartitionKey
        /// The records until the batch is first sent; then ``built`` holds them.
        var builder: RecordBatchBuilder
        var recordCount = 0
        var bytes = 0
        /// Records that want an answer: their index in the batch, timestamp, the index their
        /// callback reports, and the callback.
        var callbacks: [(index: Int, timestamp: Int64, reported: Int, callback: Callback)] = []
        let created = ContinuousClock.now
        /// The sequence of the first record once the batch was first sent (idempotent producers).
        var sequence: Int32?
        /// The bytes as last sent.
        var built: ByteBuffer?
        /// The idempotence fields in ``built`` are stale (the producer's epoch changed).
        var needsRestamp = false
        var attempts = 0

        init(key: PartitionKey, capacity: Int) {
            self.key = key
            self.builder = RecordBatchBuilder(capacity: capacity)
        }

        mutating func append(_ record: ProducerRecord, timestamp: Int64, size: Int, index: Int, callback: Callback?) {
            builder.append(key: record.key, value: record.value, headers: record.headers, timestamp: timestamp)
            if let callback { callbacks.append((recordCount, timestamp, index, callback)) }
            recordCount += 1
            bytes += size
        }
    }

    /// A partition's batches and sequence numbers. A class so the hot path updates it in place;
    /// only touched under the producer's lock.
    final class PartitionQueue: @unchecked Sendable {
        var open: Batch?
        /// Sealed batches, oldest first; batches sent before and to be sent again come first, in
        /// sequence order.
        var ready: [Batch] = []
        var inFlight = 0
        var nextSequence: Int32 = 0
        /// A batch failed while later ones were in flight: send nothing until they are back.
        var recovering = false
        var notBefore: ContinuousClock.Instant?

        func requeue(_ batch: Batch) {
            let position = ready.firstIndex { other in
                guard let otherSequence = other.sequence, let sequence = batch.sequence else { return other.sequence == nil }
                return otherSequence > sequence
            } ?? ready.endIndex
            ready.insert(batch, at: position)
        }
    }

    struct InFlight: Sendable {
        var id: UInt64
        var batch: Batch
        /// The link the request was written on; `nil` while the sender is still writing it.
        var generation: Int?
    }

    struct State: Sendable {
        var partitions: [PartitionKey: PartitionQueue] = [:]
        var sticky: [String: Int] = [:]
        var bufferedBytes = 0
        var pendingRecords = 0
        var spaceWaiters: [CheckedContinuation<Void, Never>] = []
        var flushWaiters: [CheckedContinuation<Void, Never>] = []
        var inFlight: [UInt64: InFlight] = [:]
        var nextRequestID: UInt64 = 1
        var generation = 0
        var producerID: Int64 = -1
        var producerEpoch: Int32 = -1
        var needsEpochBump = false
        var closing = false
        var closed = false
        var topicsToRefresh: Set<String> = []
        var statistics = Statistics()

        /// The queue of `key`, created on first use and kept (it holds the next sequence number).
        mutating func queue(for key: PartitionKey) -> PartitionQueue {
            if let queue = partitions[key] { return queue }
            let queue = PartitionQueue()
            partitions[key] = queue
            return queue
        }

        /// Unkeyed records stick to one partition until its batch is sealed, then move on
        /// (Kafka's sticky partitioner): full batches without a per-record choice.
        mutating func stickyPartition(topic: String, count: Int) -> Int {
            if let partition = sticky[topic], partition < count { return partition }
            let partition = Int.random(in: 0..<count)
            sticky[topic] = partition
            return partition
        }
    }
}
