import NIOPosix
import Logging
import FjordProto
import FjordProtocol
import FjordStorage
import NIOCore

/// A subscribe stream: pushes batches from `nextOffset` as they are appended, spending the
/// credit the client grants. At most one read is outstanding and nothing is read while the credit
/// is spent or the connection may not prepare a record response (its queued bytes are at
/// `connection.max.queued.bytes`, see ``ConnectionWriteBudget``); a message goes out once the
/// broker's queued-bytes budget takes it, and the next read starts only after that. So a
/// subscriber that stops reading costs the broker at most one message, however many streams it
/// opens. Credit is never exceeded by more than one batch: a grant smaller than the next batch
/// lets exactly that batch out, once, and the deficit is owed from later grants. Lives on the
/// connection's event loop.
final class Subscription {
    private let streamID: UInt32
    private let topic: String
    private let partitionIndex: Int
    private let topicID: String
    private let maxBytes: Int
    private let handler: NIOLoopBound<ConnectionHandler>
    private let eventLoop: any EventLoop
    private var nextOffset: Int64
    private var credit: Int64
    private var reading = false
    private var watch: (Partition, Int)?
    private var cancelled = false
    /// Waiting for the connection to allow preparing a message.
    private var waitingToPrepare = false

    init(
        streamID: UInt32, partition: Partition, offset: Int64, credit: Int64, maxBytes: Int, handler: ConnectionHandler,
        eventLoop: any EventLoop
    ) {
        self.streamID = streamID
        self.topic = partition.topic
        self.partitionIndex = partition.index
        self.topicID = partition.topicID
        self.nextOffset = offset
        self.credit = credit
        self.maxBytes = maxBytes
        self.handler = NIOLoopBound(handler, eventLoop: eventLoop)
        self.eventLoop = eventLoop
    }

    func addCredit(_ bytes: UInt64) {
        let (sum, overflow) = credit.addingReportingOverflow(Int64(clamping: bytes))
        credit = overflow ? .max : sum
        pump()
    }

    func resume() { pump() }

    func cancel() {
        cancelled = true
        if let (partition, token) = watch { partition.cancelWatch(token) }
        watch = nil
    }

    /// Sends as much as credit and the connection's budget allow, or waits for the next append.
    func pump() {
        guard !cancelled, !reading, !waitingToPrepare, credit > 0 else { return }
        waitingToPrepare = true
        let subscription = NIOLoopBound(self, eventLoop: eventLoop)
        handler.value.whenMayPrepare {
            subscription.value.waitingToPrepare = false
            subscription.value.read()
        }
    }

    /// Reads the next message, or waits for the next append at the log end.
    private func read() {
        guard !cancelled, !reading, credit > 0 else { return }
        let handler = self.handler.value
        guard let context = handler.context, handler.throttledUntil == nil else { return }
        if let (partition, token) = watch {
            partition.cancelWatch(token)
            watch = nil
        }
        let partition: Partition
        do throws(BrokerError) {
            // Checked before every read: a revoked permission ends the stream (the answer is cached
            // until an ACL changes, so this costs a lookup).
            try handler.authorization.require(.read, .topic, topic)
            partition = try handler.broker.registry.partition(topic: topic, index: partitionIndex)
            guard partition.topicID == topicID else {
                throw BrokerError(.unknownTopicOrPartition, "topic \"\(topic)\" was deleted (and created again)")
            }
        } catch {
            end(with: error)
            return
        }
        if partition.isClosed {
            // Being reconfigured: the reopened partition replaces it in the registry shortly.
            let subscription = NIOLoopBound(self, eventLoop: eventLoop)
            eventLoop.scheduleTask(in: .milliseconds(50)) { subscription.value.pump() }
            return
        }
        let end = partition.log.logEndOffset
        if nextOffset == end {
            // Caught up: wait for the next append, then check again in case one landed meanwhile.
            let subscription = NIOLoopBound(self, eventLoop: eventLoop)
            let eventLoop = self.eventLoop
            if let token = partition.watchNextAppend({ eventLoop.execute { subscription.value.pump() } }) {
                watch = (partition, token)
            }
            if partition.log.logEndOffset != end { pump() }
            return
        }
        reading = true
        let offset = nextOffset
        let maxBytes = Int(min(credit, Int64(self.maxBytes)))
        // A message may hold up to max_bytes whatever the credit (at least one batch): counted so,
        // a connection's streams read one after another rather than all at once.
        let estimate = self.maxBytes
        handler.beginPreparing(estimate: estimate)
        let allocator = context.channel.allocator
        let usesFileRegions = handler.usesFileRegions
        let subscription = NIOLoopBound(self, eventLoop: eventLoop)
        handler.fairStorageRead(cost: maxBytes, eventLoop: eventLoop) {
            Result { () throws(BrokerError) in
                try PartitionReader.subscribeResponse(
                    partition: partition, offset: offset, maxBytes: maxBytes, allocator: allocator,
                    usesFileRegions: usesFileRegions)
            }
        }.whenComplete { result in
            let subscription = subscription.value
            subscription.reading = false
            defer { subscription.handler.value.endPreparing(estimate: estimate) }
            guard !subscription.cancelled else { return }
            switch result {
            case .failure(let error):
                subscription.end(with: BrokerError(.brokerShuttingDown, "the storage threads have stopped: \(error)"))
            case .success(.failure(let error)):
                subscription.end(with: error)
            case .success(.success(let read)):
                guard let payload = read.payload else {
                    subscription.pump()
                    return
                }
                subscription.credit -= Int64(read.recordBytes)
                subscription.nextOffset = read.nextOffset
                let handler = subscription.handler.value
                handler.broker.metrics.bytesOut(read.recordBytes)
                _ = handler.chargeQuota(.fetch, bytes: read.recordBytes)
                let loopBound = NIOLoopBound(subscription, eventLoop: subscription.eventLoop)
                let streamID = subscription.streamID
                // The next read starts once this message is written toward the client (it may
                // wait for the broker's budget), so unsent messages never pile up.
                handler.sendRecords(
                    payload, streamID: streamID, method: Fjord_V1_Method.subscribe.id,
                    isWanted: { handler.subscriptions[streamID] === loopBound.value },
                    onQueued: { loopBound.value.pump() })
            }
        }
    }

