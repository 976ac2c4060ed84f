import FjordWire
import NIOPosix
import FjordProto
import FjordProtocol
import FjordStorage
import NIOCore

/// One long-poll fetch: reads the requested partitions and answers once `min_bytes` of batches
/// are available or `max_wait_ms` has passed, re-reading whenever one of the partitions gets an
/// append. Lives on the connection's event loop; the reads run on the storage threads.
///
/// A read starts only when the connection may prepare a record response (its queued bytes are
/// below `connection.max.queued.bytes`, see ``ConnectionWriteBudget``), and the response goes out
/// once the broker's queued-bytes budget takes it: a client that does not read its fetches waits
/// for them instead of having them buffered.
final class FetchOperation {
    private let streamID: UInt32
    private let token: UInt64
    private let request: Fjord_V1_FetchRequest
    private let handler: NIOLoopBound<ConnectionHandler>
    private let eventLoop: any EventLoop
    private let started = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var watches: [(Partition, Int)] = []
    private var finished = false
    private var reading = false
    private var wokenWhileReading = false
    /// Waiting for the connection to allow preparing a response.
    private var waitingToPrepare = false

    init(streamID: UInt32, token: UInt64, request: Fjord_V1_FetchRequest, handler: ConnectionHandler, eventLoop: any EventLoop) {
        self.streamID = streamID
        self.token = token
        self.request = request
        self.handler = NIOLoopBound(handler, eventLoop: eventLoop)
        self.eventLoop = eventLoop
    }

    func start(maxWait: TimeAmount) {
        if maxWait > .zero {
            let operation = NIOLoopBound(self, eventLoop: eventLoop)
            timer = eventLoop.scheduleTask(in: maxWait) { operation.value.attempt(final: true) }
        }
        attempt(final: maxWait == .zero)
    }

    func cancel() {
        finished = true
        stopWaiting()
    }

    private func stopWaiting() {
        timer?.cancel()
        timer = nil
        for (partition, token) in watches { partition.cancelWatch(token) }
        watches.removeAll()
    }

    private func attempt(final: Bool) {
        guard !finished else { return }
        if reading {
            wokenWhileReading = true
            if final { timer = nil }  // the running read answers; see below
            return
        }
        if final { timer = nil }
        guard !waitingToPrepare else { return }  // the read below starts once allowed
        waitingToPrepare = true
        let operation = NIOLoopBound(self, eventLoop: eventLoop)
        handler.value.whenMayPrepare { operation.value.read() }
    }

    /// Reads the partitions; answers, or waits for an append.
    private func read() {
        waitingToPrepare = false
        guard !finished else { return }
        let final = timer == nil
        for (partition, token) in watches { partition.cancelWatch(token) }
        watches.removeAll()
        let handler = self.handler.value
        let registry = handler.broker.registry
        // Room for every partition's fields besides its records, so the response fits the
        // client's frame limit (a read still returns at least one whole batch).
        let overhead = request.partitions.reduce(0) { $0 + RecordResponseWriter.fetchPartitionOverhead(topic: $1.topic) }
        let maxBytes = max(1, min(Int(request.maxBytes == 0 ? 50 << 20 : request.maxBytes), handler.clientMaxFrameBytes - overhead))
        var reads: [PartitionReader.Request] = []
        var ends: [(Partition, Int64)] = []
        for wanted in request.partitions {
            let partition: Result<Partition, BrokerError> = Result { () throws(BrokerError) in
                try handler.authorization.require(.read, .topic, wanted.topic)
                let partition = try registry.partition(topic: wanted.topic, index: Int(wanted.partition))
                try partition.checkLeaderEpoch(wanted.leaderEpoch)
                return partition
            }
            if case .success(let partition) = partition { ends.append((partition, partition.log.logEndOffset)) }
            reads.append(
                PartitionReader.Request(
                    topic: wanted.topic, partitionIndex: wanted.partition, partition: partition, offset: wanted.offset,
                    maxBytes: Int(wanted.maxBytes == 0 ? 1 << 20 : wanted.maxBytes)))
        }
        reading = true
        let estimate = min(maxBytes, reads.reduce(0) { $0 + $1.maxBytes }) + overhead
        handler.beginPreparing(estimate: estimate)
        let readsToRun = reads
        let endsToWatch = ends
        let allocator = handler.context?.channel.allocator ?? ByteBufferAllocator()
        let usesFileRegions = handler.usesFileRegions
        let operation = NIOLoopBound(self, eventLoop: eventLoop)
        let isFinal = final || timer == nil
        handler.fairStorageRead(cost: maxBytes, eventLoop: eventLoop) {
            PartitionReader.fetchResponse(
                readsToRun, maxBytes: maxBytes, allocator: allocator, usesFileRegions: usesFileRegions)
        }.whenComplete { result in
            let operation = operation.value
            operation.reading = false
            defer { operation.handler.value.endPreparing(estimate: estimate) }
            guard !operation.finished else { return }
            switch result {
            case .failure(let error):
                operation.finish(.failure(BrokerError(.brokerShuttingDown, "the storage threads have stopped: \(error)")))
            case .success(let response):
                let enough = response.recordBytes >= max(1, Int(operation.request.minBytes))
                if isFinal || enough || response.hasError || operation.timer == nil {
                    operation.finish(.success(response.payload), recordBytes: response.recordBytes)
                } else if operation.wokenWhileReading {
                    operation.wokenWhileReading = false
                    operation.attempt(final: false)
                } else {
                    operation.wait(for: endsToWatch)
                }
            }
        }
    }