    private func end(with error: BrokerError) {
        cancel()
        let handler = self.handler.value
        if handler.subscriptions[streamID] === self { handler.subscriptions[streamID] = nil }
        handler.logger.debug("subscription ended", metadata: ["stream": "\(streamID)", "error": "\(error)"])
        handler.sendError(error, streamID: streamID, method: Fjord_V1_Method.subscribe.id)
    }
}

extension ConnectionHandler {
    func subscribe(streamID: UInt32, payload: ByteBuffer) {
        guard let context else { return }
        let method = Fjord_V1_Method.subscribe.id
        let started = NIODeadline.now()
        do throws(BrokerError) {
            guard !broker.lifecycle.isStopping else { throw BrokerError(.brokerShuttingDown, "the broker is shutting down; reconnect") }
            let request: Fjord_V1_SubscribeRequest
            do { request = try Fjord_V1_SubscribeRequest(checkingWireTypes: payload) } catch {
                throw BrokerError(.malformedMessage, "not a valid SubscribeRequest: \(error)")
            }
            guard request.creditBytes > 0 else {
                throw BrokerError(.invalidRequest, "a subscription needs positive credit_bytes")
            }
            try authorization.require(.read, .topic, request.topic)
            let partition = try broker.registry.partition(topic: request.topic, index: Int(request.partition))
            try partition.checkLeaderEpoch(request.leaderEpoch)
            let start = partition.log.logStartOffset
            let end = partition.log.logEndOffset
            guard request.offset >= start, request.offset <= end else {
                throw BrokerError(
                    .offsetOutOfRange,
                    "\(request.topic)-\(request.partition): offset \(request.offset) is outside the log, which holds offsets \(start) to \(end - 1) (log end \(end))")
            }
            let maxBytes = min(
                Int(request.maxBytes == 0 ? 1 << 20 : request.maxBytes), clientMaxFrameBytes - 1024)
            let subscription = Subscription(
                streamID: streamID, partition: partition, offset: request.offset,
                credit: Int64(clamping: request.creditBytes), maxBytes: max(maxBytes, 1), handler: self,
                eventLoop: context.eventLoop)
            subscriptions[streamID] = subscription
            record("subscribe", since: started, error: nil)
            subscription.pump()
        } catch {
            state.serverClosed(streamID)
            logger.debug("subscribe rejected", metadata: ["stream": "\(streamID)", "error": "\(error)"])
            sendError(error, streamID: streamID, method: method)
            record("subscribe", since: started, error: error)
        }
    }

    func subscribeCredit(streamID: UInt32, payload: ByteBuffer) {
        guard let subscription = subscriptions[streamID] else { return }
        guard payload.readableBytes > 0 else { return }
        do {
            let credit = try Fjord_V1_SubscribeCredit(checkingWireTypes: payload)
            subscription.addCredit(credit.bytes)
        } catch {
            subscriptions[streamID] = nil
            subscription.cancel()
            sendError(
                BrokerError(.malformedMessage, "not a valid SubscribeCredit: \(error)"), streamID: streamID,
                method: Fjord_V1_Method.subscribe.id)
        }
    }
}