    /// Registers for the next append on every partition read, then re-checks the log ends so an
    /// append that landed since the read is not missed.
    private func wait(for ends: [(Partition, Int64)]) {
        let operation = NIOLoopBound(self, eventLoop: eventLoop)
        let eventLoop = self.eventLoop
        for (partition, _) in ends {
            if let token = partition.watchNextAppend({ eventLoop.execute { operation.value.attempt(final: false) } }) {
                watches.append((partition, token))
            }
        }
        if ends.contains(where: { $0.0.log.logEndOffset != $0.1 }) {
            attempt(final: false)
        }
    }

    private func finish(_ result: Result<PartitionReader.Response, BrokerError>, recordBytes: Int = 0) {
        guard !finished else { return }
        finished = true
        stopWaiting()
        let handler = self.handler.value
        if handler.fetches[streamID] === self { handler.fetches[streamID] = nil }
        guard handler.state.isOpen(streamID, token: token) else { return }
        switch result {
        case .success(var payload):
            payload.appendThrottleTime(handler.chargeQuota(.fetch, bytes: recordBytes))
            handler.broker.metrics.bytesOut(recordBytes)
            let (streamID, token) = (self.streamID, self.token)
            handler.sendRecords(
                payload, streamID: streamID, method: Fjord_V1_Method.fetch.id, flags: .endStream,
                isWanted: { handler.state.isOpen(streamID, token: token) })
            handler.record("fetch", since: started, error: nil)
        case .failure(let error):
            handler.sendError(error, streamID: streamID, method: Fjord_V1_Method.fetch.id)
            handler.record("fetch", since: started, error: error)
        }
    }
}

extension ConnectionHandler {
    func startFetch(streamID: UInt32, payload: ByteBuffer) {
        guard let context, let token = state.token(of: streamID) else { return }
        let request: Fjord_V1_FetchRequest
        do { request = try Fjord_V1_FetchRequest(checkingWireTypes: payload) } catch {
            sendError(BrokerError(.malformedMessage, "not a valid FetchRequest: \(error)"), streamID: streamID, method: Fjord_V1_Method.fetch.id)
            return
        }
        guard !request.partitions.isEmpty else {
            sendError(BrokerError(.invalidRequest, "a fetch must name at least one partition"), streamID: streamID, method: Fjord_V1_Method.fetch.id)
            return
        }
        let maxWait = min(Int(request.maxWaitMs), broker.configuration.maxFetchWaitMilliseconds)
        let operation = FetchOperation(
            streamID: streamID, token: token, request: request, handler: self, eventLoop: context.eventLoop)
        fetches[streamID] = operation
        operation.start(maxWait: .milliseconds(Int64(maxWait)))
    }
}
